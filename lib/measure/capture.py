"""Record Δφ(l) = resid_post(l) - resid_pre(l), Δφ_attn(l) and Δφ_ffn(l) at every layer.

Only the four sites per layer are hooked (a full `run_with_cache` stores every
activation and is about 2x slower). The same forward pass gives the baseline
next-token NLL that 7D compares against, so no pass is run twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from lib.errors import ConfigError
from lib.measure import distributed
from lib.measure.models import attention_kernel
from lib.measure.stats import KEYS, SAMPLE_SIZE, Capture, Stats, StreamedSink

# re-exported: the tables, fragility and tests read them here
from lib.measure.stats import sample_positions as sample_positions

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.setup.corpus import Selection

Hook = Callable[..., torch.Tensor]


def batches(selection: Selection, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(tokens (B, T), counted (B, T)) of up to batch_size chunks of equal length, in order."""
    i = 0
    chunks, counted = selection.chunks, selection.counted
    while i < len(chunks):
        j = i + 1
        while j < len(chunks) and j - i < batch_size and len(chunks[j]) == len(chunks[i]):
            j += 1
        yield torch.stack(chunks[i:j]), torch.stack(counted[i:j])
        i = j


NLL_CHUNK = 2**22
"""Logits per cross-entropy call in token_nll (16 MB of float32): larger temporaries are
mmap'd and page-faulted afresh on every call, ~4x slower on a 50257-token vocabulary."""


