"""The plain alternative to a cold `python -m lib tables`: import, load the Hugging Face model,
tokenize the text, and run the 17 bare forwards of the first 1000 tokens (1 clean + 16 as 7D's).

    python benchmarks/plain_script.py MODEL_DIR TEXT_FILE [N_FORWARDS]

What the tables need of a model, and no more: no hooks, no statistics, no NLL.
"""

from __future__ import annotations

import sys


def main(model_dir: str, text_file: str, n_forwards: int = 17) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with open(text_file, encoding="utf-8") as f:
        ids = tokenizer(f.read(), add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    tokens = torch.tensor([[bos, *ids[:999]]])  # (1, 1000): BOS and the first 999 text tokens
    with torch.inference_mode():
        for _ in range(n_forwards):
            model(tokens)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))
