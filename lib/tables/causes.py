"""The measurements the write-up's causal sentences imply, computed with tables 7A-7E.

The write-up explains its tables with causes it does not measure ("because layer 11's
norm dominates", "this FFN is the cause", "leaning toward the unembedding", "a few
samples dominate", "possibly a fixed bias term"). Each needs only the captured
statistics or the weights, no extra forward pass, so the suite measures them with the
tables (lib/tables/registry.py lists them) and lib/writeup/predicates/causal.py states each sentence as a predicate on them.

Subspace overlap of orthonormal bases A (d, k) and B (d, k'): ||A^T B||_F^2 / k, 1 when
span A lies in span B, k'/d in expectation for a random A.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lib.measure.spectra import RECONSTRUCTION_KS, Moments, Pca, pca, reconstruction_means
from lib.measure.stats import sample_positions

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.measure.stats import Stats
    from lib.setup.corpus import Selection

TOP_SHARE = 0.01
"""「少数のサンプル」: the share of positions called "a few" (the top 1%)."""
UNEMBED_FRACTION = 12
"""The unembedding's top d_model/12 singular directions (64 on GPT-2) stand for "the unembedding"."""


def overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """||A^T B||_F^2 / k for orthonormal columns a (d, k), b (d, k')."""
    return float((a.T.double() @ b.double()).square().sum() / a.shape[1])


def shared_pca_normalised(stats: Stats, centred: bool) -> dict[str, int]:
    """7C's shared PCA with every layer's Δφ scaled to unit mean norm (「ノルムが支配的なため」).

    Scaling layer l by s_l = 1 / mean ||Δφ(l)|| scales its sum by s_l and its sum of outer
    products by s_l^2, so the pooled moments are exact: sum_l s_l S1_l, sum_l s_l^2 S2_l. A layer
    whose every write is zero cannot be scaled and adds its zeros, as in the unscaled shared PCA.
    """
    mean_norm = stats.norms.mean(-1)  # (L,)
    scale = torch.where(mean_norm > 0, 1 / mean_norm, 0)  # a layer whose writes are all zero stays zero
    total = (stats.total[0] * scale[:, None]).sum(0)  # (d,)
    outer = (stats.outer[0] * scale[:, None, None] ** 2).sum(0)  # (d, d), upper triangle
    return pca(Moments(stats.count * len(scale), total, outer), centred, vectors=False).k_columns()


def shared_balanced(stats: Stats, centred: bool) -> Pca:
    """7C's shared PCA with every layer's total variance equalised (「スケール不均衡が共有基底を破壊」).

    Layer l scaled by s_l = 1 / sqrt(tr C_l), C_l its covariance (centred) or second moment
    (uncentred): each layer then carries total variance 1, whether its norm is spread over
    every position or sits on one (scaling to unit mean norm leaves a layer whose norm sits
    on one position dominant). Pooled moments as in shared_pca_normalised: sum_l s_l S1_l,
    sum_l s_l^2 S2_l. A layer without variance adds its unscaled vectors.
    """
    n_layers = stats.total.shape[1]
    trace = torch.tensor([_trace(stats.moments("delta_phi", layer), centred) for layer in range(n_layers)])
    scale = torch.where(trace > 0, trace.clamp_min(torch.finfo(torch.float64).tiny).rsqrt(), 1.0)  # (L,)
    total = (stats.total[0] * scale[:, None]).sum(0)  # (d,)
    outer = (stats.outer[0] * scale[:, None, None] ** 2).sum(0)  # (d, d), upper triangle
    return pca(Moments(stats.count * n_layers, total, outer), centred)


def balanced_reconstruction(
    sample: torch.Tensor, balanced: Pca, shared: Pca, ks: Sequence[int] = RECONSTRUCTION_KS
) -> list[dict[str, Any]]:
    """Per layer, 7C's reconstruction metrics with K components of the balanced shared basis.

    sample: (n_layers, n_sample, d_model), as reconstruction_tables. The mean is the raw shared
    basis's (7C's), so the rows differ from 7C's per-layer rows by the directions alone.
    """
    basis = Pca(shared.mean, balanced.directions, balanced.variance)
    return own_reconstruction(sample, [basis] * len(sample), ks)


def own_reconstruction(
    sample: torch.Tensor, bases: Sequence[Pca], ks: Sequence[int] = RECONSTRUCTION_KS
) -> list[dict[str, Any]]:
    """Per layer, 7C's reconstruction metrics with K of the layer's own components instead of shared ones.

    sample: (n_layers, n_sample, d_model), as reconstruction_tables. Beside 7C's per-layer
    rows it says what the shared basis costs each layer (「中間層の細かい構造を全く捉えられていない」).
    """
    ks = [k for k in ks if k <= sample.shape[-1]]
    rows = []
    for layer, (x, basis) in enumerate(zip(sample, bases)):
        cos, rel = reconstruction_means(x, basis, ks)  # (len(ks),) each
        rows += [
            {"layer": layer, "k": k, "cos_sim": float(cos[i]), "relative_l2": float(rel[i])} for i, k in enumerate(ks)
        ]
    return rows


