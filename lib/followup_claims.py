"""Predicates of the sentences the follow-up tables (lib/followups.py) test.

Each takes the run's tables with the follow-up tables merged in (keys attn_only_ppl,
ffn_only_ppl, subspace_overlap, shared_ablation, layer_pca_without_outliers beside 7A-7E)
and returns (holds, what was measured), as the predicates of lib/document.py.
"""

from __future__ import annotations

import statistics

from lib.document import NotApplicable, Outcome, Tables, _fmt, _std_over_mean, d_model, inner, n_layers


def _below_d(t: Tables, table: str) -> list[dict]:
    rows = [r for r in t[table] if r["k"] < d_model(t)]
    if not rows:
        raise NotApplicable(f"the K sweep has no K below d_model = {d_model(t)}")
    return rows


def attention_candidate(t: Tables) -> Outcome:
    """「もし圧縮を試みるなら、FFN ではなく Attention パスが候補」: attention-only ratio <= FFN-only ratio at every K < d_model."""
    attn, ffn = _below_d(t, "attn_only_ppl"), _below_d(t, "ffn_only_ppl")
    worse = [f"K={a['k']}: {a['ratio']:.4g}x vs {f['ratio']:.4g}x" for a, f in zip(attn, ffn) if a["ratio"] > f["ratio"]]
    pairs = "; ".join(f"K={a['k']}: {a['ratio']:.4g}x / {f['ratio']:.4g}x" for a, f in zip(attn, ffn))
    return not worse, f"attention-only / FFN-only ratio {pairs}; attention worse at " + ("; ".join(worse) or "no K")


def _mean_off_diagonal(m: list[list[float]]) -> float:
    return statistics.mean(m[i][j] for i in range(len(m)) for j in range(len(m)) if i != j)


def attention_similar_patterns(t: Tables) -> Outcome:
    """「Attention は各レイヤーで類似した低次元の書き込みパターンを持ち」: attention's mean off-diagonal overlap > the FFN's and > chance."""
    if n_layers(t) < 2:
        raise NotApplicable(f"overlaps between layers need at least 2 layers; this model has {n_layers(t)}")
    o = t["subspace_overlap"]
    a, f = _mean_off_diagonal(o["attn"]), _mean_off_diagonal(o["ffn"])
    return a > f and a > o["chance"], (
        f"mean overlap of the top-{o['k']} subspaces of two layers: attention {a:.3f}, FFN {f:.3f}, chance {o['chance']:.3f}"
    )


def _rises(r: dict[int, float]) -> bool:
    return r[8] < r[16] < r[32]


def harmful_noise(t: Tables) -> Outcome:
    """「Layer 11 に不要な基底が中間層で有害なノイズとして作用するため」: 7D's rise (ratio at K=8 < 16 < 32) with the shared projection at every layer but the last, not at the last alone."""
    if n_layers(t) < 2:
        raise NotApplicable(f"'the other layers' needs at least 2 layers; this model has {n_layers(t)}")
    rows = {r["k"]: r for r in t["shared_ablation"]}
    if not {8, 16, 32} <= set(rows) or d_model(t) <= 32:
        raise NotApplicable(f"the sweep lacks K = 8, 16 or 32 below d_model = {d_model(t)}")
    others = {k: rows[k]["all_but_last_ratio"] for k in (8, 16, 32)}
    last = {k: rows[k]["last_only_ratio"] for k in (8, 16, 32)}
    shared = {r["k"]: r["shared_ratio"] for r in t["lowrank_ppl"]}
    show = lambda r: ", ".join(f"{r[k]:.4g}x" for k in (8, 16, 32))  # noqa: E731
    return _rises(others) and not _rises(last), (
        f"shared ratio at K=8, 16, 32: every layer {show(shared)}; all but the last {show(others)}; last only {show(last)}"
    )


def layer2_k90_rises_without_outliers(t: Tables) -> Outcome:
    """「Layer 2: K=1。分散が1方向に極端に集中（std_norm=73 が原因）」: layer 2's K90 rises above 1 without its outliers (GPT-2 scope)."""
    if n_layers(t) < 3:
        raise NotApplicable(f"layer 2 needs at least 3 layers; this model has {n_layers(t)}")
    before, row = t["layer_pca"][2]["k90"], t["layer_pca_without_outliers"][2]
    where = [(p["chunk"], p["position"]) for p in row["left_out"]]
    return row["k90"] > 1 and row["k90"] > before, (
        f"layer 2 K90 {before} with every position, {row['k90']} without its {row['n_left_out']} outliers "
        f"(chunk, position): {where}"
    )


def largest_std_ratio_k90_rises_without_outliers(t: Tables) -> Outcome:
    """「Layer 2: K=1。分散が1方向に極端に集中（std_norm=73 が原因）」by role: the largest-std/mean layer's K90 rises without its outliers."""
    r = _std_over_mean(t)
    layer = r.index(max(r))
    before, row = t["layer_pca"][layer]["k90"], t["layer_pca_without_outliers"][layer]
    where = [(p["chunk"], p["position"]) for p in row["left_out"]]
    return row["k90"] > before, (
        f"largest std/mean {r[layer]:.3g} at layer {layer}: K90 {before} with every position, {row['k90']} without its "
        f"{row['n_left_out']} outliers (chunk, position): {where}"
    )


def inner_attention_lower(t: Tables) -> Outcome:
    """「Attention は FFN より一貫して低ランク」restricted to the inner layers (the design card's "attention K < FFN K in layers 3-10")."""
    rows = [t["attn_ffn"][i] for i in inner(t)]
    bad = [f"layer {r['layer']}: attn {r['attn_k90']} vs FFN {r['ffn_k90']}" for r in rows if r["attn_k90"] >= r["ffn_k90"]]
    return not bad, (
        f"inner layers {inner(t).start}-{inner(t).stop - 1}: attention K90 {_fmt([r['attn_k90'] for r in rows])}, "
        f"FFN K90 {_fmt([r['ffn_k90'] for r in rows])}; attention not lower at " + ("; ".join(bad) or "no layer")
    )
