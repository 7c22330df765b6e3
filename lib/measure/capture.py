"""Record Δφ(l) = resid_post(l) - resid_pre(l), Δφ_attn(l) and Δφ_ffn(l) at every layer.

Only the four sites per layer are hooked (a full `run_with_cache` stores every
activation and is about 2x slower). The same forward pass gives the baseline
next-token NLL that 7D compares against, so no pass is run twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from lib.errors import ConfigError
from lib.measure import distributed
from lib.measure.models import attention_kernel
from lib.measure.spectra import Moments, add_gram_, gram_blocks

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.setup.corpus import Selection

Hook = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Capture:
    """What one clean pass over the selection records (CPU tensors)."""

    delta_phi: torch.Tensor
    """(n_layers, n_positions, d_model) float32: resid_post - resid_pre."""
    delta_phi_attn: torch.Tensor
    """(n_layers, n_positions, d_model) float32: hook_attn_out."""
    delta_phi_ffn: torch.Tensor
    """(n_layers, n_positions, d_model) float32: hook_mlp_out."""
    nll: torch.Tensor
    """(n_predicted,) float64: next-token NLL of the clean model on every text token."""

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "delta_phi": self.delta_phi,
            "delta_phi_attn": self.delta_phi_attn,
            "delta_phi_ffn": self.delta_phi_ffn,
            "nll": self.nll,
        }


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


KEYS = ("delta_phi", "attn", "ffn")
"""Δφ(l), Δφ_attn(l), Δφ_ffn(l): resid_post - resid_pre, hook_attn_out, hook_mlp_out."""
SAMPLE_SIZE = 4096
"""Positions whose Δφ vectors are kept for 7C's reconstruction metrics when streaming."""


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


def sample_positions(n: int, size: int = SAMPLE_SIZE) -> torch.Tensor:
    """All positions when n <= size, else `size` evenly spaced ones (deterministic)."""
    if n <= size:
        return torch.arange(n)
    return torch.linspace(0, n - 1, size).round().long()


@dataclass(frozen=True)
class Stats:
    """What the tables need, in memory independent of the token count (but for `norms`).

    Moments are float64 on the CPU (mps has no float64), accumulated batch by batch.
    """

    count: int
    total: torch.Tensor
    """(3, n_layers, d_model) float64: sum of x over positions, for KEYS in order."""
    outer: torch.Tensor
    """(3, n_layers, d_model, d_model) float64: sum of x x^T, upper triangle only (Moments.outer)."""
    norms: torch.Tensor
    """(n_layers, n_positions) float64: ||Δφ(l)|| per position."""
    sample: torch.Tensor
    """(n_layers, n_sample, d_model) float32: Δφ at sample_positions(n_positions)."""
    nll: torch.Tensor
    """(n_predicted,) float64 baseline next-token NLL."""

    def moments(self, key: str, layer: int) -> Moments:
        k = KEYS.index(key)
        return Moments(self.count, self.total[k, layer], self.outer[k, layer])

    def shared_moments(self) -> Moments:
        """Δφ of all layers stacked: (n_layers * n_positions, d_model)."""
        return Moments(self.count * self.total.shape[1], self.total[0].sum(0), self.outer[0].sum(0))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "count": torch.tensor(self.count),
            "total": self.total,
            "outer": self.outer,
            "norms": self.norms,
            "sample": self.sample,
            "nll": self.nll,
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> Stats:
        return cls(int(t["count"]), t["total"], t["outer"], t["norms"], t["sample"], t["nll"])

    @classmethod
    def of_capture(cls, c: Capture, size: int = SAMPLE_SIZE) -> Stats:
        n_layers, n, d_model = c.delta_phi.shape
        sink = StatsSink(n_layers, n, d_model, size)
        for key, tensor in zip(KEYS, (c.delta_phi, c.delta_phi_attn, c.delta_phi_ffn)):
            for layer, x in enumerate(tensor):
                sink.write(key, layer, 0, x)
        return sink.stats(c.nll)


