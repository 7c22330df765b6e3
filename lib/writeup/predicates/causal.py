"""Predicates of the causal sentences (lib/tables/causes.py's tables) and of the sentences the follow-up
experiments test (7F-7H, lib/tables/followups.py). The write-up gives neither, so on its own tables
these say they cannot decide (NotApplicable, or the claim's document_untestable).

Every threshold is stated once, beside its predicate, with its reason.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable

from lib.writeup.document import DOCUMENT, Document, Tables
from lib.writeup.predicates.lowrank import rises_8_to_32, shared_worse, sweep_8_16_32
from lib.writeup.predicates.restated import SINGULAR_FRACTION
from lib.writeup.predicates.restated import (
    last_norm_dominates as _last_norm_dominates,  # not a causal predicate (catalogue.kind)
)
from lib.writeup.registry import predicate
from lib.writeup.roles import (
    DOMINATED,
    NotApplicable,
    Outcome,
    col,
    d_model,
    dominated_layers,
    fmt,
    inner,
    largest_norm_layer,
    measured_only,
    middle_wide,
    n_layers,
    std_over_mean,
)

BALANCED_FACTOR = 3
"""「ノルムが支配的なため」 "far more": at least 3x the components once no layer's scale dominates."""


@predicate
def norm_dominance_makes_shared_low(t: Tables) -> Outcome:
    """「これは Layer 11 のノルムが支配的なためである」: the layer named must dominate (7C-last-norm-dominates:
    the last layer's mean norm >= 5x every middle layer's), and with every layer's total variance
    equalised the shared PCA needs far more components for 90%.

    Equalising removes every layer's scale at once, so the raise alone does not say whose norm made
    the shared K low: on a model whose last layer is the smallest it can still hold. The first half
    ties it to the layer the sentence names (no measurement scales the last layer alone).

    Balanced by variance, not by mean norm: scaling to unit mean norm lets a layer whose norm sits on
    one position (GPT-2's layer 2 at BOS) dominate, and the shared K90 falls instead of rising."""
    measured_only(t, "shared_pca_balanced")
    named, named_says = _last_norm_dominates(t)
    raw, balanced = t["shared_pca"]["k90"], t["shared_pca_balanced"]["k90"]
    return named and balanced >= BALANCED_FACTOR * max(raw, 1), (
        f"{named_says}; shared K90 {raw} raw, {balanced} with every layer's variance equalised "
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


def _imbalance(t: Tables) -> tuple[int, list[int]]:
    """(the largest-norm layer, the live layers it dominates): the roles of 「大ノルム層」 and 「他の層」
    (lib/roles.py largest_norm_layer, dominated_layers), the same in every norm-imbalance predicate."""
    big = largest_norm_layer(t)
    written = {r["layer"] for r in t["reconstruction_per_layer"] if not math.isnan(r["cos_sim"])}
    return big, [layer for layer in dominated_layers(t) if layer in written]


@predicate
def imbalance_breaks_shared(t: Tables) -> Outcome:
    """「スケール不均衡が共有基底を破壊」, 「壊滅的（ノルム不均衡）」 as reconstruction (the suite does not
    run the balanced basis's perplexity): at every K in 64..256 the layers the largest-norm layer
    dominates (roles.dominated_layers) have a mean cosine with K components of the variance-balanced
    shared basis at least SHARED_COS_GAP above that with K raw shared components (from 7C's sample,
    the same mean: only the directions differ). No dominated layer: no imbalance, and it does not hold."""
    measured_only(t, "reconstruction_per_layer", "reconstruction_balanced_per_layer")
    big, live = _imbalance(t)
    if not live:
        return False, f"largest norm at layer {big}; no layer's mean norm is 1/{DOMINATED} of it: no imbalance"
    parts, ok = [], True
    for k in _reconstruction_ks(t, "reconstruction_balanced_per_layer"):
        raw = _cos(t, "reconstruction_per_layer", k, live)
        balanced = _cos(t, "reconstruction_balanced_per_layer", k, live)
        ok &= balanced >= raw + SHARED_COS_GAP
        parts.append(f"K={k}: balanced {balanced:.3f} vs raw {raw:.3f}")
    return ok, (
        f"largest norm at layer {big}; the layers it dominates {fmt(live)}, mean cos: "
        + "; ".join(parts)
        + f" (balanced better by >= {SHARED_COS_GAP}?)"
    )


SHARED_COS_GAP = 0.1
""""well below" / "beats": at least 0.1 apart in mean cosine (7C's rows are 0.045-0.095 apart per
doubling of K, so 0.1 is more than one doubling's worth)."""


@predicate
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


@predicate
def sacrifices_others(t: Tables) -> Outcome:
    """「共有 PCA は大ノルム層に引きずられ、他の層を犠牲にする」: at every K in 64..256 below d_model,
    the largest-norm layer is served (its cosine with K shared components within SHARED_COS_GAP of
    that with K of its own) and every layer it dominates is sacrificed (at least SHARED_COS_GAP below).

    「大ノルム層」 is one layer, the largest-norm one: the sentence before names Layer 11's norm, and 7D
    says the shared basis is 「Layer 11 に最適化」. 「他の層」 are the layers it dominates (mean norm at
    most a fifth of it, 7C-last-norm-dominates' factor): GPT-2's layer 10 (97.9, 3.6x below layer
    11 and 1.9x above any middle layer) is neither, and the sentence is not read to require it to be
    sacrificed. No dominated layer: nothing is sacrificed to the large-norm layer, and it does not hold."""
    measured_only(t, "reconstruction_per_layer", "reconstruction_own_per_layer")
    big, others = _imbalance(t)
    live = _live(t, range(n_layers(t)))
    if big not in live:
        raise NotApplicable(f"every write of the largest-norm layer {big} is zero")
    if not others:
        return False, f"largest norm at layer {big}; no layer's mean norm is 1/{DOMINATED} of it: none to sacrifice"
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
        f"largest norm at layer {big}, dominating layers {fmt(others)}; "
        + "; ".join(parts)
        + f"; not sacrificed (gap < {SHARED_COS_GAP}): "
        + (fmt(sorted(spared)) if spared else "none")
    )


