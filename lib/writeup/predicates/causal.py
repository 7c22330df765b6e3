"""Predicates of the causal sentences (lib/tables/causes.py's tables) and of the sentences the follow-up
experiments test (7F-7H, lib/tables/followups.py). The write-up gives neither, so on its own tables
these say they cannot decide (NotApplicable, or the claim's document_untestable).

Every threshold is stated once, beside its predicate, with its reason.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable

from lib.writeup.document import LOWRANK_RTOL, Tables
from lib.writeup.predicates.lowrank import rises_8_to_32, sweep_8_16_32
from lib.writeup.predicates.restated import SINGULAR_FRACTION
from lib.writeup.roles import (
    NotApplicable,
    Outcome,
    col,
    combined_band,
    d_model,
    fmt,
    inner,
    measured_only,
    middle_wide,
    n_layers,
    std_over_mean,
)

BALANCED_FACTOR = 3
"""「ノルムが支配的なため」 "far more": at least 3x the components once no layer's scale dominates."""


def norm_dominance_makes_shared_low(t: Tables) -> Outcome:
    """The shared PCA with every layer's total variance equalised needs far more components for 90%.

    Balanced by variance, not by mean norm: scaling to unit mean norm lets a layer whose norm sits on
    one position (GPT-2's layer 2 at BOS) dominate, and the shared K90 falls instead of rising."""
    measured_only(t, "shared_pca_balanced")
    raw, balanced = t["shared_pca"]["k90"], t["shared_pca_balanced"]["k90"]
    return balanced >= BALANCED_FACTOR * max(raw, 1), (
        f"shared K90 {raw} raw, {balanced} with every layer's variance equalised "
        f"({balanced / max(raw, 1):.1f}x; >= {BALANCED_FACTOR}x?)"
        + (f"; {t['shared_pca_normalised']['k90']} at unit mean norm" if "shared_pca_normalised" in t else "")
    )


def _reconstruction_ks(t: Tables, table: str) -> list[int]:
    """7C's K in 64..256 below d_model: where 「細かい構造」 lives (below 64 every basis is coarse)."""
    ks = sorted({r["k"] for r in t[table] if 64 <= r["k"] <= 256 and r["k"] < d_model(t)})
    if not ks:
        raise NotApplicable(f"no reconstruction K in 64..256 below d_model = {d_model(t)}")
    return ks


def _live(t: Tables, layers: Iterable[int]) -> list[int]:
    """The layers with a 7C row that is not NaN (a layer whose every write is zero has none)."""
    written = {r["layer"] for r in t["reconstruction_per_layer"] if not math.isnan(r["cos_sim"])}
    live = [layer for layer in layers if layer in written]
    if not live:
        raise NotApplicable(f"every write of layers {fmt(list(layers))} is zero")
    return live


def _cos(t: Tables, table: str, k: int, layers: list[int]) -> float:
    return statistics.mean(r["cos_sim"] for r in t[table] if r["k"] == k and r["layer"] in layers)


def imbalance_breaks_shared(t: Tables) -> Outcome:
    """「スケール不均衡が共有基底を破壊」, 「壊滅的（ノルム不均衡）」: the damage, not the rank. At every K
    in 64..256 the non-last layers' mean cosine with K components of the variance-balanced shared
    basis beats that with K raw shared components by at least SHARED_COS_GAP (from 7C's sample, the
    same mean: only the directions differ)."""
    measured_only(t, "reconstruction_per_layer", "reconstruction_balanced_per_layer")
    live = _live(t, range(n_layers(t) - 1))
    parts, ok = [], True
    for k in _reconstruction_ks(t, "reconstruction_balanced_per_layer"):
        raw = _cos(t, "reconstruction_per_layer", k, live)
        balanced = _cos(t, "reconstruction_balanced_per_layer", k, live)
        ok &= balanced >= raw + SHARED_COS_GAP
        parts.append(f"K={k}: balanced {balanced:.3f} vs raw {raw:.3f}")
    return ok, "non-last layers' mean cos: " + "; ".join(parts) + f" (balanced better by >= {SHARED_COS_GAP}?)"


SHARED_COS_GAP = 0.1
""""well below" / "beats": at least 0.1 apart in mean cosine (7C's rows are 0.045-0.095 apart per
doubling of K, so 0.1 is more than one doubling's worth)."""


