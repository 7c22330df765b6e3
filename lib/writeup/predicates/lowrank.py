"""Predicates of the sentences about low-rank inference (7D): perplexity with each layer's Δφ
projected onto K principal directions, and what the write-up concludes from it.

Every threshold is stated once, beside its predicate, with its reason. Two 7D cells compared with
each other tie within their combined band (lib/writeup/roles.py combined_band).
"""

from __future__ import annotations

import math
from typing import Any

from lib.writeup.document import DOCUMENT, Document, Tables
from lib.writeup.predicates.restated import PRINTED_ATOL, PRINTED_RTOL, not_low_rank
from lib.writeup.registry import predicate
from lib.writeup.roles import NotApplicable, Outcome, below_d, col, combined_band, d_model, fmt, row_at, tolerance

USABLE_RATIO = 2
"""A low-rank projection is usable while the perplexity stays within 2x the baseline (the document's
「ようやく 1.49x」 at K = 512, against 8.3x at K = 256)."""
TWO_THIRDS = 0.6
"""「K=512（d_model の 67%）でようやく」: the first usable K is at least 60% of d_model (the sweep
doubles K, so between 256 = 33% and 512 = 67% there is no row)."""


@predicate
def ratio_first_good_at_two_thirds(t: Tables) -> Outcome:
    rows = t["lowrank_ppl"]
    first = next(r for r in rows if r["individual_ratio"] < USABLE_RATIO)
    return (
        first["k"] >= TWO_THIRDS * d_model(t),
        f"smallest K with individual ratio < 2: K={first['k']} ({first['individual_ratio']:.3g}x) of d_model {d_model(t)}",
    )


CATASTROPHIC = 5
"""「壊滅的」: perplexity above 5x the baseline (the document's 8.3x at K = 256 and the shared
basis's smallest 7.0x keep above it within the ratio cells' 15%)."""


