"""Follow-up experiments 7F-7H (DESIGN.md): the write-up's sentences it never tested.

7F  attn_only_ppl, ffn_only_ppl: at every layer at once one write replaced by
    mu + U_K U_K^T (x - mu) with the PCA basis of that layer's own writes of that kind
    (hook_attn_out or hook_mlp_out), the other write untouched; K list and baseline as 7D.
7G  subspace_overlap: ||U_i^T U_j||_F^2 / k between the top-k principal subspaces of
    layers i and j, for attention and for FFN writes (1: the same subspace; k/d_model on
    average for independent random subspaces).
7H  shared_ablation: 7D's shared-basis projection of Δφ at every layer but the last, and
    at the last layer only.
    layer_pca_without_outliers: 7B with each layer's outlier positions left out.

Each table is a function of Stats (and the NLLs of the projected passes); lib/tables/registry.py
lists them, computed with Run.followups on request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

import lib.measure.capture
from lib.measure.lowrank import Projection
from lib.measure.spectra import Moments, Pca, add_gram_, pca
from lib.setup.corpus import Selection
from lib.tables.causes import locate, overlap
from lib.tables.core import expanded, paired_rows, stacked

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.measure.stats import Stats

FOLLOWUPS_VERSION = 2
"""Bump when a follow-up table's computation changes, so cached ones are recomputed (CHANGELOG.md)."""
OVERLAP_FRACTION = 12
"""7G's k = d_model / 12 (64 on GPT-2 small, its head width d_head): a fixed fraction of d_model
keeps the chance level k / d_model = 1/12 the same on every model, so overlaps compare across models."""
OUTLIER_MADS = 10.0
"""A position is an outlier of layer l when ||Δφ(l)|| > median + OUTLIER_MADS * MAD of that layer's
norms (MAD = median |norm - median|, unscaled; torch's median, the lower middle value for an even
count). One-sided: only large writes dominate a PCA. For norms spread like a Gaussian (MAD ~ 0.67
sigma) 10 MADs are ~6.7 sigma, reached by chance about once in 10^11 positions; GPT-2's BOS write in
layer 2 (norm ~2,300 against a mean of 18) is far past it."""


# ---------------------------------------------------------------- 7F
def site_only_projections(bases: Sequence[Pca], ks: Sequence[int], site: str) -> list[Projection]:
    """One write's variants (site "attn" or "ffn", with that write's per-layer bases) for each K; every layer projected."""
    own = stacked(bases)
    return [Projection(*own, k, site=site) for k in ks]


# ---------------------------------------------------------------- 7G
def overlap_k(d_model: int) -> int:
    return max(1, round(d_model / OVERLAP_FRACTION))


def overlap_matrix(bases: Sequence[Pca], k: int) -> list[list[float]]:
    """(L, L) ||U_i^T U_j||_F^2 / k, U_l = bases[l].directions[:, :k] (float64).

    The mean of the squared cosines of the principal angles between the two subspaces. Where a
    layer's writes span fewer than k dimensions, its trailing directions are arbitrary within
    the null space, and so is that part of the overlap.
    """
    return [[overlap(a.directions[:, :k], b.directions[:, :k]) for b in bases] for a in bases]


def subspace_overlap(attn: Sequence[Pca], ffn: Sequence[Pca], k: int | None = None) -> dict[str, Any]:
    """7G: {k, chance = k / d_model, attn: LxL, ffn: LxL}."""
    d = attn[0].mean.shape[0]
    k = overlap_k(d) if k is None else k
    return {"k": k, "chance": k / d, "attn": overlap_matrix(attn, k), "ffn": overlap_matrix(ffn, k)}


# ---------------------------------------------------------------- 7H
def shared_ablation_projections(shared: Pca, n_layers: int, ks: Sequence[int]) -> list[Projection]:
    """7D's shared projection of Δφ at every layer but the last, for each K; then at the last layer only."""
    common, others, last = expanded(shared, n_layers), tuple(range(n_layers - 1)), (n_layers - 1,)
    return [Projection(*common, k, "resid", others) for k in ks] + [Projection(*common, k, "resid", last) for k in ks]


def shared_ablation_table(baseline_nll: float, nll: Sequence[float], ks: Sequence[int]) -> list[dict[str, Any]]:
    """7H rows {k, all_but_last_ppl, all_but_last_ratio, last_only_ppl, last_only_ratio}."""
    return paired_rows(baseline_nll, nll, ks, "all_but_last", "last_only")


