"""Tables 7A-7E as pure functions of the capture's statistics (lib/measure/capture.py Stats) and the
PCA bases built from them; lib/tables/run.py runs them for a run config and caches them, and the
follow-up experiments (lib/tables/followups.py) build their bases and rows with the same functions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lib.measure.lowrank import Projection
from lib.measure.spectra import RECONSTRUCTION_KS, Pca, pca, reconstruction_means

if TYPE_CHECKING:
    from lib.measure.stats import Stats


def norms_table(norms: torch.Tensor) -> list[dict[str, Any]]:
    """7A: per layer, mean and std (ddof=1, as torch.std) of ||Δφ(l)|| over positions.

    norms: (n_layers, n_positions) float64.
    """
    return [
        {"layer": layer, "mean_norm": float(row.mean()), "std_norm": float(row.std())}
        for layer, row in enumerate(norms)
    ]


def layer_bases(stats: Stats, key: str, centred: bool, vectors: bool = True) -> list[Pca]:
    """One PCA per layer of Δφ (key 'delta_phi'), Δφ_attn ('attn') or Δφ_ffn ('ffn')."""
    return [pca(stats.moments(key, layer), centred, vectors) for layer in range(stats.total.shape[1])]


def shared_basis(stats: Stats, centred: bool) -> Pca:
    """7C: PCA of all layers' Δφ stacked, (n_layers * n_positions, d_model)."""
    return pca(stats.shared_moments(), centred)


def layer_pca_table(bases: Sequence[Pca]) -> list[dict[str, Any]]:
    """7B: per layer, K at 50/80/90/95%."""
    return [{"layer": layer, **b.k_columns()} for layer, b in enumerate(bases)]


def reconstruction_tables(
    delta_phi: torch.Tensor, shared: Pca, ks: Sequence[int] = RECONSTRUCTION_KS
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """7C: (over layers, per layer) mean cos_sim and relative L2 with K shared components.

    delta_phi: (n_layers, n_sample, d_model), Stats.sample: every position up to
    SAMPLE_SIZE positions, evenly spaced ones beyond. Per position, averaged per layer,
    then over layers (positions and layers whose write is exactly zero left out).
    """
    ks = [k for k in ks if k <= delta_phi.shape[-1]]
    per_layer = [reconstruction_means(x, shared, ks) for x in delta_phi]  # L x ((len(ks),), (len(ks),))
    cos_l = torch.stack([cos for cos, _ in per_layer])  # (L, len(ks))
    rel_l = torch.stack([rel for _, rel in per_layer])
    written = (delta_phi.norm(dim=-1) != 0).any(-1)  # (L,): layers whose every write is zero have no 7C
    overall = [
        {"k": k, "cos_sim": float(cos_l[written, i].mean()), "relative_l2": float(rel_l[written, i].mean())}
        for i, k in enumerate(ks)
    ]
    layers = [
        {"layer": layer, "k": k, "cos_sim": float(cos_l[layer, i]), "relative_l2": float(rel_l[layer, i])}
        for layer in range(len(delta_phi))
        for i, k in enumerate(ks)
    ]
    return overall, layers


def lowrank_ks(d_model: int, ks: Sequence[int]) -> list[int]:
    """7D's K list for a model: values below d_model, then d_model."""
    return [k for k in ks if k < d_model] + [d_model]


def stacked(bases: Sequence[Pca]) -> tuple[torch.Tensor, torch.Tensor]:
    """(means (L, d), directions (L, d, d)) float32 of one basis per layer, as Projection takes them."""
    return torch.stack([b.mean for b in bases]).float(), torch.stack([b.directions for b in bases]).float()


def expanded(shared: Pca, n_layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(means (L, d), directions (L, d, d)) float32 of one basis used at every layer (views)."""
    return shared.mean.float().expand(n_layers, -1), shared.directions.float().expand(n_layers, -1, -1)


def projections(bases: Sequence[Pca], shared: Pca, ks: Sequence[int]) -> list[Projection]:
    """Individual variants for each K, then shared ones."""
    own, common = stacked(bases), expanded(shared, len(bases))
    return [Projection(*own, k) for k in ks] + [Projection(*common, k) for k in ks]


def ppl_rows(baseline_nll: float, nll: Sequence[float], ks: Sequence[int]) -> list[dict[str, Any]]:
    """Rows {k, ppl, ratio}: perplexity exp(NLL) under each K and its ratio to exp(baseline_nll)."""
    base = math.exp(baseline_nll)
    return [{"k": k, "ppl": math.exp(n), "ratio": math.exp(n) / base} for k, n in zip(ks, nll)]


def paired_rows(
    baseline_nll: float, nll: Sequence[float], ks: Sequence[int], first: str, second: str
) -> list[dict[str, Any]]:
    """Rows {k, <first>_ppl, <first>_ratio, <second>_ppl, <second>_ratio}: nll holds the first
    variant's NLL for each K, then the second's."""
    a, b = ppl_rows(baseline_nll, nll[: len(ks)], ks), ppl_rows(baseline_nll, nll[len(ks) :], ks)
    return [
        {
            "k": x["k"],
            f"{first}_ppl": x["ppl"],
            f"{first}_ratio": x["ratio"],
            f"{second}_ppl": y["ppl"],
            f"{second}_ratio": y["ratio"],
        }
        for x, y in zip(a, b)
    ]


def lowrank_table(baseline_nll: float, nll: Sequence[float], ks: Sequence[int]) -> list[dict[str, Any]]:
    """7D: perplexity under each K with individual and shared bases, and the ratio to baseline."""
    return paired_rows(baseline_nll, nll, ks, "individual", "shared")


def attn_ffn_table(attn: Sequence[Pca], ffn: Sequence[Pca]) -> list[dict[str, Any]]:
    """7E: per layer, K90 of Δφ_attn and Δφ_ffn and their ratio."""
    rows = []
    for layer, (a, f) in enumerate(zip(attn, ffn)):
        ka, kf = a.k_at(0.9), f.k_at(0.9)
        rows.append({"layer": layer, "attn_k90": ka, "ffn_k90": kf, "ratio": ka / kf if kf else math.inf})
    return rows