@predicate
def shared_optimised_for_last(t: Tables) -> Outcome:
    """The shared basis's top directions are the last layer's: its top-k subspace overlaps the last
    layer's most."""
    measured_only(t, "shared_overlap")
    o = t["shared_overlap"]["per_layer"]
    return o.index(max(o)) == len(
        o
    ) - 1, f"overlap of the shared top-{t['shared_overlap']['k']} subspace with each layer's: {fmt(o)}"


@predicate
def shared_follows_last_norm(t: Tables) -> Outcome:
    """「共有PCA は Layer 11 のノルムに汚染されており」: the last layer is the largest-norm layer and the
    shared basis's top-k subspace overlaps the last layer's most (shared_optimised_for_last)."""
    measured_only(t, "shared_overlap")
    big = largest_norm_layer(t)
    follows, says = shared_optimised_for_last(t)
    return follows and big == n_layers(t) - 1, f"largest norm at layer {big}; {says}"


@predicate
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


@predicate(factory=True)
def toward_unembedding(key: str) -> Callable[[Tables], Outcome]:
    """The predicate for Δφ's directions (key "delta_phi") or the attention writes' ("attn")."""
    if key not in ("delta_phi", "attn"):
        raise ValueError(f"toward_unembedding: key {key!r} is neither 'delta_phi' nor 'attn'")

    def predicate(t: Tables) -> Outcome:
        """The last layer's top principal directions overlap the unembedding's top singular directions
        far above chance, and more than any other layer's at the same k (the sentence singles out the
        last layer). Each layer at its own K90 would have its own ceiling min(K90, k_u) / K90 (0.32 at
        K90 = 200, k_u = 64), so "more than any other layer" would be decided by K90, not direction."""
        measured_only(t, "unembedding_overlap")
        u = t["unembedding_overlap"]
        if f"{key}_same_k" not in u:
            raise NotApplicable(
                f"the unembedding overlap has no per-layer {key!r} at one k (tables cached before issue 26: "
                "rerun with --refresh)"
            )
        values, k = u[f"{key}_same_k"], u["k_same"][key]
        last, others = values[-1], values[:-1]
        what = "Δφ" if key == "delta_phi" else "attention"
        return last >= FAR_ABOVE_CHANCE * u["chance"] and all(last > o for o in others), (
            f"every layer's top {k} {what} directions (the last layer's K90) in the unembedding's top "
            f"{u['k_unembedding']}: last {last:.3f}, chance {u['chance']:.3f} ({last / u['chance']:.1f}x; "
            f">= {FAR_ABOVE_CHANCE}x?); the other layers' {fmt(others)} (all below?)"
        )

    return predicate


FEW_SHARE = 0.5
"""「支配的」: the 1% of positions farthest from the mean norm carry more than half of the norms'
scatter sum (||Δφ|| - mean)^2, the std the same sentence calls abnormal. The uncentred share of
sum ||Δφ||^2 cannot pass this with layer 11's mean 354 and std 118 (at most ~17%)."""