def _trace(m: Moments, centred: bool) -> float:
    """Total variance: trace of the covariance (centred) or of the second moment."""
    diag = m.outer.diagonal()
    if centred:
        return float((diag - m.total**2 / m.count).sum() / (m.count - 1))
    return float(diag.sum() / m.count)


def write_sources(stats: Stats, bases: Sequence[Pca], ffn: Sequence[Pca], centred: bool) -> list[dict[str, Any]]:
    """Per layer: the attention's and the FFN's total variance as shares of Δφ's, and |cos| of
    the FFN's first principal direction with Δφ's (「この FFN が原因」).

    Δφ = attn + ffn, so the shares need not sum to 1 (the two writes covary).
    """
    rows = []
    for layer, (whole, f) in enumerate(zip(bases, ffn)):
        total = _trace(stats.moments("delta_phi", layer), centred)
        share = {
            k: _trace(stats.moments(k, layer), centred) / total if total > 0 else math.nan for k in ("attn", "ffn")
        }
        cos = float((whole.directions[:, 0] @ f.directions[:, 0]).abs())
        rows.append({"layer": layer, "attn_share": share["attn"], "ffn_share": share["ffn"], "ffn_pc1_cos": cos})
    return rows


def unembedding_directions(bridge: TransformerBridge) -> torch.Tensor:
    """(d_model, d_model) left singular vectors of the readout, largest first.

    The logits are LN_final(x) W_U. compat folds LN_final's scale into W_U and centres it,
    so W_U itself is the readout; raw applies diag(gamma) and, for LayerNorm (not RMSNorm),
    the centring I - 11^T/d that LN_final performs, before W_U.
    """
    w_u = bridge.W_U.detach().to("cpu", torch.float64)  # (d, vocab)
    gamma = next((p for n, p in bridge.ln_final.named_parameters() if n.endswith("weight")), None)
    if gamma is not None:
        w_u = gamma.detach().to("cpu", torch.float64)[:, None] * w_u
    if getattr(bridge.cfg, "normalization_type", "LN") in ("LN", "LNPre"):
        w_u = w_u - w_u.mean(0, keepdim=True)  # (I - 11^T/d) W_U
    # left singular vectors of W = eigenvectors of W W^T (d x d): ~8x faster than an SVD of the
    # (d, vocab) matrix (0.5 s against 4 s at 768 x 50257 on 2 cores), same subspaces
    _, vectors = torch.linalg.eigh(w_u @ w_u.T)  # ascending
    return vectors.flip(-1)  # (d, d), largest first


