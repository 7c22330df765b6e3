"""PCA of Δφ: K at variance thresholds, the shared basis, reconstruction quality.

PCA here is the eigendecomposition of the float64 covariance, built from running
moments (count, sum, sum of outer products) so that it can be accumulated chunk by
chunk. Centred PCA matches scikit-learn's `PCA` (Pedregosa et al., JMLR 2011):
    C = (S - n mu mu^T) / (n - 1),  S = sum_i x_i x_i^T,  mu = sum_i x_i / n
Uncentred PCA uses the second moment S / n and mu = 0.
K(t) is the smallest k whose cumulative explained-variance ratio is >= t.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

THRESHOLDS = (0.50, 0.80, 0.90, 0.95)
RECONSTRUCTION_KS = (8, 16, 32, 64, 128, 256)
GRAM_BLOCK = 192
"""Column-block width of add_gram_: the upper block triangle only, ~0.6x the flops of x^T x at d=768."""
# Cumulative ratios are sums of float64 ratios: a ratio that should equal t exactly may land
# a few ulps below it; 1e-12 is far above that rounding and far below any real difference.
RATIO_ATOL = 1e-12


@dataclass(frozen=True)
class Moments:
    """Running moments of vectors x_i in R^d, in float64."""

    count: int
    total: torch.Tensor
    """(d,) sum_i x_i."""
    outer: torch.Tensor
    """(d, d) sum_i x_i x_i^T in its upper triangle (add_gram_); the strictly lower triangle is not read."""

    @classmethod
    def of(cls, x: torch.Tensor) -> Moments:
        """x: (n_samples, d)."""
        x = x.detach().to("cpu", torch.float64)
        outer = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
        return cls(x.shape[0], x.sum(0), add_gram_(outer, x))


def add_gram_(
    acc: torch.Tensor, x: torch.Tensor, block: int = GRAM_BLOCK, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """acc += x^T diag(w) x (w: `weights`, (n,); ones when None) on and above the diagonal blocks (the
    strictly lower blocks are left as is).

    x: (n, d), acc: (d, d), same dtype. x^T x is symmetric, so one row panel of column
    blocks per step, (b, n) @ (n, d - i), skips the strictly lower blocks; `pca` reads
    the upper triangle only.
    """
    left = x if weights is None else x * weights[:, None]  # (n, d)
    for i, j in gram_blocks(x.shape[1], block):
        acc[i:j, i:].addmm_(left[:, i:j].T, x[:, i:])
    return acc


def reweighted(moments: Moments, x: torch.Tensor, delta: torch.Tensor) -> Moments:
    """The moments with x_i's weight changed by delta_i: count + sum delta, total + sum delta_i x_i,
    outer + sum delta_i x_i x_i^T (upper triangle). x: (m, d), delta: (m,) float64 integers.

    Frequency weights w on the positions are the run's sums plus (w_i - 1) x_i's terms where w_i != 1.
    delta = -1 (a drop set) gives the float64 sums minus the dropped vectors' contributions bit for bit:
    (-x)^T x is -(x^T x) exactly, rounding being symmetric.
    """
    x = x.to("cpu", torch.float64)
    outer = add_gram_(torch.zeros_like(moments.outer), x, weights=delta)
    count = moments.count + int(delta.sum())
    return Moments(count, moments.total + (x * delta[:, None]).sum(0), moments.outer + outer)


def spectra(moments: Sequence[Moments], centred: bool = True) -> torch.Tensor:
    """(len(moments), d) float64 explained variance of each, non-increasing: `pca(m, vectors=False)`'s,
    from the stacked (B, d, d) covariances (the bootstrap's K values): one batched eigvalsh on a GPU,
    one per matrix on the CPU, where torch's batched eigvalsh of 12 768x768 matrices took 2.7 s
    against 0.28 s for the loop (2026-12-03, torch 2.13, 2 threads)."""
    n = torch.tensor([float(m.count) for m in moments], dtype=torch.float64)[:, None, None]  # (B, 1, 1)
    outer = torch.stack([m.outer for m in moments])  # (B, d, d), upper triangle
    if centred:
        if bool((n < 2).any()):
            raise ValueError("centred PCA needs at least 2 samples")
        mean = torch.stack([m.total for m in moments]) / n[..., 0]  # (B, d)
        cov = (outer - n * mean[:, :, None] * mean[:, None, :]) / (n - 1)
    else:
        cov = outer / n
    if cov.device.type == "cpu":  # one LAPACK call per matrix: torch's batched CPU path is ~10x slower (2.13)
        return torch.stack([torch.linalg.eigvalsh(c, UPLO="U") for c in cov]).flip(-1).clamp_min(0)
    return torch.linalg.eigvalsh(cov, UPLO="U").flip(-1).clamp_min(0)


def gram_blocks(d: int, block: int = GRAM_BLOCK) -> list[tuple[int, int]]:
    """The row panels [i, j) of add_gram_: panel i:j holds columns i: (the upper block triangle)."""
    return [(i, min(i + block, d)) for i in range(0, d, block)]


@dataclass(frozen=True)
class Pca:
    """Principal axes of a set of vectors, largest variance first."""

    mean: torch.Tensor
    """(d,) float64; zeros for uncentred PCA."""
    components: torch.Tensor | None
    """(d, d) float64; column j is the j-th principal direction (None when only K was asked for)."""
    variance: torch.Tensor
    """(d,) float64 explained variance per component, non-increasing, >= 0."""

    @property
    def ratio(self) -> torch.Tensor:
        """(d,) explained-variance ratio; all zeros when the data has no variance."""
        total = self.variance.sum()
        return self.variance / total if total > 0 else torch.zeros_like(self.variance)

    @property
    def directions(self) -> torch.Tensor:
        """(d, d) principal directions as columns; an error when fitted with vectors=False."""
        if self.components is None:
            raise ValueError("this PCA was fitted with vectors=False: it has a spectrum, no directions")
        return self.components

    def k_at(self, threshold: float) -> int:
        """Smallest k with cumulative ratio >= threshold (0 when there is no variance)."""
        if self.variance.sum() <= 0:
            return 0
        cumulative = torch.cumsum(self.ratio, 0)
        return min(int((cumulative < threshold - RATIO_ATOL).sum()) + 1, len(cumulative))

    def ks(self, thresholds: Sequence[float] = THRESHOLDS) -> tuple[int, ...]:
        return tuple(self.k_at(t) for t in thresholds)

    def k_columns(self) -> dict[str, int]:
        """{k50, k80, k90, k95}: K at each threshold, as the tables print them."""
        return {f"k{round(t * 100)}": k for t, k in zip(THRESHOLDS, self.ks())}

    def project(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """x_hat = mu + U_K U_K^T (x - mu); x: (n, d) -> (n, d) float64."""
        u = self.directions[:, :k]  # (d, K)
        xc = x.to(torch.float64) - self.mean  # (n, d)
        return self.mean + (xc @ u) @ u.T


def pca(moments: Moments, centred: bool = True, vectors: bool = True) -> Pca:
    """PCA from moments; centred (mean removed) or uncentred (second moment).

    vectors=False computes the spectrum alone (eigvalsh, ~3x faster): enough for K(t).
    """
    n, d = moments.count, moments.total.shape[0]
    if centred:
        if n < 2:
            raise ValueError(f"centred PCA needs at least 2 samples, got {n}")
        mean = moments.total / n
        cov = (moments.outer - n * torch.outer(mean, mean)) / (n - 1)
    else:
        mean = torch.zeros(d, dtype=torch.float64)
        cov = moments.outer / n
    # the upper triangle only (Moments.outer)
    if not vectors:
        return Pca(mean, None, torch.linalg.eigvalsh(cov, UPLO="U").flip(-1).clamp_min(0))
    variance, directions = torch.linalg.eigh(cov, UPLO="U")  # ascending
    return Pca(mean, directions.flip(-1), variance.flip(-1).clamp_min(0))


def reconstruction(x: torch.Tensor, basis: Pca, ks: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position quality of x_hat = mu + U_K U_K^T (x - mu) for each K.

    x: (n, d). Returns (cos_sim, relative_l2), each (len(ks), n) float64:
    cos(x, x_hat) and ||x - x_hat|| / ||x||. Both are undefined, NaN, where x = 0 (a position
    whose write is exactly zero, e.g. a zero embedding at BOS when pad_token_id is the BOS id):
    reconstruction_means leaves those positions out.
    """
    x = x.to(torch.float64)
    coeffs = (x - basis.mean) @ basis.directions  # (n, d)
    norm = x.norm(dim=-1)  # (n,)
    norm = torch.where(norm > 0, norm, torch.nan)
    cos, rel = [], []
    for k in ks:
        x_hat = basis.mean + coeffs[:, :k] @ basis.directions[:, :k].T  # (n, d)
        cos.append((x * x_hat).sum(-1) / (norm * x_hat.norm(dim=-1).clamp_min(torch.finfo(torch.float64).tiny)))
        rel.append((x - x_hat).norm(dim=-1) / norm)
    return torch.stack(cos), torch.stack(rel)


def reconstruction_means(x: torch.Tensor, basis: Pca, ks: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos_sim, relative_l2), each (len(ks),): reconstruction's means over the positions whose write
    is not exactly zero (NaN when there is none); a non-finite write still makes them NaN."""
    cos, rel = reconstruction(x, basis, ks)
    keep = x.norm(dim=-1) != 0  # NaN != 0: a NaN write is kept, and shows
    return cos[:, keep].mean(-1), rel[:, keep].mean(-1)