def token_nll(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(B, T-1) float64 NLL of tokens[:, 1:] under logits[:, :-1]; logits (B, T, vocab).

    In blocks of positions, so the log-softmax temporary is at most NLL_CHUNK logits.
    """
    step = max(1, NLL_CHUNK // logits.shape[-1])
    n = logits.shape[1] - 1  # predicted positions per row
    nll = []
    for row, target in zip(logits, tokens):
        blocks = [
            torch.nn.functional.cross_entropy(
                row[i : min(i + step, n)].float(), target[i + 1 : i + 1 + step], reduction="none"
            )
            for i in range(0, max(n, 1), step)  # T = 1: one empty block
        ]
        nll.append(torch.cat(blocks))  # (T-1,)
    return torch.stack(nll).cpu().double()  # mps has no float64


class Sink(Protocol):
    def write(self, key: str, layer: int, offset: int, x: torch.Tensor) -> None:
        """x: (n, d_model), the counted positions offset .. offset + n of one batch.

        x may be a view of a live activation: read it, never change it or keep it past the call.
        """


@runtime_checkable
class SplitSink(Sink, Protocol):
    """A sink that `capture(..., split=True)` can share among torchrun ranks."""

    def combine(self) -> None:
        """Sum what the ranks wrote (each its own batches) so that every rank holds the whole; nothing when alone."""


class TensorSink:
    """Keeps every vector: (n_layers, n_positions, d_model) float32 per key.

    Zeros where this rank wrote nothing, so that `combine`'s sum over ranks is exact.
    """

    def __init__(self, n_layers: int, n: int, d_model: int) -> None:
        self.out = {k: torch.zeros(n_layers, n, d_model) for k in KEYS}

    def write(self, key: str, layer: int, offset: int, x: torch.Tensor) -> None:
        self.out[key][layer, offset : offset + len(x)] = x.float().cpu()

    def combine(self) -> None:
        for t in self.out.values():
            distributed.sum_(t)


def free_bytes(device: str) -> int:
    """Memory this process can still take: free memory of a CUDA device, else available RAM (mps: unified)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.mem_get_info(torch.device(device))[0]
    import psutil  # a dependency of transformer-lens (through accelerate)

    return int(psutil.virtual_memory().available)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def check_memory(bridge: TransformerBridge, selection: Selection, batch_size: int, held: bool) -> None:
    """check_capture_memory for a loaded model and its selection (the weights are in memory already)."""
    cfg = bridge.cfg
    check_capture_memory(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        d_vocab=cfg.d_vocab,
        n=selection.n_positions,
        longest=max(len(c) for c in selection.chunks),
        batch_size=batch_size,
        held=held,
        device=str(cfg.device),
        dtype=str(cfg.dtype).removeprefix("torch."),
    )


def check_capture_memory(
    *,
    n_layers: int,
    d_model: int,
    d_vocab: int,
    n: int,
    longest: int,
    batch_size: int,
    held: bool,
    device: str,
    dtype: str = "float32",
    weights: int = 0,
) -> None:
    """ConfigError before a capture whose kept tensors would not fit, saying what to change.

    Counted: what the capture keeps (held: Δφ, Δφ_attn, Δφ_ffn float32, then their float64
    moments; streamed: the moments and one batch's staged norms and 7C rows on the forward's
    device, norms and the 7C sample in RAM),
    one batch's logits (in `dtype`) on the forward's device, and `weights` (the model's bytes
    in `dtype`, when it is not loaded yet). Under torchrun every rank of this machine keeps the
    whole result (LOCAL_WORLD_SIZE times in RAM). The other activations come on top, so a run
    that passes may still be tight; one that fails would not fit.
    """
    d, ranks = d_model, distributed.local_world_size()
    itemsize = torch.empty(0, dtype=getattr(torch, dtype)).element_size()
    logits = batch_size * longest * d_vocab * itemsize
    moments = 3 * n_layers * (d * d + d) * 8
    kept = n_layers * n * 8 + n_layers * min(n, SAMPLE_SIZE) * d * 4  # norms, sample
    if held:
        ram, dev = ranks * (3 * n_layers * n * d * 4 + moments + kept), logits
        per_position = ranks * 3 * n_layers * d * 4
        what = f"Δφ, Δφ_attn and Δφ_ffn of {n:,} positions held in memory, with their moments"
    else:
        batch = min(batch_size * longest, n)  # positions of one batch
        staged = n_layers * (batch * 8 + min(batch, SAMPLE_SIZE) * d * 4)  # staged until the next batch (StatsSink)
        ram, dev = ranks * kept, moments + d * d * 4 + logits + staged
        per_position = ranks * n_layers * 8
        what = f"the streamed statistics of {n:,} positions (moments, per-position norms, 7C sample)"
    if weights:
        dev += ranks * weights if torch.device(device).type != "cuda" else weights
        what += f", the model's weights in {dtype} ({_gib(weights)})"
    # float32 weights and logits halve in a 2-byte dtype
    smaller = ", or --dtype bfloat16 (half the weights and logits)" if itemsize > 2 else ""
    shared_ram = torch.device(device).type != "cuda"  # cpu and mps: one pool
    ram_free = free_bytes("cpu")
    if shared_ram:
        ram, dev = ram + dev, 0
    if ram > ram_free:
        fit = max(0, int(n - (ram - ram_free) / per_position))
        extra = f" or run fewer than {ranks} processes on this machine" if ranks > 1 else ""
        raise ConfigError(
            f"{what} need {_gib(ram)} of memory, but {_gib(ram_free)} is available: lower --n-tokens "
            f"(about {fit:,} would fit) or --batch-size{extra}{smaller}"
        )
    if dev and dev > (dev_free := free_bytes(device)):
        raise ConfigError(
            f"{what} and one batch's logits need {_gib(dev)} on {device}, but {_gib(dev_free)} is free "
            f"there: lower --batch-size{smaller}, or use --device cpu"
        )


@contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """torch's float32 matmul precision inside the block, the caller's restored after.

    The capture sets 'highest': TF32 ('high', ~1e-3 relative) would move Δφ and the streamed
    moments' float32 Grams far past the suite's tolerances, whatever the caller chose for speed.
    """
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved)