@predicate(factory=True)
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
"""「固定的バイアス項」 under centred PCA: an input-independent write at the BOS positions; together they
carry at least 90% of the variance along PC1 (the rest is every other position's spread)."""


@predicate
def layer2_fixed_bias(t: Tables) -> Outcome:
    """「固定的バイアス項の可能性」, charitably: a constant FFN bias adds no variance under centred PCA, so
    |cos(PC1, b_out)| is high only by coincidence; an input-independent write at BOS is what can make
    PC1. Every chunk starts with BOS and position 0 attends only to itself, so its write is the same
    vector in every chunk: k chunks give k equal rows, each with at most 1/k of PC1's variance. The
    BOS rows together must carry >= 90% of the variance along PC1 (`bos_share`).

    Not applicable under --positions text (BOS is not counted), nor past the 7C sample's size (its
    evenly spaced positions can miss BOS rows)."""
    measured_only(t, "pc1_origin")
    config = t.get("config", {})
    if config.get("positions") == "text":
        raise NotApplicable("--positions text leaves BOS out: an input-independent write at BOS is not counted")
    sample, n = t.get("reconstruction_sample"), config.get("n_tokens")
    if sample is not None and n is not None and sample < n:
        raise NotApplicable(
            f"PC1's positions are read from an evenly spaced sample of {sample} of {n}, which can miss BOS rows"
        )
    r = t["pc1_origin"][2]
    if "bos_share" not in r:
        raise NotApplicable("pc1_origin has no BOS share (tables cached before issue 26: rerun with --refresh)")
    if not r["n_bos"]:
        raise NotApplicable("no BOS row among the counted positions")
    where = ", ".join(f"chunk {c} position {p}" for c, p in r["top_positions"])
    return r["bos_share"] >= BIAS_ONE_POSITION, (
        f"layer 2: the {r['n_bos']} BOS rows carry {r['bos_share']:.1%} of the variance along PC1 "
        f"(>= {BIAS_ONE_POSITION:.0%}?); the top position {r['top1_share']:.1%} "
        f"({'a BOS' if r['top_at_bos'] else 'not a BOS'}; largest: {where}); top 1% {r['top_share']:.1%}; "
        f"|cos(PC1, b_out)| {r['bias_cos']:.3f} (|b_out| {r['bias_norm']:.3g})"
    )


# ---------------------------------------------------------------- follow-ups (7F-7H, lib/tables/followups.py)
def _below_d_in(t: Tables, table: str) -> list[dict]:
    rows = [r for r in t[table] if r["k"] < d_model(t)]
    if not rows:
        raise NotApplicable(f"the K sweep has no K below d_model = {d_model(t)}")
    return rows


@predicate
def attention_candidate(t: Tables) -> Outcome:
    """「もし圧縮を試みるなら、FFN ではなく Attention パスが候補」, 「Attention は FFN より圧縮しやすい」 in the
    write-up's own sense (perplexity): at every K < d_model the attention-only ratio is below the
    FFN-only ratio. No tie band: both come from one run (no document cell moves across devices), where
    a consistent gap is signal, and a tie is no confirmation."""
    attn, ffn = _below_d_in(t, "attn_only_ppl"), _below_d_in(t, "ffn_only_ppl")
    not_lower = [
        f"K={a['k']}: {a['ratio']:.4g}x vs {f['ratio']:.4g}x" for a, f in zip(attn, ffn) if a["ratio"] >= f["ratio"]
    ]
    pairs = "; ".join(f"K={a['k']}: {a['ratio']:.4g}x / {f['ratio']:.4g}x" for a, f in zip(attn, ffn))
    return not not_lower, f"attention-only / FFN-only ratio {pairs}; attention not lower at " + (
        "; ".join(not_lower) or "no K"
    )


def _mean_off_diagonal(m: list[list[float]]) -> float:
    return statistics.mean(m[i][j] for i in range(len(m)) for j in range(len(m)) if i != j)


def _per_layer_mean(m: list[list[float]]) -> list[float]:
    """Each layer's mean overlap with the other layers (row means off the diagonal)."""
    return [statistics.mean(m[i][j] for j in range(len(m)) if j != i) for i in range(len(m))]


@predicate
def attention_similar_patterns(t: Tables) -> Outcome:
    """「Attention は各レイヤーで類似した低次元の書き込みパターンを持ち」: in each layer (「各レイヤーで」, not
    on average) attention's top-k subspace overlaps the other layers' far above chance
    (FAR_ABOVE_CHANCE), on average over the other layers. The contrast with the FFN is the next
    sentence's (「一方 FFN は…多様」: ffn_diverse)."""
    if n_layers(t) < 2:
        raise NotApplicable(f"overlaps between layers need at least 2 layers; this model has {n_layers(t)}")
    o = t["subspace_overlap"]
    a = _per_layer_mean(o["attn"])
    low = [i for i, v in enumerate(a) if v < FAR_ABOVE_CHANCE * o["chance"]]
    return not low, (
        f"each layer's mean overlap of its top-{o['k']} attention subspace with the other layers' {fmt(a)}, "
        f"chance {o['chance']:.3f} (each >= {FAR_ABOVE_CHANCE}x chance?); below at layers {low}"
    )


