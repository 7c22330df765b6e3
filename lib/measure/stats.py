"""What the tables read of a capture: Δφ held (Capture) or its statistics (Stats), and the two
ways of accumulating Stats, exact float64 sums (HeldSink) and streamed float32 batch moments
(StreamedSink).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch

from lib.measure import distributed
from lib.measure.spectra import Moments, add_gram_, gram_blocks

Write = Literal["delta_phi", "attn", "ffn"]
"""One of a layer's three writes, spelled once: Δφ(l) = resid_post - resid_pre, Δφ_attn(l) = hook_attn_out,
Δφ_ffn(l) = hook_mlp_out (a cache entry's tensors keep their names: Capture.tensors)."""
KEYS: tuple[Write, ...] = ("delta_phi", "attn", "ffn")
"""Every Write, in the tables' order."""
SAMPLE_SIZE = 4096
"""Positions whose Δφ vectors are kept for 7C's reconstruction metrics when streaming."""


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

    def write(self, key: Write) -> torch.Tensor:
        """(n_layers, n_positions, d_model) the write `key` of every counted position."""
        return {"delta_phi": self.delta_phi, "attn": self.delta_phi_attn, "ffn": self.delta_phi_ffn}[key]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "delta_phi": self.delta_phi,
            "delta_phi_attn": self.delta_phi_attn,
            "delta_phi_ffn": self.delta_phi_ffn,
            "nll": self.nll,
        }


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

    def write(self, key: Write) -> torch.Tensor:
        """(n_layers, n_positions, d_model) the write `key` of every counted position."""
        return {"delta_phi": self.delta_phi, "attn": self.delta_phi_attn, "ffn": self.delta_phi_ffn}[key]

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
        sink = HeldSink(n_layers, n, d_model, size)
        for key, tensor in zip(KEYS, (c.delta_phi, c.delta_phi_attn, c.delta_phi_ffn)):
            for layer, x in enumerate(tensor):
                sink.write(key, layer, 0, x)
                sink.flush()  # one layer at a time: no staged copy of every layer's sample
        return sink.stats(c.nll)


class StatsSink(ABC):
    """Accumulates Stats while capturing, instead of holding every vector: the moments of
    `total` and `outer` (HeldSink or StreamedSink, one interface), ||Δφ|| per position and the 7C sample.

    Norms and sample rows are staged on the forward passes' device and copied to the CPU once
    per batch (`flush`, when the next batch's first write comes, or the result is asked for):
    a copy from CUDA waits for the device, and one per layer per batch stalled the passes (the
    values are the same either way).
    """

    def __init__(
        self, n_layers: int, n: int, d_model: int, size: int, device: str, dtype: torch.dtype = torch.float64
    ) -> None:
        self.n, self.device = n, device
        self.total = torch.zeros(3, n_layers, d_model, dtype=dtype, device=device)
        """Held: sum of x; streamed: the running mean (both sums once settled)."""
        self.outer = torch.zeros(3, n_layers, d_model, d_model, dtype=dtype, device=device)
        """Held: sum of x x^T; streamed: M2 (upper triangle only, as Moments.outer)."""
        self.norms = torch.zeros(n_layers, n, dtype=torch.float64)
        self.positions = sample_positions(n, size)
        self.sample = torch.zeros(n_layers, len(self.positions), d_model)
        self.staged: list[tuple[int, int, torch.Tensor, int, torch.Tensor]] = []
        """(layer, offset, norms (n,), first sample row, sample rows (m, d_model)) on x's device."""

    @abstractmethod
    def write(self, key: str, layer: int, offset: int, x: torch.Tensor) -> None:
        """Add x (n, d_model), the counted positions offset .. offset + n of one batch, to (key, layer)."""

    def _keep(self, layer: int, offset: int, x: torch.Tensor) -> None:
        """Stage ||Δφ|| of the batch's positions and its rows at sample_positions; x: (n, d_model)."""
        if self.staged and self.staged[-1][1] != offset:  # a new batch: the last one's writes are done
            self.flush()
        dtype = torch.float32 if x.device.type == "mps" else torch.float64  # mps has no float64
        norm = torch.linalg.vector_norm(x, dim=-1, dtype=dtype)  # (n,), no float64 copy of x
        lo, hi = torch.searchsorted(self.positions, torch.tensor([offset, offset + len(x)])).tolist()
        rows = x[(self.positions[lo:hi] - offset).to(x.device)].float()  # (hi - lo, d_model)
        self.staged.append((layer, offset, norm, lo, rows))

    def flush(self) -> None:
        """Copy the staged norms and sample rows to the CPU: two copies, whatever the number of layers."""
        if not self.staged:
            return
        norms = torch.cat([s[2] for s in self.staged]).cpu().split([len(s[2]) for s in self.staged])
        rows = torch.cat([s[4] for s in self.staged]).cpu().split([len(s[4]) for s in self.staged])
        for (layer, offset, _, lo, _), norm, row in zip(self.staged, norms, rows):
            self.norms[layer, offset : offset + len(norm)] = norm
            self.sample[layer, lo : lo + len(row)] = row
        self.staged.clear()

    @abstractmethod
    def _settle(self) -> None:
        """Make `total` and `outer` the sums Stats holds, sum x and sum x x^T (float64)."""

    def combine(self) -> None:
        self.flush()
        self._settle()
        for t in (self.total, self.outer, self.norms, self.sample):
            distributed.sum_(t)

    def stats(self, nll: torch.Tensor) -> Stats:
        self.flush()
        self._settle()
        return Stats(self.n, self.total.cpu(), self.outer.cpu(), self.norms, self.sample, nll)