def shared_costs_middle(t: Tables) -> Outcome:
    """「中間層の細かい構造を全く捉えられていない」: at every K in 64..256 below d_model, the middle
    layers' (7C's 「中間層17~52」: middle_wide) mean cosine with K shared components is well below
    their mean cosine with K of their own."""
    measured_only(t, "reconstruction_per_layer", "reconstruction_own_per_layer")
    chosen = middle_wide(t)
    live = _live(t, chosen)
    parts, ok = [], True
    for k in _reconstruction_ks(t, "reconstruction_own_per_layer"):
        own, shared = _cos(t, "reconstruction_own_per_layer", k, live), _cos(t, "reconstruction_per_layer", k, live)
        ok &= shared <= own - SHARED_COS_GAP
        parts.append(f"K={k}: shared {shared:.3f} vs own {own:.3f}")
    return ok, f"layers {chosen.start}-{chosen.stop - 1}, mean cos: " + "; ".join(
        parts
    ) + f" (gap >= {SHARED_COS_GAP}?)"


def sacrifices_others(t: Tables) -> Outcome:
    """「共有 PCA は大ノルム層に引きずられ、他の層を犠牲にする」: at every K in 64..256 below d_model,
    the largest-norm layer is served (its cosine with K shared components within SHARED_COS_GAP of
    that with K of its own) and every other layer is sacrificed (at least SHARED_COS_GAP below)."""
    measured_only(t, "reconstruction_per_layer", "reconstruction_own_per_layer")
    m = col(t, "norms", "mean_norm")
    big = m.index(max(m))
    live = _live(t, range(n_layers(t)))
    others = [layer for layer in live if layer != big]
    if big not in live or not others:
        raise NotApplicable(f"needs the largest-norm layer {big} and another layer with non-zero writes")
    parts, ok, spared = [], True, set()
    for k in _reconstruction_ks(t, "reconstruction_own_per_layer"):
        own = {r["layer"]: r["cos_sim"] for r in t["reconstruction_own_per_layer"] if r["k"] == k}
        shared = {r["layer"]: r["cos_sim"] for r in t["reconstruction_per_layer"] if r["k"] == k}
        ok &= shared[big] >= own[big] - SHARED_COS_GAP
        spared |= {layer for layer in others if shared[layer] > own[layer] - SHARED_COS_GAP}
        gaps = [own[layer] - shared[layer] for layer in others]
        parts.append(f"K={k}: layer {big} shared {shared[big]:.3f} vs own {own[big]:.3f}, others' gap {fmt(gaps)}")
    ok &= not spared
    return ok, (
        f"largest norm at layer {big}; "
        + "; ".join(parts)
        + f"; not sacrificed (gap < {SHARED_COS_GAP}): "
        + (fmt(sorted(spared)) if spared else "none")
    )


def shared_optimised_for_last(t: Tables) -> Outcome:
    """The shared basis's top directions are the last layer's: its top-k subspace overlaps the last
    layer's most."""
    measured_only(t, "shared_overlap")
    o = t["shared_overlap"]["per_layer"]
    return o.index(max(o)) == len(
        o
    ) - 1, f"overlap of the shared top-{t['shared_overlap']['k']} subspace with each layer's: {fmt(o)}"


def layer2_ffn_is_cause(t: Tables) -> Outcome:
    """「この FFN が原因」: layer 2's FFN writes carry >= 90% of its Δφ variance, along Δφ's first direction (|cos| >= 0.99)."""
    measured_only(t, "write_sources")
    r = t["write_sources"][2]
    return r["ffn_share"] >= 0.9 and r["ffn_pc1_cos"] >= 0.99, (
        f"layer 2: FFN variance {r['ffn_share']:.1%} of Δφ's (attention {r['attn_share']:.1%}); "
        f"|cos(PC1 FFN, PC1 Δφ)| {r['ffn_pc1_cos']:.3f}"
    )


FAR_ABOVE_CHANCE = 3
"""「寄り」/「集約」/「類似した」: a subspace overlap at least 3x what random subspaces give."""


def toward_unembedding(key: str) -> Callable[[Tables], Outcome]:
    """The predicate for Δφ's directions (key "delta_phi") or the attention writes' ("attn")."""
    if key not in ("delta_phi", "attn"):
        raise ValueError(f"toward_unembedding: key {key!r} is neither 'delta_phi' nor 'attn'")

    def predicate(t: Tables) -> Outcome:
        """The last layer's top principal directions overlap the unembedding's top singular directions
        far above chance, and more than any other layer's (the sentence singles out the last layer)."""
        measured_only(t, "unembedding_overlap")
        u = t["unembedding_overlap"]
        if key not in u:
            raise NotApplicable(f"the unembedding overlap has no per-layer {key!r} (tables before version 5)")
        values = u[key]
        last, others = values[-1], values[:-1]
        what = "Δφ" if key == "delta_phi" else "attention"
        return last >= FAR_ABOVE_CHANCE * u["chance"] and all(last > o for o in others), (
            f"last layer's top {what} directions in the unembedding's top {u['k_unembedding']}: overlap {last:.3f}, "
            f"chance {u['chance']:.3f} ({last / u['chance']:.1f}x; >= {FAR_ABOVE_CHANCE}x?); the other layers' "
            f"{fmt(others)} (all below?)"
        )

    return predicate


