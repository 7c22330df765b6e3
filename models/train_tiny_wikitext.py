"""Train the embedded model `tiny-wikitext`: a small GPT-2-architecture LM and its tokenizer.

Training text: WikiText-2 (tokenized) validation split, ../shared/data/wikitext-2/valid.txt.
The claims evaluate on the WikiText-2 raw *test* text, which this never sees.
Deterministic: fixed seeds, fixed data order, 2 CPU threads.

    .venv/bin/python models/train_tiny_wikitext.py            # writes models/tiny-wikitext/
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"

# One visible block of defaults (nanoGPT style).
vocab_size = 4096
n_layer = 6
n_head = 4
d_model = 128
n_ctx = 256
batch_size = 16
steps = 1100
lr = 3e-3
warmup = 100
weight_decay = 0.1
dropout = 0.1
seed = 0
BOS = "<|endoftext|>"


def train_tokenizer(text_file: Path, out: Path):  # -> PreTrainedTokenizerFast
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train(files=[str(text_file)], vocab_size=vocab_size, min_frequency=2, special_tokens=[BOS], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=BOS, unk_token=BOS)
    tok.model_max_length = n_ctx
    tok.save_pretrained(out)
    return tok


def chunks(ids: torch.Tensor, bos: int) -> torch.Tensor:
    """(n_chunks, n_ctx): BOS + n_ctx - 1 consecutive tokens, as the suite feeds the model."""
    body = n_ctx - 1
    n = len(ids) // body
    x = ids[: n * body].reshape(n, body)  # (n, n_ctx - 1)
    return torch.cat([torch.full((n, 1), bos), x], dim=1)


@torch.no_grad()
def perplexity(model, data: torch.Tensor) -> float:
    model.eval()
    total, count = 0.0, 0
    for batch in data.split(32):
        n = batch.numel() - len(batch)  # predicted tokens: all but each chunk's BOS
        total += model(batch, labels=batch).loss.item() * n
        count += n
    return math.exp(total / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "tiny-wikitext")
    parser.add_argument("--steps", type=int, default=steps)
    args = parser.parse_args()

    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(DATA / "wikitext-2" / "valid.txt", args.out)
    bos = tok.bos_token_id
    train_ids = torch.tensor(tok((DATA / "wikitext-2" / "valid.txt").read_text())["input_ids"])
    test_ids = torch.tensor(tok((DATA / "wikitext-2-raw" / "wiki.test.raw").read_text())["input_ids"])
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=n_ctx,
        n_embd=d_model,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=bos,
        eos_token_id=bos,
    )
    model = GPT2LMHeadModel(config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    body = n_ctx - 1
    for step in range(args.steps):
        model.train()
        scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        offsets = torch.randint(0, len(train_ids) - body, (batch_size,), generator=gen)
        x = torch.stack([torch.cat([torch.tensor([bos]), train_ids[o : o + body]]) for o in offsets])  # (B, n_ctx)
        loss = model(x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.time() - start:6.0f}s", flush=True)
    train_seconds = time.time() - start
    test_ppl = perplexity(model, chunks(test_ids, bos))
    model.config.resid_pdrop = model.config.embd_pdrop = model.config.attn_pdrop = 0.0
    model.save_pretrained(args.out, safe_serialization=True)
    stats = {
        "test_perplexity": round(test_ppl, 2),
        "test_tokens": int(len(test_ids)),
        "train_tokens": int(len(train_ids)),
        "train_seconds": round(train_seconds),
        "steps": args.steps,
        "n_params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
    }
    (args.out / "training.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