def capture(
    bridge: TransformerBridge,
    selection: Selection,
    sink: Sink,
    batch_size: int = 8,
    progress: Callable[[list], Iterable] = iter,
    attention: str = "sdpa",
    split: bool = False,
) -> torch.Tensor:
    """One clean forward pass per batch of chunks; hooks hand the counted positions to `sink`.

    Returns the (n_predicted,) float64 baseline NLL of the same passes. With `split`, under
    torchrun each rank runs its contiguous share of the batches (the batches one process
    runs), then `sink.combine()` and the NLL are summed over ranks: every rank returns the
    whole result. Without it every rank runs every batch (no collective).
    """
    n_layers = bridge.cfg.n_layers
    state: dict[str, Any] = {}

    def recorder(key: str, layer: int) -> Hook:
        def hook(x: torch.Tensor, hook: object) -> torch.Tensor:  # x: (B, T, d_model)
            if key == "pre":
                state[f"pre{layer}"] = x
                return x
            value = x - state.pop(f"pre{layer}") if key == "delta_phi" else x
            mask = state["mask"]  # None: every position counts, and a view needs no copy
            sink.write(
                key, layer, state["offset"], value.flatten(0, 1) if mask is None else value[mask]
            )  # (n_counted, d)
            return x

        return hook

    fwd_hooks = []
    for layer in range(n_layers):
        fwd_hooks += [
            (f"blocks.{layer}.hook_resid_pre", recorder("pre", layer)),
            (f"blocks.{layer}.hook_resid_post", recorder("delta_phi", layer)),
            (f"blocks.{layer}.hook_attn_out", recorder("attn", layer)),
            (f"blocks.{layer}.hook_mlp_out", recorder("ffn", layer)),
        ]
    steps = list(batches(selection, batch_size))
    # where each batch's counted positions and predicted tokens start
    offsets = torch.tensor([0] + [int(counted.sum()) for _, counted in steps]).cumsum(0).tolist()
    starts = torch.tensor([0] + [t.shape[0] * (t.shape[1] - 1) for t, _ in steps]).cumsum(0).tolist()
    assert offsets[-1] == selection.n_positions, (offsets[-1], selection.n_positions)
    nll = torch.zeros(starts[-1], dtype=torch.float64)  # zeros where another rank writes
    device = bridge.cfg.device
    mine = list(distributed.shard(len(steps)) if split else range(len(steps)))
    with (
        torch.inference_mode(),
        matmul_precision("highest"),
        attention_kernel(bridge, attention),
        bridge.hooks(fwd_hooks=fwd_hooks),
    ):
        for i in progress(mine) if distributed.is_writer() else mine:
            tokens, counted = steps[i]
            tokens = tokens.to(device)
            state.update(mask=None if bool(counted.all()) else counted.to(device), offset=offsets[i])
            nll[starts[i] : starts[i + 1]] = token_nll(bridge(tokens), tokens).reshape(-1)  # logits (B, T, vocab)
    if split:
        assert isinstance(sink, SplitSink), f"{type(sink).__name__} cannot be split among ranks"
        sink.combine()
        distributed.sum_(nll)
    return nll


def capture_tensors(
    bridge: TransformerBridge,
    selection: Selection,
    batch_size: int = 8,
    progress: Callable[[list], Iterable] = iter,
    attention: str = "sdpa",
) -> Capture:
    """Δφ, Δφ_attn, Δφ_ffn of every counted position, held in memory."""
    sink = TensorSink(bridge.cfg.n_layers, selection.n_positions, bridge.cfg.d_model)
    nll = capture(bridge, selection, sink, batch_size, progress, attention, split=True)
    return Capture(sink.out["delta_phi"], sink.out["attn"], sink.out["ffn"], nll)


def capture_stats(
    bridge: TransformerBridge,
    selection: Selection,
    batch_size: int = 8,
    progress: Callable[[list], Iterable] = iter,
    attention: str = "sdpa",
    size: int = SAMPLE_SIZE,
) -> Stats:
    """Stats of the counted positions, streamed: memory flat in the token count (but norms)."""
    cfg = bridge.cfg
    sink = StreamedSink(cfg.n_layers, selection.n_positions, cfg.d_model, size, str(cfg.device))
    return sink.stats(capture(bridge, selection, sink, batch_size, progress, attention, split=True))