@predicate
def third_catastrophic(t: Tables) -> Outcome:
    r = row_at(t, "lowrank_ppl", d_model(t) // 3)
    return r[
        "individual_ratio"
    ] > CATASTROPHIC, f"K={r['k']} (<= d_model/3): individual ratio {r['individual_ratio']:.3g}x"


FEW_FAIL = 10
"""「少数の基底では…捉えられない」: at K <= d_model/12 (64 on GPT-2, "a few") perplexity stays above
10x the baseline (the document: 54.1x at K = 64)."""


@predicate
def few_components_fail(t: Tables) -> Outcome:
    rows = [r for r in t["lowrank_ppl"] if r["k"] <= d_model(t) / 12]
    if not rows:
        raise NotApplicable(f"no K <= d_model/12 = {d_model(t) / 12:.3g} in the sweep")
    worst_best = min(r["individual_ratio"] for r in rows)
    return worst_best > FEW_FAIL, f"individual ratios at K <= d_model/12: {fmt([r['individual_ratio'] for r in rows])}"


@predicate
def shared_catastrophic(t: Tables) -> Outcome:
    rows = below_d(t)
    return min(
        r["shared_ratio"] for r in rows
    ) > CATASTROPHIC, f"shared ratios for K < d_model: {fmt([r['shared_ratio'] for r in rows])}"


@predicate
def shared_worse(t: Tables, document: Document = DOCUMENT) -> Outcome:
    """「他の層の Δφ を破壊している」: at most K < d_model (more than half) the shared ratio is the worse,
    beyond the two ratio cells' combined band (1 / (1 - 15%)^2 = 1.38x).

    Not "never better": at K = 8 the document's own shared ratio is the better by 6.5% (136.0x vs
    144.9x), a tie that a table within the cells' 15% can stretch to 1.47x either way."""
    rows = below_d(t)
    band = combined_band(tolerance(document, "lowrank"))
    worse = [r["k"] for r in rows if r["shared_ratio"] > band * r["individual_ratio"]]
    better = [r["k"] for r in rows if r["individual_ratio"] > band * r["shared_ratio"]]
    shown = "; ".join(f"K={r['k']}: {r['shared_ratio']:.4g}x vs {r['individual_ratio']:.4g}x" for r in rows)
    return 2 * len(worse) > len(rows), (
        f"shared vs individual ratio {shown}; shared worse by more than {band:.2f}x at K={worse} of {len(rows)} K"
        + (f"; better at K={better}" if better else "")
    )


def rises_8_to_32(r: dict[int, float], band: float) -> bool:
    """「K が増えるにつれ PPL が増加する区間」 over K = 8, 16, 32 with ties: the ratio at K = 32 is above
    K = 8's beyond `band`, and neither step falls beyond it.

    7D's sentences pass the combined band of two of the write-up's 7D cells, because two ratio cells can move apart by 1.38x
    within their 15%: the document's 16 -> 32 step (383.4x -> 463.2x, 1.21x) is itself such a tie.
    Rows of one run that no document cell gives (7H) pass band=1: no device moves one against the other."""
    return r[32] > band * r[8] and r[8] <= band * r[16] and r[16] <= band * r[32]


def sweep_8_16_32(t: Tables, table: str) -> dict[int, dict[str, Any]]:
    rows = {row["k"]: row for row in t[table]}
    if not {8, 16, 32} <= set(rows) or d_model(t) <= 32:
        raise NotApplicable(f"the sweep lacks K = 8, 16 or 32 below d_model = {d_model(t)}")
    return rows


@predicate
def shared_rises(t: Tables, document: Document = DOCUMENT) -> Outcome:
    r = {k: row["shared_ratio"] for k, row in sweep_8_16_32(t, "lowrank_ppl").items()}
    band = combined_band(tolerance(document, "lowrank"))
    return rises_8_to_32(r, band), (
        f"shared ratio K=8: {r[8]:.4g}x, 16: {r[16]:.4g}x, 32: {r[32]:.4g}x "
        f"(a rise beyond {band:.2f}x, no fall beyond it?)"
    )


ROUNDED_ONE = 0.005
"""「1.00x」 at K = d_model: within the rounding of two decimals."""


@predicate
def ratios_are_ppl_over_baseline(t: Tables) -> Outcome:
    base = t["baseline_ppl"]
    bad = [
        f"K={r['k']} {kind}"
        for r in t["lowrank_ppl"]
        for kind in ("individual", "shared")
        if not math.isclose(r[f"{kind}_ppl"] / base, r[f"{kind}_ratio"], rel_tol=PRINTED_RTOL, abs_tol=PRINTED_ATOL)
    ]
    return not bad, "ratio = PPL / baseline " + ("everywhere" if not bad else "fails at " + ", ".join(bad))


@predicate
def full_k_is_baseline(t: Tables) -> Outcome:
    r = t["lowrank_ppl"][-1]
    ok = abs(r["individual_ratio"] - 1) < ROUNDED_ONE and abs(r["shared_ratio"] - 1) < ROUNDED_ONE
    return ok, f"K=d_model={r['k']}: {r['individual_ratio']:.4f}x / {r['shared_ratio']:.4f}x"


ABOUT_1_1 = 1.15
"""「PPL ≈1.1x」: 1.1x within the 7D cells' 15% rounded, i.e. at most 1.15x."""


@predicate
def ppl_11_at_two_thirds(t: Tables) -> Outcome:
    r = row_at(t, "lowrank_ppl", round(2 * d_model(t) / 3))
    return r["individual_ratio"] <= ABOUT_1_1, f"individual ratio at K={r['k']}: {r['individual_ratio']:.3g}x"


@predicate
def variance_is_not_function(t: Tables, document: Document = DOCUMENT) -> Outcome:
    """At the first K of the sweep where every layer keeps 90% of its variance, perplexity is still > 2x.

    That K is the largest K90 within the K cells' 10% ((1 - K_RTOL) max K90): the document's 235
    (layer 6) accepts 261, past 256, where the sweep's next K (512) would decide instead."""
    k_rtol = document.tolerances["k"]["rtol"]  # the write-up's K cells' (exp7: 10%)
    k90 = max(col(t, "layer_pca", "k90"))
    r = next((r for r in t["lowrank_ppl"] if r["k"] >= (1 - k_rtol) * k90), t["lowrank_ppl"][-1])
    return r["individual_ratio"] > USABLE_RATIO, (
        f"every layer has 90% of its variance by K={k90} (within the K cells' 10%: "
        f"{(1 - k_rtol) * k90:.4g}); at K={r['k']} the ratio is {r['individual_ratio']:.3g}x"
    )


@predicate
def hard_to_compress(t: Tables) -> Outcome:
    """「Δφ も高ランク、圧縮困難」: not low rank, and no K <= d_model/3 keeps the perplexity within 2x."""
    high, rank_msg = not_low_rank(t)
    rows = [r for r in below_d(t) if r["k"] <= d_model(t) / 3]
    if not rows:
        raise NotApplicable(f"no K <= d_model/3 = {d_model(t) / 3:.3g} in the sweep")
    best = min(r["individual_ratio"] for r in rows)
    return high and best > USABLE_RATIO, f"{rank_msg}; best individual ratio at K <= d_model/3: {best:.3g}x (> 2?)"