FEW_SHARE = 0.5
"""「支配的」: the 1% of positions farthest from the mean norm carry more than half of the norms'
scatter sum (||Δφ|| - mean)^2, the std the same sentence calls abnormal. The uncentred share of
sum ||Δφ||^2 cannot pass this with layer 11's mean 354 and std 118 (at most ~17%)."""


def few_samples_dominate(layer: int | str) -> Callable[[Tables], Outcome]:
    """The predicate for one layer: a layer index, or "last"."""
    if layer != "last" and not isinstance(layer, int):
        raise ValueError(f"few_samples_dominate: layer {layer!r} is neither a layer index nor 'last'")

    def predicate(t: Tables) -> Outcome:
        measured_only(t, "norm_concentration")
        r = t["norm_concentration"][n_layers(t) - 1 if layer == "last" else layer]
        if "top_centred_share" not in r:
            raise NotApplicable("the norm concentration has no centred share (tables before version 5)")
        where = ", ".join(f"chunk {c} position {p} (norm {n:.4g})" for c, p, n in r["largest"])
        return r["top_centred_share"] > FEW_SHARE, (
            f"layer {r['layer']}: the {r['n_top']} positions (1%) farthest from the mean norm carry "
            f"{r['top_centred_share']:.1%} of sum (||Δφ|| - mean)^2 (> {FEW_SHARE:.0%}?; of sum ||Δφ||^2 the top 1% carry "
            f"{r['top_share']:.1%}); largest: {where}"
        )

    return predicate


BIAS_ONE_POSITION = 0.9
"""「固定的バイアス項」 under centred PCA: an input-independent write at one position; that position
carries at least 90% of the variance along PC1 (the rest is every other position's spread)."""


def layer2_fixed_bias(t: Tables) -> Outcome:
    """「固定的バイアス項の可能性」, charitably: a constant FFN bias adds no variance under centred PCA, so
    |cos(PC1, b_out)| is high only by coincidence; an input-independent write at one position (BOS)
    is what can make PC1. Layer 2's top position carries >= 90% of the variance along PC1 and is a BOS."""
    measured_only(t, "pc1_origin")
    r = t["pc1_origin"][2]
    where = ", ".join(f"chunk {c} position {p}" for c, p in r["top_positions"])
    return r["top1_share"] >= BIAS_ONE_POSITION and r["top_at_bos"], (
        f"layer 2: the top position carries {r['top1_share']:.1%} of the variance along PC1 (>= {BIAS_ONE_POSITION:.0%}?), "
        f"{'a BOS' if r['top_at_bos'] else 'not a BOS'} (largest: {where}); top 1% {r['top_share']:.1%}; "
        f"|cos(PC1, b_out)| {r['bias_cos']:.3f} (|b_out| {r['bias_norm']:.3g})"
    )


# ---------------------------------------------------------------- follow-ups (7F-7H, lib/tables/followups.py)
def _below_d_in(t: Tables, table: str) -> list[dict]:
    rows = [r for r in t[table] if r["k"] < d_model(t)]
    if not rows:
        raise NotApplicable(f"the K sweep has no K below d_model = {d_model(t)}")
    return rows


def attention_candidate(t: Tables) -> Outcome:
    """「もし圧縮を試みるなら、FFN ではなく Attention パスが候補」: at no K < d_model is the attention-only
    ratio above the FFN-only ratio beyond the combined band of two 7D cells (within it: a tie)."""
    attn, ffn = _below_d_in(t, "attn_only_ppl"), _below_d_in(t, "ffn_only_ppl")
    band = combined_band(LOWRANK_RTOL)
    worse = [
        f"K={a['k']}: {a['ratio']:.4g}x vs {f['ratio']:.4g}x"
        for a, f in zip(attn, ffn)
        if a["ratio"] > band * f["ratio"]
    ]
    pairs = "; ".join(f"K={a['k']}: {a['ratio']:.4g}x / {f['ratio']:.4g}x" for a, f in zip(attn, ffn))
    return not worse, f"attention-only / FFN-only ratio {pairs}; attention worse beyond {band:.2f}x at " + (
        "; ".join(worse) or "no K"
    )