def unembedding_overlap(
    readout: torch.Tensor,
    bases: Sequence[Pca],
    attn: Sequence[Pca],
    layer_k90: Sequence[int],
    attn_k90: Sequence[int],
) -> dict[str, Any]:
    """How far the last layer's top principal directions lie in the unembedding's top singular
    subspace (「unembedding 寄り」, 「unembedding への集約」), against chance and the other layers.

    Each layer's top max(K90, 1) directions (Δφ's, and the attention writes'), and (`*_same_k`) every
    layer's top k at the last layer's k = max(K90, 1), so that every layer has the same ceiling
    min(k, k_u) / k; the readout's top d_model / 12. readout: unembedding_directions(bridge). attn:
    every layer's attention PCA with directions.
    """
    u = readout
    d = u.shape[0]
    k_u = max(1, d // UNEMBED_FRACTION)
    top = u[:, :k_u]
    per_layer = [overlap(b.directions[:, : max(k, 1)], top) for b, k in zip(bases, layer_k90)]
    attn_layers = [overlap(a.directions[:, : max(k, 1)], top) for a, k in zip(attn, attn_k90)]
    # Each layer at its own K90 has its own ceiling, min(K90, k_u) / K90 (0.32 at K90 = 200 against
    # k_u = 64): a layer is compared with the last only at the same k, the last layer's max(K90, 1).
    k_phi, k_attn = max(1, layer_k90[-1]), max(1, attn_k90[-1])
    return {
        "k_unembedding": k_u,
        "chance": k_u / d,
        "delta_phi": per_layer,
        "attn": attn_layers,
        "attn_last": attn_layers[-1],
        "k_same": {"delta_phi": k_phi, "attn": k_attn},
        "delta_phi_same_k": [overlap(b.directions[:, :k_phi], top) for b in bases],
        "attn_same_k": [overlap(a.directions[:, :k_attn], top) for a in attn],
    }


def shared_overlap(shared: Pca, bases: Sequence[Pca]) -> dict[str, Any]:
    """Overlap of the shared basis's top-k subspace (k = its K90) with each layer's top-k
    (「共有基底が Layer 11 に最適化」: largest for the layer the shared basis follows)."""
    k = max(1, shared.k_at(0.9))
    top = shared.directions[:, :k]
    return {"k": k, "per_layer": [overlap(top, b.directions[:, :k]) for b in bases]}


def locate(selection: Selection, flat: torch.Tensor) -> list[tuple[int, int]]:
    """(chunk, position within the chunk) of counted positions given by flat index."""
    return [selection.where[i] for i in flat.tolist()]


def norm_concentration(stats: Stats, selection: Selection) -> list[dict[str, Any]]:
    """Per layer, the share of sum ||Δφ(l)||^2 carried by the top 1% of positions, the share of the
    norms' scatter sum (||Δφ(l)|| - mean)^2 carried by the 1% farthest from the mean
    (「std/mean 比が異常に大きく、少数のサンプルが支配的」: the std the sentence reads), and where
    the three largest are.

    The uncentred share cannot tell a few dominant samples from many: with 1000 norms of mean
    354 and std 118 (layer 11), the top 1% carry at most ~17% of sum ||Δφ||^2 whatever the data.
    """
    rows = []
    for layer, norms in enumerate(stats.norms):  # (n,)
        order = norms.sort(descending=True, stable=True)  # ties (the same tokens after BOS) by position
        sq, top3 = order.values.square(), order.indices[:3]  # norms >= 0: squaring keeps the order
        n_top = max(1, math.ceil(TOP_SHARE * len(sq)))
        scatter = (norms - norms.mean()).square().sort(descending=True).values  # (n,)
        rows.append(
            {
                "layer": layer,
                "top_share": float(sq[:n_top].sum() / sq.sum()) if sq.sum() > 0 else math.nan,
                "top_centred_share": float(scatter[:n_top].sum() / scatter.sum()) if scatter.sum() > 0 else math.nan,
                "n_top": n_top,
                "largest": [[c, p, float(norms[i])] for (c, p), i in zip(locate(selection, top3), top3)],
            }
        )
    return rows


def sample_where(stats: Stats, selection: Selection) -> list[tuple[int, int]]:
    """(chunk, position) of each row of Stats.sample: every counted position up to SAMPLE_SIZE,
    evenly spaced ones beyond."""
    return locate(selection, sample_positions(stats.norms.shape[1], stats.sample.shape[1]))


def pc1_origin(
    stats: Stats, bases: Sequence[Pca], b_out: torch.Tensor, where: Sequence[tuple[int, int]]
) -> list[dict[str, Any]]:
    """Per layer: |cos| of Δφ's first principal direction with the FFN's output bias, the share of
    the variance along it carried by the top 1% of positions and by the top one alone, which
    positions, whether the top one is a chunk's BOS, and the share carried by the sample's BOS rows
    together (`bos_share`, `n_bos` of them) (「何らかの固定的バイアス項の可能性」: a fixed bias adds no
    variance under centred PCA; an input-independent write at the BOS that starts every chunk can).

    b_out: (n_layers, d_model). where: (chunk, position) of each row of stats.sample (sample_where).
    """
    rows = []
    for layer, (basis, bias) in enumerate(zip(bases, b_out.double())):
        u = basis.directions[:, 0]
        bias_norm = float(bias.norm())
        cos = float((u @ bias).abs() / bias_norm) if bias_norm > 0 else 0.0
        along = ((stats.sample[layer].double() - basis.mean) @ u).square()  # (n_sample,)
        order = along.sort(descending=True, stable=True).indices
        n_top = max(1, math.ceil(TOP_SHARE * len(along)))
        top = order[:n_top]
        # every chunk starts with BOS, and position 0 attends only to itself: its write is the same
        # vector in every chunk, so k counted BOS rows share what one input-independent write carries
        bos = torch.tensor([p == 0 for _, p in where], dtype=torch.bool)  # (n_sample,)
        rows.append(
            {
                "layer": layer,
                "bias_cos": cos,
                "bias_norm": bias_norm,
                "top_share": float(along[top].sum() / along.sum()) if along.sum() > 0 else math.nan,
                "top1_share": float(along[order[0]] / along.sum()) if along.sum() > 0 else math.nan,
                "top_positions": [list(where[i]) for i in order[:3].tolist()],
                # chunks start with BOS (Selection), so position 0 of a chunk, where counted, is BOS
                "top_at_bos": where[int(order[0])][1] == 0,
                "n_bos": int(bos.sum()),
                "bos_share": float(along[bos].sum() / along.sum()) if along.sum() > 0 else math.nan,
            }
        )
    return rows