@predicate
def ffn_diverse(t: Tables) -> Outcome:
    """「一方 FFN は高次元で多様な書き込みを行い」: 多様 against attention's 「類似した」: in each layer the
    FFN's mean overlap with the other layers is below attention's by at least the chance overlap
    (k / d_model: two overlaps closer than what random subspaces share are a tie)."""
    if n_layers(t) < 2:
        raise NotApplicable(f"overlaps between layers need at least 2 layers; this model has {n_layers(t)}")
    o = t["subspace_overlap"]
    a, f = _per_layer_mean(o["attn"]), _per_layer_mean(o["ffn"])
    alike = [i for i in range(len(a)) if f[i] > a[i] - o["chance"]]
    return not alike, (
        f"each layer's mean overlap with the other layers (top-{o['k']}): FFN {fmt(f)}, attention {fmt(a)}; "
        f"FFN not below attention by chance ({o['chance']:.3f}) at layers {alike}"
    )


@predicate
def harmful_noise(t: Tables) -> Outcome:
    """「Layer 11 に不要な基底が中間層で有害なノイズとして作用するため」: 7D's rise over K = 8, 16, 32 with
    the shared projection at every layer but the last (7H projects layers 0..L-2 together: the middle
    layers with the early ones and those after them; there is no middle-only ablation), not at the
    last alone. No tie band: 7H's two rows come from one run (rises_8_to_32 with band 1)."""
    if n_layers(t) < 2:
        raise NotApplicable(f"'the other layers' needs at least 2 layers; this model has {n_layers(t)}")
    rows = sweep_8_16_32(t, "shared_ablation")
    others = {k: rows[k]["all_but_last_ratio"] for k in (8, 16, 32)}
    last = {k: rows[k]["last_only_ratio"] for k in (8, 16, 32)}
    shared = {r["k"]: r["shared_ratio"] for r in t["lowrank_ppl"]}
    show = lambda r: ", ".join(f"{r[k]:.4g}x" for k in (8, 16, 32))  # noqa: E731
    return rises_8_to_32(others, band=1) and not rises_8_to_32(last, band=1), (
        f"shared ratio at K=8, 16, 32: every layer {show(shared)}; all but the last {show(others)}; last only {show(last)}"
    )


@predicate
def shared_destroys_others(t: Tables, document: Document = DOCUMENT) -> Outcome:
    """「共有基底が…他の層の Δφ を破壊している」: 7D's shared ratio is the worse (shared_worse), and 7H
    locates the damage in the other layers: at most K < d_model the shared projection at every layer
    but the last costs more than at the last alone. No tie band for 7H: both rows come from one run."""
    measured_only(t, "shared_ablation")
    worse, says = shared_worse(t, document)
    rows = _below_d_in(t, "shared_ablation")
    located = [r["k"] for r in rows if r["all_but_last_ratio"] > r["last_only_ratio"]]
    shown = "; ".join(f"K={r['k']}: {r['all_but_last_ratio']:.4g}x vs {r['last_only_ratio']:.4g}x" for r in rows)
    return worse and 2 * len(located) > len(rows), (
        f"{says}; 7H all but the last vs last only: {shown}; the others' projection costs more at K={located} "
        f"of {len(rows)} K (most?)"
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


@predicate
def layer2_k90_rises_without_outliers(t: Tables) -> Outcome:
    """「Layer 2: K=1。分散が1方向に極端に集中（std_norm=73 が原因）」: without its outliers layer 2 is no
    longer singular (GPT-2 scope)."""
    if n_layers(t) < 3:
        raise NotApplicable(f"layer 2 needs at least 3 layers; this model has {n_layers(t)}")
    return _no_longer_singular(t, 2, "layer 2")


@predicate
def largest_std_ratio_k90_rises_without_outliers(t: Tables) -> Outcome:
    """「Layer 2: K=1。分散が1方向に極端に集中（std_norm=73 が原因）」by role: without its outliers the
    largest-std/mean layer is no longer singular."""
    r = std_over_mean(t)
    layer = r.index(max(r))
    return _no_longer_singular(t, layer, f"largest std/mean {r[layer]:.3g} at layer {layer}")


@predicate
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