def _mean_off_diagonal(m: list[list[float]]) -> float:
    return statistics.mean(m[i][j] for i in range(len(m)) for j in range(len(m)) if i != j)


def attention_similar_patterns(t: Tables) -> Outcome:
    """「Attention は各レイヤーで類似した低次元の書き込みパターンを持ち」: attention's mean off-diagonal
    overlap is above the FFN's and far above chance (FAR_ABOVE_CHANCE)."""
    if n_layers(t) < 2:
        raise NotApplicable(f"overlaps between layers need at least 2 layers; this model has {n_layers(t)}")
    o = t["subspace_overlap"]
    a, f = _mean_off_diagonal(o["attn"]), _mean_off_diagonal(o["ffn"])
    return a > f and a >= FAR_ABOVE_CHANCE * o["chance"], (
        f"mean overlap of the top-{o['k']} subspaces of two layers: attention {a:.3f}, FFN {f:.3f}, chance {o['chance']:.3f} "
        f"(attention above the FFN and >= {FAR_ABOVE_CHANCE}x chance?)"
    )


def harmful_noise(t: Tables) -> Outcome:
    """「Layer 11 に不要な基底が中間層で有害なノイズとして作用するため」: 7D's rise over K = 8, 16, 32
    (rises_8_to_32, ties by the 7D cells' combined band) with the shared projection at every layer
    but the last, not at the last alone."""
    if n_layers(t) < 2:
        raise NotApplicable(f"'the other layers' needs at least 2 layers; this model has {n_layers(t)}")
    rows = sweep_8_16_32(t, "shared_ablation")
    others = {k: rows[k]["all_but_last_ratio"] for k in (8, 16, 32)}
    last = {k: rows[k]["last_only_ratio"] for k in (8, 16, 32)}
    shared = {r["k"]: r["shared_ratio"] for r in t["lowrank_ppl"]}
    show = lambda r: ", ".join(f"{r[k]:.4g}x" for k in (8, 16, 32))  # noqa: E731
    return rises_8_to_32(others) and not rises_8_to_32(last), (
        f"shared ratio at K=8, 16, 32: every layer {show(shared)}; all but the last {show(others)}; last only {show(last)}"
    )


def _no_longer_singular(t: Tables, layer: int, label: str) -> Outcome:
    """The layer's K90 without its outliers rises and reaches a tenth of the median K90 (with every
    position): by the suite's own criterion (SINGULAR_FRACTION) the layer is no longer singular."""
    before, row = t["layer_pca"][layer]["k90"], t["layer_pca_without_outliers"][layer]
    least = statistics.median(col(t, "layer_pca", "k90")) / SINGULAR_FRACTION
    where = [(p["chunk"], p["position"]) for p in row["left_out"]]
    return row["k90"] > before and row["k90"] >= least, (
        f"{label}: K90 {before} with every position, {row['k90']} without its {row['n_left_out']} outliers "
        f"(>= median K90 / {SINGULAR_FRACTION} = {least:.3g}?; (chunk, position): {where})"
    )


def layer2_k90_rises_without_outliers(t: Tables) -> Outcome:
    """「Layer 2: K=1。分散が1方向に極端に集中（std_norm=73 が原因）」: without its outliers layer 2 is no
    longer singular (GPT-2 scope)."""
    if n_layers(t) < 3:
        raise NotApplicable(f"layer 2 needs at least 3 layers; this model has {n_layers(t)}")
    return _no_longer_singular(t, 2, "layer 2")


def largest_std_ratio_k90_rises_without_outliers(t: Tables) -> Outcome:
    """「Layer 2: K=1。分散が1方向に極端に集中（std_norm=73 が原因）」by role: without its outliers the
    largest-std/mean layer is no longer singular."""
    r = std_over_mean(t)
    layer = r.index(max(r))
    return _no_longer_singular(t, layer, f"largest std/mean {r[layer]:.3g} at layer {layer}")


def inner_attention_lower(t: Tables) -> Outcome:
    """「Attention は FFN より一貫して低ランク」restricted to the inner layers (the design card's "attention K < FFN K in layers 3-10")."""
    rows = [t["attn_ffn"][i] for i in inner(t)]
    bad = [
        f"layer {r['layer']}: attn {r['attn_k90']} vs FFN {r['ffn_k90']}" for r in rows if r["attn_k90"] >= r["ffn_k90"]
    ]
    return not bad, (
        f"inner layers {inner(t).start}-{inner(t).stop - 1}: attention K90 {fmt([r['attn_k90'] for r in rows])}, "
        f"FFN K90 {fmt([r['ffn_k90'] for r in rows])}; attention not lower at " + ("; ".join(bad) or "no layer")
    )