# ---------------------------------------------------------------- 7B without outliers
def outlier_threshold(norms: torch.Tensor, mads: float = OUTLIER_MADS) -> torch.Tensor:
    """(L,) median + mads * MAD of each layer's norms; norms (L, N)."""
    med = norms.median(-1, keepdim=True).values  # (L, 1)
    mad = (norms - med).abs().median(-1).values  # (L,)
    return med[:, 0] + mads * mad


def outliers(norms: torch.Tensor, threshold: torch.Tensor) -> list[torch.Tensor]:
    """Per layer, the positions (ascending) whose norm exceeds threshold (L,); norms (L, N)."""
    return [torch.nonzero(row).flatten() for row in norms > threshold[:, None]]


def without(moments: Moments, x: torch.Tensor) -> Moments:
    """The moments with the vectors x (n, d) taken out: float64 sums minus their contributions."""
    x = x.to("cpu", torch.float64)
    outer = add_gram_(torch.zeros_like(moments.outer), x)  # upper triangle, as Moments.outer
    return Moments(moments.count - len(x), moments.total - x.sum(0), moments.outer - outer)


class _Picker:
    """A capture Sink that keeps Δφ(l) at the wanted positions of each layer only."""

    def __init__(self, wanted: dict[int, list[int]], base: int) -> None:
        self.wanted, self.base = wanted, base
        self.out: dict[tuple[int, int], torch.Tensor] = {}

    def write(self, key: str, layer: int, offset: int, x: torch.Tensor) -> None:
        if key != "delta_phi":
            return
        for p in self.wanted.get(layer, ()):
            if offset <= p - self.base < offset + len(x):
                self.out[(layer, p)] = x[p - self.base - offset].to("cpu", torch.float64)


def recapture(
    bridge: TransformerBridge, selection: Selection, wanted: dict[int, list[int]], batch_size: int, attention: str
) -> dict[tuple[int, int], torch.Tensor]:
    """Δφ(l) at a few positions {layer: [positions]}, rerunning only the batches that hold them.

    Each batch is rerun as the capture ran it (same chunks, same batch), so the vectors are those
    the streamed moments summed, to float rounding where the batch size differs from theirs.
    """
    out: dict[tuple[int, int], torch.Tensor] = {}
    needed = sorted({p for ps in wanted.values() for p in ps})
    offset = 0
    for tokens, counted in lib.measure.capture.batches(selection, batch_size):  # (B, T), (B, T)
        n = int(counted.sum())
        if any(offset <= p < offset + n for p in needed):
            picker = _Picker(wanted, offset)
            lib.measure.capture.capture(
                bridge, Selection(tuple(tokens), tuple(counted)), picker, len(tokens), attention=attention
            )
            out.update(picker.out)
        offset += n
    return out


def layer_pca_without_outliers(
    stats: Stats,
    selection: Selection,
    centred: bool,
    vectors: Callable[[dict[int, list[int]]], dict[tuple[int, int], torch.Tensor]],
) -> list[dict[str, Any]]:
    """Per layer: K at 50/80/90/95% with the layer's outlier positions (OUTLIER_MADS) left out.

    Rows {layer, k50, k80, k90, k95, threshold, n_left_out, left_out: [{chunk, position, norm}]}
    (position: index within the chunk; 0 is BOS). `vectors({layer: positions})` returns Δφ at
    those positions (capture order), keyed (layer, position).
    """
    threshold = outlier_threshold(stats.norms)
    left_out = outliers(stats.norms, threshold)
    x = vectors({layer: ps.tolist() for layer, ps in enumerate(left_out) if len(ps)})
    rows = []
    for layer, ps in enumerate(left_out):
        m = stats.moments("delta_phi", layer)
        if len(ps):
            m = without(m, torch.stack([x[(layer, int(p))] for p in ps]))  # (n_left_out, d)
        rows.append(
            {
                "layer": layer,
                **pca(m, centred, vectors=False).k_columns(),
                "threshold": float(threshold[layer]),
                "n_left_out": len(ps),
                "left_out": [
                    {"chunk": c, "position": p, "norm": float(stats.norms[layer, i])}
                    for (c, p), i in zip(locate(selection, ps), ps)
                ],
            }
        )
    return rows


def held_vectors(delta_phi: torch.Tensor) -> Callable[[dict[int, list[int]]], dict[tuple[int, int], torch.Tensor]]:
    """`vectors` for layer_pca_without_outliers from a held capture's (L, N, d) Δφ."""
    return lambda wanted: {(layer, p): delta_phi[layer, p] for layer, ps in wanted.items() for p in ps}