class StatsSink:
    """Accumulates Stats while capturing, instead of holding every vector.

    exact (Stats.of_capture, the held path): float64 sums of x and x x^T, as Moments.of.
    Otherwise (the streamed capture): per batch, the float32 Gram matrix of the batch centred
    on its own mean, on the forward passes' device, merged into a running mean and centred
    scatter M2 = sum (x - mean)(x - mean)^T with the pairwise update of Chan, Golub & LeVeque
    (1979): M2 = M2_a + M2_b + delta delta^T n_a n_b / n, delta = mean_b - mean_a. The merge
    is float64 (float32 on mps, which has no float64; the work stays on the device). The
    float32 Gram needs no float64 copy of x and takes ~0.6x the time of the float64 sums (docs/scaling.md); its error against exact float64 is stated in tests/test_capture.py.
    """

    def __init__(
        self, n_layers: int, n: int, d_model: int, size: int = SAMPLE_SIZE, device: str = "cpu", exact: bool = True
    ) -> None:
        self.n, self.exact = n, exact
        mps = torch.device(device).type == "mps"
        # exact: float64 on the forward passes' device where it has float64 (not mps): no copy per hook
        self.device = "cpu" if mps and exact else device
        dtype = torch.float32 if mps else torch.float64
        self.total = torch.zeros(3, n_layers, d_model, dtype=dtype, device=self.device)
        """exact: sum of x; else the running mean."""
        self.outer = torch.zeros(3, n_layers, d_model, d_model, dtype=dtype, device=self.device)
        """exact: sum of x x^T; else M2 (upper triangle only, as Moments.outer)."""
        self.seen = [[0] * n_layers for _ in KEYS]  # positions merged so far per (key, layer)
        self.gram = torch.zeros(d_model, d_model, device=device)  # float32 scratch of the fast path
        self.norms = torch.zeros(n_layers, n, dtype=torch.float64)
        self.positions = sample_positions(n, size)
        self.sample = torch.zeros(n_layers, len(self.positions), d_model)

    def write(self, key: str, layer: int, offset: int, x: torch.Tensor) -> None:
        x = x.detach()
        k = KEYS.index(key)
        if self.exact:
            x = x.to(self.device, torch.float64)  # (n, d_model)
            self.total[k, layer] += x.sum(0)
            add_gram_(self.outer[k, layer], x)
        elif len(x):
            self._merge(k, layer, x.float())
        if key == "delta_phi":
            norm = torch.linalg.vector_norm(x, dim=-1, dtype=self.total.dtype)  # (n,), no float64 copy of x
            self.norms[layer, offset : offset + len(x)] = norm.cpu()
            lo, hi = torch.searchsorted(self.positions, torch.tensor([offset, offset + len(x)])).tolist()
            self.sample[layer, lo:hi] = x[(self.positions[lo:hi] - offset).to(x.device)].float().cpu()

    def _merge(self, k: int, layer: int, x: torch.Tensor) -> None:
        """Chan's pairwise update of (mean, M2) of (k, layer) with the batch x (n_b, d) float32.

        Panel by panel of the upper block triangle, the batch Gram plus the float64 rank-one term
        is formed in a small temporary (in cache) and added to M2 (36 of them, 170 MB at GPT-2
        small's shape, read from memory): one pass over 5/8 of M2 instead of two over all of it.
        """
        n_a, n_b = self.seen[k][layer], len(x)
        mean_b = x.mean(0)  # (d,) float32
        mean, m2 = self.total[k, layer], self.outer[k, layer]
        delta = mean_b.to(mean.dtype) - mean  # (d,)
        n = n_a + n_b
        self.gram.zero_()
        precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")  # never TF32 (~1e-3) for the moments, whatever the caller set
        try:
            add_gram_(self.gram, x - mean_b)  # float32 centred Gram of the batch, upper block triangle
        finally:
            torch.set_float32_matmul_precision(precision)
        for i, j in gram_blocks(len(delta)):
            m2[i:j, i:] += torch.addr(self.gram[i:j, i:].to(m2.dtype), delta[i:j], delta[i:], alpha=n_a * n_b / n)
        mean += delta * (n_b / n)
        self.seen[k][layer] = n

    def _settle(self) -> None:
        """Fast path: turn (mean, M2) into the sums Stats holds, sum x and sum x x^T (float64, CPU)."""
        if self.exact:
            return
        count = torch.tensor(self.seen, dtype=torch.float64)[..., None]  # (3, L, 1)
        mean, m2 = self.total.cpu().double(), self.outer.cpu().double()  # on the CPU: these tensors themselves
        self.total = mean * count
        d = mean.shape[-1]
        outer, total, mean = m2.view(-1, d, d), self.total.view(-1, d, 1), mean.view(-1, 1, d)
        for i, j in gram_blocks(d):  # M2 + n mean mean^T on M2's panels: below them zeros, as in the exact sums
            outer[:, i:j, i:].baddbmm_(total[:, i:j], mean[..., i:])
        self.outer = m2
        self.exact = True  # now plain sums: combine adds them across ranks

    def combine(self) -> None:
        self._settle()
        for t in (self.total, self.outer, self.norms, self.sample):
            distributed.sum_(t)

    def stats(self, nll: torch.Tensor) -> Stats:
        self._settle()
        return Stats(self.n, self.total.cpu(), self.outer.cpu(), self.norms, self.sample, nll)


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
    moments; streamed: the moments on the forward's device, norms and the 7C sample in RAM),
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
        ram, dev = ranks * kept, moments + d * d * 4 + logits
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
    with torch.inference_mode(), attention_kernel(bridge, attention), bridge.hooks(fwd_hooks=fwd_hooks):
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
    sink = StatsSink(
        bridge.cfg.n_layers, selection.n_positions, bridge.cfg.d_model, size, str(bridge.cfg.device), exact=False
    )
    return sink.stats(capture(bridge, selection, sink, batch_size, progress, attention, split=True))