class HeldSink(StatsSink):
    """Exact float64 sums of x and x x^T, as Moments.of (Stats.of_capture: the held path)."""

    def __init__(self, n_layers: int, n: int, d_model: int, size: int = SAMPLE_SIZE, device: str = "cpu") -> None:
        # float64 on the forward passes' device where it has float64 (not mps): no copy per hook
        super().__init__(n_layers, n, d_model, size, "cpu" if torch.device(device).type == "mps" else device)

    def write(self, key: str, layer: int, offset: int, x: torch.Tensor) -> None:
        x = x.detach().to(self.device, torch.float64)  # (n, d_model)
        k = KEYS.index(key)
        self.total[k, layer] += x.sum(0)
        add_gram_(self.outer[k, layer], x)
        if key == "delta_phi":
            self._keep(layer, offset, x)

    def _settle(self) -> None:
        """Nothing: they are the sums already."""


class StreamedSink(StatsSink):
    """Per batch, the float32 Gram matrix of the batch centred on its own mean, on the forward
    passes' device, merged into a running mean (`total`) and centred scatter M2 = sum (x - mean)(x - mean)^T
    (`outer`) with the pairwise update of Chan, Golub & LeVeque (1979):
    M2 = M2_a + M2_b + delta delta^T n_a n_b / n, delta = mean_b - mean_a. The merge is float64
    (float32 on mps, which has no float64; the work stays on the device). The float32 Gram needs
    no float64 copy of x and takes ~0.6x the time of the float64 sums (docs/scaling.md); its error
    against exact float64 is stated in tests/test_capture.py. It assumes float32 matmuls at the
    'highest' precision (never TF32, ~1e-3), which `capture` sets around the passes.
    """

    def __init__(self, n_layers: int, n: int, d_model: int, size: int = SAMPLE_SIZE, device: str = "cpu") -> None:
        mps = torch.device(device).type == "mps"
        super().__init__(n_layers, n, d_model, size, device, torch.float32 if mps else torch.float64)
        self.seen = [[0] * n_layers for _ in KEYS]  # positions merged so far per (key, layer)
        self.gram = torch.zeros(d_model, d_model, device=device)  # float32 scratch
        self.settled = False

    def write(self, key: str, layer: int, offset: int, x: torch.Tensor) -> None:
        x = x.detach()
        if len(x):
            self._merge(KEYS.index(key), layer, x.float())
        if key == "delta_phi":
            self._keep(layer, offset, x)

    def _merge(self, k: int, layer: int, x: torch.Tensor) -> None:
        """Chan's pairwise update of (mean, M2) of (k, layer) with the batch x (n_b, d) float32.

        Panel by panel of the upper block triangle, the batch Gram plus the float64 rank-one term
        is formed in a small temporary (in cache) and added to M2 (36 of them, 170 MB at GPT-2
        small's shape, read from memory): one pass over 5/8 of M2 instead of two over all of it.
        """
        assert not self.settled, "written after settling: total and outer are sums now"
        n_a, n_b = self.seen[k][layer], len(x)
        mean_b = x.mean(0)  # (d,) float32
        mean, m2 = self.total[k, layer], self.outer[k, layer]
        delta = mean_b.to(mean.dtype) - mean  # (d,)
        n = n_a + n_b
        self.gram.zero_()
        add_gram_(self.gram, x - mean_b)  # float32 centred Gram of the batch, upper block triangle
        for i, j in gram_blocks(len(delta)):
            m2[i:j, i:] += torch.addr(self.gram[i:j, i:].to(m2.dtype), delta[i:j], delta[i:], alpha=n_a * n_b / n)
        mean += delta * (n_b / n)
        self.seen[k][layer] = n

    def _settle(self) -> None:
        """Turn (mean, M2) into sum x and sum x x^T (float64, CPU), once: combine then adds them across ranks."""
        if self.settled:
            return
        count = torch.tensor(self.seen, dtype=torch.float64)[..., None]  # (3, L, 1)
        mean, m2 = self.total.cpu().double(), self.outer.cpu().double()  # on the CPU: these tensors themselves
        self.total = mean * count
        d = mean.shape[-1]
        outer, total, mean = m2.view(-1, d, d), self.total.view(-1, d, 1), mean.view(-1, 1, d)
        for i, j in gram_blocks(d):  # M2 + n mean mean^T on M2's panels: below them zeros, as in the exact sums
            outer[:, i:j, i:].baddbmm_(total[:, i:j], mean[..., i:])
        self.outer = m2
        self.settled = True
