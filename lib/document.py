"""The write-up's tables and claims as data (`../shared/seed/exp7.ja.md`, English: exp7.en.md).

DOCUMENT_TABLES holds every number of tables 7A-7E in the shape of the measured tables
(lib/experiment.py), so a sentence's predicate runs on either: on the measured tables it
checks the finding; on the document's own it checks that the sentence follows from the
write-up's numbers. CELLS are the table cells with their tolerances; CLAIMS the
sentences, each with a predicate, or the reason it cannot be tested, and, where the
document's own numbers contradict it, the reason quoting both.

Layer roles make sentences portable across models (GPT-2 small: 12 layers):
first = 0, last = L-1, middle = L//4 .. 2L//3 (3-8, the write-up's "middle layers" of
7B), middle_wide = L//4 .. 3L//4 (3-9: 7C's 「中間層17~52」, 52.4 being layer 9), inner =
L//4 .. L-2 (3-10, the layers 7E's "middle layers" ratio range covers).

Each claim quotes the Japanese phrase it tests (`ja`): the original stands where the
English rendering differs. A sentence whose literal reading goes beyond the document's
own tables while its qualified reading holds is "overstated" (both readings are tested).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Tables = dict[str, Any]


class NotApplicable(Exception):
    """A predicate cannot be evaluated on this model's tables (e.g. d_model too small for the K it names)."""


Outcome = tuple[bool, str]
"""(holds, what was measured, in words and numbers)."""

# ---------------------------------------------------------------- the document's tables
_NORMS = [
    (50.4, 4.8),
    (16.3, 15.6),
    (18.0, 73.1),
    (17.6, 6.2),
    (18.3, 5.1),
    (23.6, 5.8),
    (26.0, 5.1),
    (36.9, 8.4),
    (36.5, 5.3),
    (52.4, 9.1),
    (97.9, 12.9),
    (354.1, 118.0),
]
_LAYER_K = [
    (4, 41, 85, 132),
    (1, 29, 88, 155),
    (1, 1, 1, 1),
    (26, 116, 198, 281),
    (32, 132, 220, 306),
    (31, 133, 226, 317),
    (34, 141, 235, 326),
    (33, 130, 221, 312),
    (32, 132, 222, 312),
    (23, 110, 198, 286),
    (12, 85, 169, 258),
    (1, 3, 3, 11),
]
_SHARED_K = (1, 3, 6, 75)
_RECON = [
    (8, 0.503, 0.782),
    (16, 0.548, 0.749),
    (32, 0.604, 0.710),
    (64, 0.669, 0.660),
    (128, 0.750, 0.585),
    (256, 0.845, 0.470),
]
_LOWRANK = [
    (8, 4315, 144.9, 4052, 136.0),
    (16, 3627, 121.8, 11420, 383.4),
    (32, 2143, 71.9, 13796, 463.2),
    (64, 1612, 54.1, 12860, 431.7),
    (128, 873, 29.3, 9511, 319.3),
    (256, 248, 8.3, 5322, 178.7),
    (512, 44.5, 1.49, 208, 7.0),
    (768, 29.8, 1.00, 29.8, 1.00),
]
_ATTN_FFN = [
    (29, 127, 0.23),
    (63, 92, 0.68),
    (97, 1, 97.0),
    (123, 194, 0.63),
    (118, 217, 0.54),
    (108, 245, 0.44),
    (108, 242, 0.45),
    (108, 240, 0.45),
    (102, 227, 0.45),
    (85, 202, 0.42),
    (70, 151, 0.46),
    (3, 36, 0.08),
]
THRESHOLDS = (50, 80, 90, 95)

DOCUMENT_TABLES: Tables = {
    "config": {"model": "openai-community/gpt2", "dataset": "wikitext-2-raw-v1", "n_tokens": 1000, "d_model": 768},
    "model_shape": {"n_layers": 12, "n_heads": 12, "d_model": 768},
    "norms": [{"layer": i, "mean_norm": m, "std_norm": s} for i, (m, s) in enumerate(_NORMS)],
    "layer_pca": [{"layer": i, **{f"k{t}": k for t, k in zip(THRESHOLDS, ks)}} for i, ks in enumerate(_LAYER_K)],
    "shared_pca": {f"k{t}": k for t, k in zip(THRESHOLDS, _SHARED_K)},
    "reconstruction": [{"k": k, "cos_sim": c, "relative_l2": r} for k, c, r in _RECON],
    "baseline_ppl": 29.79,
    "lowrank_ppl": [
        {"k": k, "individual_ppl": ip, "individual_ratio": ir, "shared_ppl": sp, "shared_ratio": sr}
        for k, ip, ir, sp, sr in _LOWRANK
    ],
    "attn_ffn": [{"layer": i, "attn_k90": a, "ffn_k90": f, "ratio": r} for i, (a, f, r) in enumerate(_ATTN_FFN)],
}

# ---------------------------------------------------------------- table cells
K_TOL = (
    "K at a threshold moves where the cumulative variance curve is flat: +-10% (at least 2) covers device "
    "and library differences in a faithful reproduction; another model or a bug moves it further"
)
NORM_TOL = (
    "the same 1000 positions and weights give the same norms up to float rounding; 5% covers the "
    "document's rounding and device/library differences, a changed convention (BOS, centring) exceeds it"
)
STD_TOL = "std is carried by a few outlier positions (BOS), so it is more sensitive than the mean: 10%"
RECON_TOL = (
    "mean cosine / relative L2 over 12000 vectors; 0.02 absolute is ~7x the document's rounding (0.0005) "
    "plus device differences, far below the gaps between rows"
)
PPL_TOL = "a deterministic forward pass on the same tokens: 2% covers float differences between devices"
LOWRANK_TOL = (
    "perplexity under a destructive projection amplifies small differences exponentially; 15% keeps "
    "the catastrophe scale (x10 between rows) distinguishable"
)
RATIO_TOL = "ratio of two K values, each within +-10%: 20%"
K_RTOL, K_ATOL, LOWRANK_RTOL, RATIO_RTOL = 0.10, 2, 0.15, 0.20
"""The cells' tolerances; a sentence that restates cells accepts at least what they accept."""


@dataclass(frozen=True)
class Cell:
    """One number of the write-up's tables."""

    id: str
    section: str
    table: str
    row: int | None
    """Index into the table's rows (None for a scalar or the shared_pca dict)."""
    column: str
    value: float
    rtol: float
    atol: float
    reason: str

    def measured(self, tables: Tables) -> float | None:
        """The same cell of a measured table; None when that table has no such row (smaller model)."""
        table = tables[self.table]
        if self.row is None:
            return float(table if self.column == "" else table[self.column])
        key = "k" if "k" in table[0] else "layer"
        want = DOCUMENT_TABLES[self.table][self.row][key]
        rows = [r for r in table if r[key] == want]
        return float(rows[0][self.column]) if rows else None

    def within(self, measured: float) -> bool:
        return math.isclose(measured, self.value, rel_tol=self.rtol, abs_tol=self.atol)


def _cells() -> list[Cell]:
    cells: list[Cell] = []
    for r in DOCUMENT_TABLES["norms"]:
        for col, rtol, why in (("mean_norm", 0.05, NORM_TOL), ("std_norm", 0.10, STD_TOL)):
            cells.append(Cell(f"7A-{col}-layer-{r['layer']}", "7A", "norms", r["layer"], col, r[col], rtol, 0.0, why))
    for r in DOCUMENT_TABLES["layer_pca"]:
        for t in THRESHOLDS:
            cells.append(
                Cell(
                    f"7B-k{t}-layer-{r['layer']}",
                    "7B",
                    "layer_pca",
                    r["layer"],
                    f"k{t}",
                    r[f"k{t}"],
                    K_RTOL,
                    K_ATOL,
                    K_TOL,
                )
            )
    for t in THRESHOLDS:
        v = DOCUMENT_TABLES["shared_pca"][f"k{t}"]
        cells.append(Cell(f"7C-shared-k{t}", "7C", "shared_pca", None, f"k{t}", v, 0.10, 2, K_TOL))
    for i, r in enumerate(DOCUMENT_TABLES["reconstruction"]):
        for col in ("cos_sim", "relative_l2"):
            cells.append(Cell(f"7C-{col}-k-{r['k']}", "7C", "reconstruction", i, col, r[col], 0.0, 0.02, RECON_TOL))
    cells.append(Cell("7D-baseline-ppl", "7D", "baseline_ppl", None, "", 29.79, 0.02, 0.0, PPL_TOL))
    for i, r in enumerate(DOCUMENT_TABLES["lowrank_ppl"]):
        for col in ("individual_ppl", "individual_ratio", "shared_ppl", "shared_ratio"):
            cells.append(
                Cell(f"7D-{col}-k-{r['k']}", "7D", "lowrank_ppl", i, col, r[col], LOWRANK_RTOL, 0.0, LOWRANK_TOL)
            )
    for r in DOCUMENT_TABLES["attn_ffn"]:
        for col, rtol, atol, why in (
            ("attn_k90", 0.10, 2, K_TOL),
            ("ffn_k90", 0.10, 2, K_TOL),
            ("ratio", 0.20, 0.0, RATIO_TOL),
        ):
            cells.append(
                Cell(f"7E-{col}-layer-{r['layer']}", "7E", "attn_ffn", r["layer"], col, r[col], rtol, atol, why)
            )
    return cells


CELLS: tuple[Cell, ...] = tuple(_cells())


# ---------------------------------------------------------------- helpers for predicates
def n_layers(t: Tables) -> int:
    return len(t["norms"])


def d_model(t: Tables) -> int:
    return int(t["lowrank_ppl"][-1]["k"])


def _roles(t: Tables) -> None:
    if n_layers(t) < 4:
        raise NotApplicable(f"first, middle and last layers need at least 4 layers; this model has {n_layers(t)}")


def middle(t: Tables) -> range:
    _roles(t)
    return range(n_layers(t) // 4, 2 * n_layers(t) // 3 + 1)


def middle_wide(t: Tables) -> range:
    _roles(t)
    return range(n_layers(t) // 4, 3 * n_layers(t) // 4 + 1)


def inner(t: Tables) -> range:
    _roles(t)
    return range(n_layers(t) // 4, n_layers(t) - 1)


def col(t: Tables, table: str, column: str) -> list[float]:
    return [r[column] for r in t[table]]


def row_at(t: Tables, table: str, k: int) -> dict[str, Any]:
    """The row of a K-indexed table with the largest K <= k."""
    if not any(r["k"] <= k for r in t[table]):
        raise NotApplicable(f"no K <= {k} in table {table}")
    return max((r for r in t[table] if r["k"] <= k), key=lambda r: r["k"])


def below_d(t: Tables) -> list[dict[str, Any]]:
    """7D rows with K < d_model."""
    rows = t["lowrank_ppl"][:-1]
    if not rows:
        raise NotApplicable(f"the K sweep has no K below d_model = {d_model(t)}")
    return rows


def _fmt(values: Any) -> str:
    if isinstance(values, float):
        return f"{values:.3g}"
    if isinstance(values, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in values) + "]"
    return str(values)


def measured_only(t: Tables, *tables: str) -> None:
    """The causal measurements exist on measured tables only (the write-up does not give them)."""
    missing = [name for name in tables if name not in t]
    if missing:
        raise NotApplicable(f"needs {', '.join(missing)}, which the write-up does not give")


def rank_correlation(values: list[float]) -> float:
    """Spearman's rank correlation of values with their index (ties get their mean rank)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for m in range(i, j + 1):
            ranks[order[m]] = (i + j) / 2
        i = j + 1
    n = len(values)
    mean = (n - 1) / 2
    cov = sum((r - mean) * (i - mean) for i, r in enumerate(ranks))
    var_i = sum((i - mean) ** 2 for i in range(n))
    var_r = sum((r - mean) ** 2 for r in ranks)
    return cov / math.sqrt(var_i * var_r) if var_r > 0 else 0.0


def combined_band(rtol: float) -> float:
    """How far the ratio of two cells can move when each moves within its tolerance rtol.

    math.isclose accepts measured values in [v (1 - rtol), v / (1 - rtol)], so a / b can move by
    up to 1 / (1 - rtol)^2 either way: two ratios closer than that are a tie.
    """
    return 1 / (1 - rtol) ** 2


def tied(a: float, b: float, rtol: float) -> bool:
    """a and b within the combined band of two cells of tolerance rtol (positive values)."""
    return max(a, b) <= min(a, b) * combined_band(rtol)


def _std_over_mean(t: Tables) -> list[float]:
    return [r["std_norm"] / r["mean_norm"] for r in t["norms"]]


# ---------------------------------------------------------------- sentences
@dataclass(frozen=True)
class Claim:
    """One qualitative statement of the write-up."""

    id: str
    section: str
    sentence: str
    """The sentence as the English rendering gives it."""
    predicate: Callable[[Tables], Outcome] | None = None
    scope: str = "any"
    """any: phrased by layer role, applies to every model; gpt2: names GPT-2 small's layers or numbers."""
    untested: str | None = None
    """Why the suite cannot test it (then predicate is None)."""
    contradicted: str | None = None
    """Where the document's own tables contradict it: both sides quoted."""
    document_untestable: str | None = None
    """Why the document's own tables cannot decide it (it needs data the write-up does not give)."""
    literal: Callable[[Tables], Outcome] | None = None
    """The literal reading, where `predicate` is a qualified one (then `overstated` says why)."""
    overstated: str | None = None
    """Where the literal sentence goes beyond the document's own tables while the qualified
    reading (predicate) holds on them: both sides quoted."""
    ja: str = ""
    """The Japanese phrase tested, verbatim from exp7.ja.md."""
    followup: bool = False
    """Tested on the follow-up experiments' tables (7F-7H, lib/followups.py), computed on request only."""


NORM_RTOL = 0.05  # the norm cells' tolerance: a dip inside it is not a fall


def _norms_rise_every_layer(t: Tables) -> Outcome:
    """Literal 「深い層ほど大きい」: no layer's mean norm falls below the previous one's by more than the cells' 5%."""
    m = col(t, "norms", "mean_norm")
    drops = [
        f"{i}->{i + 1}: {m[i]:.3g}->{m[i + 1]:.3g}" for i in range(len(m) - 1) if m[i + 1] < (1 - NORM_RTOL) * m[i]
    ]
    return not drops, f"mean_norm {_fmt(m)}; falls by more than {NORM_RTOL:.0%} at " + ("; ".join(drops) or "no layer")


def _norms_trend_with_depth(t: Tables) -> Outcome:
    """The trend: rank correlation with depth over layers 1..L-1 >= 0.9, and the last layer the largest."""
    m = col(t, "norms", "mean_norm")
    rho = rank_correlation(m[1:])
    return (
        rho >= 0.9 and m[-1] == max(m),
        f"rank correlation with depth over layers 1-{len(m) - 1}: {rho:.3f}; largest at layer {m.index(max(m))} ({max(m):.4g})",
    )


def _last_norm_largest(t: Tables) -> Outcome:
    m = col(t, "norms", "mean_norm")
    return m[-1] == max(m) and m[-1] > m[0], f"last {m[-1]:.4g}, first {m[0]:.4g}, max {max(m):.4g}"


def _layers_2_and_last_top_std_ratio(t: Tables) -> Outcome:
    r = _std_over_mean(t)
    top2 = sorted(range(len(r)), key=lambda i: -r[i])[:2]
    return set(top2) == {2, len(r) - 1}, f"std/mean {_fmt(r)}; two largest at layers {sorted(top2)}"


def _layer2_heavy_tail(t: Tables) -> Outcome:
    r = t["norms"][2]
    return r["std_norm"] > 2 * r["mean_norm"], f"layer 2: std {r['std_norm']:.3g} vs mean {r['mean_norm']:.3g}"


def _not_low_rank(t: Tables) -> Outcome:
    k90 = col(t, "layer_pca", "k90")
    med = statistics.median(k90)
    return med >= 0.10 * d_model(
        t
    ), f"median K90 {med:g} of d_model {d_model(t)} ({med / d_model(t):.0%}); K90 {_fmt(k90)}"


def _middle_k90_fraction(t: Tables) -> Outcome:
    ks = [t["layer_pca"][i]["k90"] for i in middle(t)]
    lo, hi = min(ks) / d_model(t), max(ks) / d_model(t)
    # "26-31%" as printed, i.e. [25.5%, 31.5%) before rounding, widened by the K cells' +-10%
    # so that a reproduction within the cells never fails the sentence
    return (1 - K_RTOL) * 0.255 <= lo and hi < (1 + K_RTOL) * 0.315, (
        f"middle layers {middle(t).start}-{middle(t).stop - 1}: K90 {_fmt(ks)} = {lo:.1%}-{hi:.1%} of d_model "
        f"(accepted: {(1 - K_RTOL) * 25.5:.1f}%-{(1 + K_RTOL) * 31.5:.1f}%)"
    )


def _effective_ranks(t: Tables, layers: range) -> str:
    """exp of the spectral entropy (Roy & Vetterli 2007) of the layers' measured spectra, when present."""
    if "layer_spectra" not in t:
        return ""
    ranks = [math.exp(-sum(p * math.log(p) for p in t["layer_spectra"][i] if p > 0)) for i in layers]
    return f"; effective rank (exp of spectral entropy) {_fmt(ranks)} of {d_model(t)}"


def _middle_full_rank_literal(t: Tables) -> Outcome:
    """Literal 「フルランク」: 95% of the variance needs nearly every direction (K95 >= 90% of d_model)."""
    ks = [t["layer_pca"][i]["k95"] for i in middle(t)]
    return min(ks) >= 0.9 * d_model(
        t
    ), f"middle layers K95 {_fmt(ks)} = {min(ks) / d_model(t):.0%}-{max(ks) / d_model(t):.0%} of d_model {d_model(t)}"


FULL_RANK_FRACTION = 1 / 3
"""「事実上フルランク」: no subspace below a third of d_model keeps 95% of the variance. Widened to
the K cells' band: a K95 the cells accept for one at d_model/3 (K95 >= (1 - K_RTOL) d_model/3)
passes, since layer 3's K95 of 281 accepts 253 (below 256)."""


def _middle_effectively_full_rank(t: Tables) -> Outcome:
    """「事実上フルランク」 as 'no subspace below a third of d_model keeps 95% of the variance'."""
    ks = [t["layer_pca"][i]["k95"] for i in middle(t)]
    least = (1 - K_RTOL) * FULL_RANK_FRACTION * d_model(t)
    return min(ks) >= least, (
        f"middle layers K95 {_fmt(ks)} = {min(ks) / d_model(t):.0%}-{max(ks) / d_model(t):.0%} of d_model "
        f"{d_model(t)} (>= {least:.4g}, d_model/3 within the K cells' 10%?)" + _effective_ranks(t, middle(t))
    )


def _first_lower_than_middle(t: Tables) -> Outcome:
    k0, ks = t["layer_pca"][0]["k90"], [t["layer_pca"][i]["k90"] for i in middle(t)]
    return k0 < min(ks), f"first layer K90 {k0}; middle {_fmt(ks)}"


LAYER2_K_MAX = 1 + K_ATOL  # the K = 1 cells accept up to 3


def _layer2_k1(t: Tables) -> Outcome:
    k = t["layer_pca"][2]["k90"]
    r = _std_over_mean(t)
    return k <= LAYER2_K_MAX and max(r) == r[
        2
    ], f"layer 2 K90 {k} (<= {LAYER2_K_MAX}?); largest std/mean at layer {r.index(max(r))}"


def _last_concentrated(t: Tables) -> Outcome:
    k, ks = t["layer_pca"][-1]["k90"], [t["layer_pca"][i]["k90"] for i in middle(t)]
    return k < 0.1 * statistics.median(ks), f"last layer K90 {k}; middle median {statistics.median(ks):g}"


def _none_meets_50(t: Tables) -> Outcome:
    """「全レイヤーで未達成（Layer 2/11 を除く全層で K>80）」: the parenthesis qualifies it; only layers 2 and the last may meet it."""
    k90 = col(t, "layer_pca", "k90")
    meet = [i for i, k in enumerate(k90) if k <= 50]
    return set(meet) <= {
        2,
        len(k90) - 1,
    }, f"layers with K90 <= 50: {meet} (among 2 and {len(k90) - 1}?); K90 {_fmt(k90)}"


OVER_80 = (1 - K_RTOL) * 80
"""「K>80」 widened to the K cells' band: layer 0's K90 of 85 accepts 77."""


def _all_but_2_last_over_80(t: Tables) -> Outcome:
    k90 = col(t, "layer_pca", "k90")
    rest = [k for i, k in enumerate(k90) if i not in (2, len(k90) - 1)]
    return min(rest) > OVER_80, f"K90 of the other layers {_fmt(rest)} (> 80 within the K cells' 10%: > {OVER_80:g}?)"


def _shared_low(t: Tables) -> Outcome:
    k = t["shared_pca"]["k90"]
    return k <= 0.02 * d_model(t), f"shared K90 {k} of d_model {d_model(t)}"


def _last_norm_dominates(t: Tables) -> Outcome:
    m = col(t, "norms", "mean_norm")
    mid = [m[i] for i in middle_wide(t)]
    return (
        m[-1] >= 5 * max(mid),
        f"last {m[-1]:.4g} vs layers {middle_wide(t).start}-{middle_wide(t).stop - 1} {_fmt(mid)}: {m[-1] / max(mid):.1f}x the largest",
    )


BALANCED_FACTOR = 3
"""「ノルムが支配的なため」 "far more": at least 3x the components once no layer's scale dominates."""


def _norm_dominance_makes_shared_low(t: Tables) -> Outcome:
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
        raise NotApplicable(f"every write of layers {_fmt(list(layers))} is zero")
    return live


def _cos(t: Tables, table: str, k: int, layers: list[int]) -> float:
    return statistics.mean(r["cos_sim"] for r in t[table] if r["k"] == k and r["layer"] in layers)


def _imbalance_breaks_shared(t: Tables) -> Outcome:
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


def _shared_costs_middle(t: Tables) -> Outcome:
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


def _sacrifices_others(t: Tables) -> Outcome:
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
        parts.append(f"K={k}: layer {big} shared {shared[big]:.3f} vs own {own[big]:.3f}, others' gap {_fmt(gaps)}")
    ok &= not spared
    return ok, (
        f"largest norm at layer {big}; "
        + "; ".join(parts)
        + f"; not sacrificed (gap < {SHARED_COS_GAP}): "
        + (_fmt(sorted(spared)) if spared else "none")
    )


def _shared_optimised_for_last(t: Tables) -> Outcome:
    """The shared basis's top directions are the last layer's: its top-k subspace overlaps the last
    layer's most."""
    measured_only(t, "shared_overlap")
    o = t["shared_overlap"]["per_layer"]
    return o.index(max(o)) == len(
        o
    ) - 1, f"overlap of the shared top-{t['shared_overlap']['k']} subspace with each layer's: {_fmt(o)}"


def _shared_reconstruction_poor(t: Tables) -> Outcome:
    r = row_at(t, "reconstruction", d_model(t) // 3)
    return r["cos_sim"] < 0.9 and r[
        "relative_l2"
    ] > 0.4, f"K={r['k']} (<= d_model/3): cos {r['cos_sim']:.3f}, rel L2 {r['relative_l2']:.3f}"


def _ratio_first_good_at_two_thirds(t: Tables) -> Outcome:
    rows = t["lowrank_ppl"]
    first = next(r for r in rows if r["individual_ratio"] < 2)
    return (
        first["k"] >= 0.6 * d_model(t),
        f"smallest K with individual ratio < 2: K={first['k']} ({first['individual_ratio']:.3g}x) of d_model {d_model(t)}",
    )


def _third_catastrophic(t: Tables) -> Outcome:
    r = row_at(t, "lowrank_ppl", d_model(t) // 3)
    return r["individual_ratio"] > 5, f"K={r['k']} (<= d_model/3): individual ratio {r['individual_ratio']:.3g}x"


def _few_components_fail(t: Tables) -> Outcome:
    rows = [r for r in t["lowrank_ppl"] if r["k"] <= d_model(t) / 12]
    if not rows:
        raise NotApplicable(f"no K <= d_model/12 = {d_model(t) / 12:.3g} in the sweep")
    worst_best = min(r["individual_ratio"] for r in rows)
    return worst_best > 10, f"individual ratios at K <= d_model/12: {_fmt([r['individual_ratio'] for r in rows])}"


def _shared_catastrophic(t: Tables) -> Outcome:
    rows = below_d(t)
    return min(
        r["shared_ratio"] for r in rows
    ) > 5, f"shared ratios for K < d_model: {_fmt([r['shared_ratio'] for r in rows])}"


def _shared_worse(t: Tables) -> Outcome:
    """「他の層の Δφ を破壊している」: at most K < d_model (more than half) the shared ratio is the worse,
    beyond the two ratio cells' combined band (1 / (1 - 15%)^2 = 1.38x).

    Not "never better": at K = 8 the document's own shared ratio is the better by 6.5% (136.0x vs
    144.9x), a tie that a table within the cells' 15% can stretch to 1.47x either way."""
    rows = below_d(t)
    band = combined_band(LOWRANK_RTOL)
    worse = [r["k"] for r in rows if r["shared_ratio"] > band * r["individual_ratio"]]
    better = [r["k"] for r in rows if r["individual_ratio"] > band * r["shared_ratio"]]
    shown = "; ".join(f"K={r['k']}: {r['shared_ratio']:.4g}x vs {r['individual_ratio']:.4g}x" for r in rows)
    return 2 * len(worse) > len(rows), (
        f"shared vs individual ratio {shown}; shared worse by more than {band:.2f}x at K={worse} of {len(rows)} K"
        + (f"; better at K={better}" if better else "")
    )


def rises_8_to_32(r: dict[int, float]) -> bool:
    """「K が増えるにつれ PPL が増加する区間」 over K = 8, 16, 32 with ties: the ratio at K = 32 is above
    K = 8's beyond the combined band of two 7D cells, and neither step falls beyond it.

    Ties by the combined band because two ratio cells can move apart by 1.38x within their 15%:
    the document's 16 -> 32 step (383.4x -> 463.2x, 1.21x) is itself such a tie."""
    band = combined_band(LOWRANK_RTOL)
    return r[32] > band * r[8] and r[8] <= band * r[16] and r[16] <= band * r[32]


def _sweep_8_16_32(t: Tables, table: str) -> dict[int, dict[str, Any]]:
    rows = {row["k"]: row for row in t[table]}
    if not {8, 16, 32} <= set(rows) or d_model(t) <= 32:
        raise NotApplicable(f"the sweep lacks K = 8, 16 or 32 below d_model = {d_model(t)}")
    return rows


def _shared_rises(t: Tables) -> Outcome:
    r = {k: row["shared_ratio"] for k, row in _sweep_8_16_32(t, "lowrank_ppl").items()}
    return rises_8_to_32(r), (
        f"shared ratio K=8: {r[8]:.4g}x, 16: {r[16]:.4g}x, 32: {r[32]:.4g}x "
        f"(a rise beyond {combined_band(LOWRANK_RTOL):.2f}x, no fall beyond it?)"
    )


def _ratios_are_ppl_over_baseline(t: Tables) -> Outcome:
    base = t["baseline_ppl"]
    bad = [
        f"K={r['k']} {kind}"
        for r in t["lowrank_ppl"]
        for kind in ("individual", "shared")
        if not math.isclose(r[f"{kind}_ppl"] / base, r[f"{kind}_ratio"], rel_tol=0.01, abs_tol=0.006)
    ]
    return not bad, "ratio = PPL / baseline " + ("everywhere" if not bad else "fails at " + ", ".join(bad))


def _full_k_is_baseline(t: Tables) -> Outcome:
    r = t["lowrank_ppl"][-1]
    ok = abs(r["individual_ratio"] - 1) < 0.005 and abs(r["shared_ratio"] - 1) < 0.005
    return ok, f"K=d_model={r['k']}: {r['individual_ratio']:.4f}x / {r['shared_ratio']:.4f}x"


def _attn_always_lower(t: Tables) -> Outcome:
    rows = t["attn_ffn"]
    bad = [
        f"layer {r['layer']}: attn {r['attn_k90']} vs FFN {r['ffn_k90']}" for r in rows if r["attn_k90"] >= r["ffn_k90"]
    ]
    return not bad, "attention not lower at " + ("; ".join(bad) or "no layer")


def _inner_about_half(t: Tables) -> Outcome:
    """The author's set: layers 1..L-2 but those whose FFN K90 is tiny (<= 5: layer 2 on GPT-2); median
    about one half (0.35-0.65), every ratio within 0.42-0.68 widened to what the ratio cells accept
    (isclose: v (1 - 20%) .. v / (1 - 20%))."""
    _roles(t)
    layers = [r["layer"] for r in t["attn_ffn"][1:-1] if r["ffn_k90"] > 5]
    ratios = [t["attn_ffn"][i]["ratio"] for i in layers]
    if not ratios:
        raise NotApplicable("no layer between the first and the last has an FFN K90 above 5")
    lo, hi = 0.42 * (1 - RATIO_RTOL), 0.68 / (1 - RATIO_RTOL)
    med = statistics.median(ratios)
    return 0.35 <= med <= 0.65 and all(lo <= r <= hi for r in ratios), (
        f"Attn/FFN K90 ratio in layers {layers}: {_fmt(ratios)}, median {med:.3g} (0.35-0.65?), range {lo:.2f}-{hi:.2f}?"
    )


def _first_attn_low(t: Tables) -> Outcome:
    a0, rest = t["attn_ffn"][0]["attn_k90"], [t["attn_ffn"][i]["attn_k90"] for i in inner(t)]
    return a0 < min(rest), f"first layer attention K90 {a0}; inner layers {_fmt(rest)}"


def _layer2_ffn_k1(t: Tables) -> Outcome:
    f = t["attn_ffn"][2]["ffn_k90"]
    return f <= LAYER2_K_MAX, f"layer 2 FFN K90 {f} (<= {LAYER2_K_MAX}?)"


def _layer2_ffn_is_cause(t: Tables) -> Outcome:
    """「この FFN が原因」: layer 2's FFN writes carry >= 90% of its Δφ variance, along Δφ's first direction (|cos| >= 0.99)."""
    measured_only(t, "write_sources")
    r = t["write_sources"][2]
    return r["ffn_share"] >= 0.9 and r["ffn_pc1_cos"] >= 0.99, (
        f"layer 2: FFN variance {r['ffn_share']:.1%} of Δφ's (attention {r['attn_share']:.1%}); "
        f"|cos(PC1 FFN, PC1 Δφ)| {r['ffn_pc1_cos']:.3f}"
    )


FAR_ABOVE_CHANCE = 3
"""「寄り」/「集約」/「類似した」: a subspace overlap at least 3x what random subspaces give."""


def _toward_unembedding(key: str) -> Callable[[Tables], Outcome]:
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
            f"{_fmt(others)} (all below?)"
        )

    return predicate


FEW_SHARE = 0.5
"""「支配的」: the 1% of positions farthest from the mean norm carry more than half of the norms'
scatter sum (||Δφ|| - mean)^2, the std the same sentence calls abnormal. The uncentred share of
sum ||Δφ||^2 cannot pass this with layer 11's mean 354 and std 118 (at most ~17%)."""


def _few_samples_dominate(layer: Callable[[Tables], int]) -> Callable[[Tables], Outcome]:
    def predicate(t: Tables) -> Outcome:
        measured_only(t, "norm_concentration")
        r = t["norm_concentration"][layer(t)]
        if "top_centred_share" not in r:
            raise NotApplicable("the norm concentration has no centred share (tables before version 5)")
        where = ", ".join(f"chunk {c} position {p} (norm {n:.4g})" for c, p, n in r["largest"])
        return r["top_centred_share"] > FEW_SHARE, (
            f"layer {r['layer']}: the {r['n_top']} positions (1%) farthest from the mean norm carry "
            f"{r['top_centred_share']:.1%} of sum (||Δφ|| - mean)^2 (> {FEW_SHARE:.0%}?; of sum ||Δφ||^2 the top 1% carry "
            f"{r['top_share']:.1%}); largest: {where}"
        )

    return predicate


SINGULAR_FRACTION = 10
"""「特異」: a layer whose K90 is below a tenth of the median K90 (GPT-2: layers 2 and 11 at 1 and 3
against a median of 198; the next lowest, layer 0, is at 85)."""


def _singular_layers(t: Tables) -> Outcome:
    """「Layer 2 と 11 は特異」: the layers whose K90 is below a tenth of the median are exactly 2 and the last."""
    k90 = col(t, "layer_pca", "k90")
    med = statistics.median(k90)
    far = [i for i, k in enumerate(k90) if k < med / SINGULAR_FRACTION]
    return far == [2, len(k90) - 1], f"median K90 {med:g}; layers below a tenth of it: {far}"


BIAS_ONE_POSITION = 0.9
"""「固定的バイアス項」 under centred PCA: an input-independent write at one position; that position
carries at least 90% of the variance along PC1 (the rest is every other position's spread)."""


def _layer2_fixed_bias(t: Tables) -> Outcome:
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


def _last_attn_concentrated(t: Tables) -> Outcome:
    a, rest = t["attn_ffn"][-1]["attn_k90"], [t["attn_ffn"][i]["attn_k90"] for i in inner(t)]
    return a < 0.1 * statistics.median(rest), f"last layer attention K90 {a}; inner median {statistics.median(rest):g}"


def _ffn_high(t: Tables) -> Outcome:
    ks = [t["attn_ffn"][i]["ffn_k90"] for i in middle(t)]
    return min(ks) >= 0.2 * d_model(t), f"middle layers FFN K90 {_fmt(ks)} (>= {0.2 * d_model(t):g} = d_model/5?)"


def _ratio_column(t: Tables) -> Outcome:
    bad = [
        r["layer"] for r in t["attn_ffn"] if not math.isclose(r["attn_k90"] / r["ffn_k90"], r["ratio"], abs_tol=0.006)
    ]
    return not bad, "ratio = attn/FFN " + ("in every row" if not bad else f"fails in layers {bad}")


def _ppl_11_at_two_thirds(t: Tables) -> Outcome:
    r = row_at(t, "lowrank_ppl", round(2 * d_model(t) / 3))
    return r["individual_ratio"] <= 1.15, f"individual ratio at K={r['k']}: {r['individual_ratio']:.3g}x"


def _variance_is_not_function(t: Tables) -> Outcome:
    """At the first K of the sweep where every layer keeps 90% of its variance, perplexity is still > 2x.

    That K is the largest K90 within the K cells' 10% ((1 - K_RTOL) max K90): the document's 235
    (layer 6) accepts 261, past 256, where the sweep's next K (512) would decide instead."""
    k90 = max(col(t, "layer_pca", "k90"))
    r = next((r for r in t["lowrank_ppl"] if r["k"] >= (1 - K_RTOL) * k90), t["lowrank_ppl"][-1])
    return r["individual_ratio"] > 2, (
        f"every layer has 90% of its variance by K={k90} (within the K cells' 10%: "
        f"{(1 - K_RTOL) * k90:.4g}); at K={r['k']} the ratio is {r['individual_ratio']:.3g}x"
    )


def _twenty_times_message(t: Tables) -> tuple[float, float, str]:
    m = col(t, "norms", "mean_norm")
    mid = [m[i] for i in middle_wide(t)]
    x, top = m[-1] / statistics.mean(mid), m[-1] / min(mid)
    return (
        x,
        top,
        (
            f"last {m[-1]:.4g} / mean of layers {middle_wide(t).start}-{middle_wide(t).stop - 1} "
            f"{statistics.mean(mid):.3g} = {x:.1f}x; against each of them {_fmt([m[-1] / v for v in mid])}"
        ),
    )


def _twenty_times_literal(t: Tables) -> Outcome:
    """Literal 「中間層の 20 倍」: 20x (+-20%) the middle layers' mean norm."""
    x, _, message = _twenty_times_message(t)
    return 16 <= x <= 24, message


TWENTY_TIMES = 20 * (1 - NORM_RTOL) ** 2
"""「20 倍」 against the smallest middle layer, widened to the two norm cells' combined band: each
norm may move 5%, so the document's 20.1x (354.1 / 17.6) accepts 18.2x."""


def _twenty_times(t: Tables) -> Outcome:
    """Qualified: an order of magnitude on average (>= 10x), and 20x (within the norm cells' band)
    against the smallest middle layer."""
    x, top, message = _twenty_times_message(t)
    return x >= 10 and top >= TWENTY_TIMES, message + f" (>= 10x on average, >= {TWENTY_TIMES:.3g}x the smallest?)"


def _hard_to_compress(t: Tables) -> Outcome:
    """「Δφ も高ランク、圧縮困難」: not low rank, and no K <= d_model/3 keeps the perplexity within 2x."""
    high, rank_msg = _not_low_rank(t)
    rows = [r for r in below_d(t) if r["k"] <= d_model(t) / 3]
    if not rows:
        raise NotApplicable(f"no K <= d_model/3 = {d_model(t) / 3:.3g} in the sweep")
    best = min(r["individual_ratio"] for r in rows)
    return high and best > 2, f"{rank_msg}; best individual ratio at K <= d_model/3: {best:.3g}x (> 2?)"


def _about_half(t: Tables) -> Outcome:
    med = statistics.median(col(t, "attn_ffn", "ratio"))
    return 0.35 <= med <= 0.65, f"median Attn/FFN K90 ratio over layers {med:.3g}"


def _layer11_attn_3(t: Tables) -> Outcome:
    a = t["attn_ffn"][-1]["attn_k90"]
    return a <= 5, f"layer {n_layers(t) - 1} attention K90 {a}"


def _gpt2_shape(t: Tables) -> Outcome:
    heads = t["model_shape"]["n_heads"]
    return n_layers(t) == 12 and heads == 12 and d_model(
        t
    ) == 768, f"{n_layers(t)} layers, {heads} heads, d_model {d_model(t)}"


def _thousand_positions(t: Tables) -> Outcome:
    from lib.corpus import KNOWN_TEXTS
    from lib.options import DEFAULT_DATASET

    c = t["config"]
    wikitext = (
        c["dataset"] == DEFAULT_DATASET or KNOWN_TEXTS.get(c.get("dataset_revision", "")) == "wikitext-2-raw-test"
    )
    text = "WikiText-2 test" if wikitext else f"{c['dataset']} (not WikiText-2 test)"
    return c["n_tokens"] == 1000 and wikitext, f"{c['n_tokens']} positions of {text}"


# ---------------------------------------------------------------- follow-ups (7F-7H, lib/followups.py)
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
    rows = _sweep_8_16_32(t, "shared_ablation")
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
    r = _std_over_mean(t)
    layer = r.index(max(r))
    return _no_longer_singular(t, layer, f"largest std/mean {r[layer]:.3g} at layer {layer}")


def inner_attention_lower(t: Tables) -> Outcome:
    """「Attention は FFN より一貫して低ランク」restricted to the inner layers (the design card's "attention K < FFN K in layers 3-10")."""
    rows = [t["attn_ffn"][i] for i in inner(t)]
    bad = [
        f"layer {r['layer']}: attn {r['attn_k90']} vs FFN {r['ffn_k90']}" for r in rows if r["attn_k90"] >= r["ffn_k90"]
    ]
    return not bad, (
        f"inner layers {inner(t).start}-{inner(t).stop - 1}: attention K90 {_fmt([r['attn_k90'] for r in rows])}, "
        f"FFN K90 {_fmt([r['ffn_k90'] for r in rows])}; attention not lower at " + ("; ".join(bad) or "no layer")
    )


NO_FOLLOWUP = "the write-up runs no such experiment; the suite's follow-up (7F-7H) does"
EXP_OTHER = "a result of another experiment ({}); this suite measures experiment 7 only"
NO_PER_LAYER = "the write-up gives only the layer average of the reconstruction, not per-layer values"

CLAIMS: tuple[Claim, ...] = (
    # ------------------------------------------------------------ background and set-up
    Claim(
        "bg-exp3-universal-g",
        "background",
        'Experiment 3 found a "universal penetration function" g(l/L) (correlation between words > 0.96).',
        untested=EXP_OTHER.format("exp3"),
        ja="exp3 で発見した普遍浸透関数 g(l/L)（語間相関>0.96）",
    ),
    Claim(
        "bg-exp6-wqk-failed",
        "background",
        "Experiment 6 tried PCA of the static weight matrices W_QK; the functional information sat in low-variance components, and compression failed.",
        untested=EXP_OTHER.format("exp6"),
        ja="静的な重み行列 W_QK の PCA を試みたが、低分散成分に機能的情報が集中しており圧縮は失敗した",
    ),
    Claim(
        "bg-dynamic-directions",
        "background",
        'The large PCA directions may capture "the kinds of writes that happen often", i.e. functionally important directions.',
        untested="a hypothesis the write-up sets out to test; its verdict is claim core-1-variance-not-function",
        ja="PCA の大きな方向が「頻繁に行われる書き込みの種類」= 機能的に重要な方向を捉える可能性がある",
    ),
    Claim(
        "setup-gpt2-small",
        "setup",
        "Model: GPT-2 small (12 layers, 12 heads, d_model = 768)",
        _gpt2_shape,
        scope="gpt2",
        ja="GPT-2 small (12層, 12ヘッド, d_model=768)",
    ),
    Claim(
        "setup-1000-positions",
        "setup",
        "Data: WikiText-2 test set; Δφ collected at 1000 token positions",
        _thousand_positions,
        scope="gpt2",
        ja="WikiText-2 test set, 1000 トークン位置からΔφを収集",
    ),
    Claim(
        "setup-device-mps",
        "setup",
        "Device: MPS (Apple Silicon)",
        untested="the device is the user's choice (--device); caches and snapshots are kept per device",
        ja="デバイス: MPS (Apple Silicon)",
    ),
    # ------------------------------------------------------------ 7A
    Claim(
        "7A-norm-rises-with-depth",
        "7A",
        "the Δφ norm is larger in deeper layers (layer 0: 50 → layer 11: 354)",
        _norms_trend_with_depth,
        literal=_norms_rise_every_layer,
        overstated="literally (every layer larger than the one before) the table says otherwise at one place only: layer 0 (50.4) is larger "
        "than layers 1-8 (16.3-36.9), which the sentence's own 「Layer 0: 50 →」 hides (the dips 2→3, -2.2%, and 7→8, -1.1%, "
        "are inside the norm cells' 5%); as a trend it holds: over layers 1-11 the rank correlation with depth is 0.98 and layer 11 is the largest",
        ja="Δφ ノルムは深い層ほど大きい（Layer 0: 50 → Layer 11: 354）",
    ),
    Claim(
        "7A-last-layer-largest",
        "7A",
        "layer 0: 50 → layer 11: 354 (the last layer writes the largest norm)",
        _last_norm_largest,
        ja="Layer 0: 50 → Layer 11: 354",
    ),
    Claim(
        "7A-layer-2-few-samples-dominate",
        "7A",
        "Layer 2 has an abnormally large std/mean ratio; a few samples dominate.",
        _layer2_heavy_tail,
        scope="gpt2",
        ja="Layer 2 と 11 は std/mean 比が異常に大きく、少数のサンプルが支配的",
    ),
    Claim(
        "7A-few-samples-dominate-layer-2",
        "7A",
        "a few samples dominate (layer 2): the 1% of positions farthest from the mean norm carry more than half of sum (||Δφ|| - mean)^2",
        _few_samples_dominate(lambda t: 2),
        scope="gpt2",
        document_untestable="needs the per-position norms, which the write-up does not give",
        ja="Layer 2 と 11 は std/mean 比が異常に大きく、少数のサンプルが支配的",
    ),
    Claim(
        "7A-few-samples-dominate-last",
        "7A",
        "a few samples dominate (layer 11): the 1% of positions farthest from the mean norm carry more than half of sum (||Δφ|| - mean)^2",
        _few_samples_dominate(lambda t: n_layers(t) - 1),
        document_untestable="needs the per-position norms, which the write-up does not give",
        ja="Layer 2 と 11 は std/mean 比が異常に大きく、少数のサンプルが支配的",
    ),
    Claim(
        "7A-layers-2-and-11-largest-std-ratio",
        "7A",
        "Layers 2 and 11 have an abnormally large std/mean ratio",
        _layers_2_and_last_top_std_ratio,
        scope="gpt2",
        contradicted="layer 11's std/mean is 118.0/354.1 = 0.33, smaller than layer 1's (15.6/16.3 = 0.96) and layer 3's (6.2/17.6 = 0.35); only layer 2 (73.1/18.0 = 4.1) is abnormal",
        ja="Layer 2 と 11 は std/mean 比が異常に大きく",
    ),
    # ------------------------------------------------------------ 7B
    Claim(
        "7B-not-low-rank",
        "7B",
        "Conclusion (as written): Δφ is not low rank.",
        _not_low_rank,
        ja="結論: Δφ は低ランクではない。",
    ),
    Claim(
        "7B-middle-k90-26-31pct",
        "7B",
        "Middle layers (3–8): reaching 90% needs K = 198–235 (26–31% of d_model)",
        _middle_k90_fraction,
        ja="90% に K=198~235 必要（d_model の 26~31%）",
    ),
    Claim(
        "7B-middle-effectively-full-rank",
        "7B",
        "Middle layers (3–8): ... effectively full rank.",
        _middle_effectively_full_rank,
        literal=_middle_full_rank_literal,
        overstated="read literally, full rank would need nearly all 768 directions, but the table's K95 of layers 3-8 is 281-326 (37-42% of d_model) "
        "and the same sentence gives K90 = 198-235 (26-31%); read as 「事実上」 qualifies it, 'no subspace below a third of d_model keeps "
        "95% of the variance' (K95 >= 230: d_model/3 within the K cells' 10%), it holds",
        ja="**中間層 (3-8)**: 90% に K=198~235 必要（d_model の 26~31%）。事実上フルランク",
    ),
    Claim(
        "7B-layer-0-comparatively-low",
        "7B",
        "Layer 0: K = 85 (11%); near the embedding, comparatively low rank.",
        _first_lower_than_middle,
        ja="K=85（11%）。embedding 近傍は比較的低ランク",
    ),
    Claim(
        "7B-layer-2-one-direction",
        "7B",
        "Layer 2: K = 1; the variance is concentrated in one direction (caused by std_norm = 73).",
        _layer2_k1,
        scope="gpt2",
        ja="K=1。分散が1方向に極端に集中（std_norm=73 が原因）",
    ),
    Claim(
        "7B-layer-2-caused-by-outliers",
        "7B",
        "(caused by std_norm = 73): a few outlier positions carry layer 2's one direction; without them it is no longer singular (K90 >= median K90 / 10)",
        layer2_k90_rises_without_outliers,
        scope="gpt2",
        followup=True,
        document_untestable=NO_FOLLOWUP,
        ja="K=1。分散が1方向に極端に集中（std_norm=73 が原因）",
    ),
    Claim(
        "7B-largest-std-ratio-caused-by-outliers",
        "7B",
        "(caused by std_norm = 73), by role: without its outlier positions the layer with the largest std/mean is no longer singular (K90 >= median K90 / 10)",
        largest_std_ratio_k90_rises_without_outliers,
        followup=True,
        document_untestable=NO_FOLLOWUP,
        ja="K=1。分散が1方向に極端に集中（std_norm=73 が原因）",
    ),
    Claim(
        "7B-last-layer-concentrated",
        "7B",
        "Layer 11: K = 3; the final layer's writes, leaning toward the unembedding, are concentrated too.",
        _last_concentrated,
        ja="K=3。最終層の unembedding 寄りの書き込みも集中的",
    ),
    Claim(
        "7B-last-toward-unembedding",
        "7B",
        "the final layer's writes lean toward the unembedding: its top principal directions lie in the unembedding's top singular subspace far above chance, and more than any other layer's",
        _toward_unembedding("delta_phi"),
        document_untestable="needs directions, which the write-up does not give",
        ja="K=3。最終層の unembedding 寄りの書き込みも集中的",
    ),
    Claim(
        "7B-no-layer-90pct-with-50",
        "7B",
        'The criterion "90% or more with 50 components" is unmet across the layers (every layer but 2 and 11 needs K > 80)',
        _none_meets_50,
        ja="「50基底で90%以上」の基準は**全レイヤーで未達成**（Layer 2/11 を除く全層で K>80）",
    ),
    Claim(
        "7B-others-need-over-80",
        "7B",
        "every layer except 2 and 11 needs K > 80",
        _all_but_2_last_over_80,
        scope="gpt2",
        ja="Layer 2/11 を除く全層で K>80",
    ),
    # ------------------------------------------------------------ 7C
    Claim(
        "7C-shared-looks-low-rank",
        "7C",
        "The shared basis looks very low rank (K = 6 for 90%)",
        _shared_low,
        ja="共有基底は見かけ上非常に低ランク（K=6 で90%）",
    ),
    Claim(
        "7C-last-norm-dominates",
        "7C",
        "but only because the norm of layer 11 dominates (354 against 17–52 for the middle layers)",
        _last_norm_dominates,
        ja="しかしこれは **Layer 11 のノルムが支配的** なためである（354 vs 中間層17~52）",
    ),
    Claim(
        "7C-norm-dominance-causes-low-k",
        "7C",
        "The shared basis looks low rank because layer 11's norm dominates: with every layer's variance equalised it needs far more components (>= 3x) for 90%.",
        _norm_dominance_makes_shared_low,
        document_untestable="needs the shared PCA of variance-balanced Δφ, which the write-up does not give",
        ja="しかしこれは **Layer 11 のノルムが支配的** なためである（354 vs 中間層17~52）",
    ),
    Claim(
        "7C-reconstruction-poor",
        "7C",
        "reconstruction with the shared basis is poor. Even at K = 256, cos_sim = 0.845 and the relative L2 error is 47%.",
        _shared_reconstruction_poor,
        ja="共有基底の再構成品質は低い。** K=256 でも cos_sim=0.845、相対L2誤差=47%",
    ),
    Claim(
        "7C-misses-middle-layers",
        "7C",
        "The shared PCA ... misses the finer structure of the middle layers (3-9) entirely (their cosine with K shared components is well below that with K of their own, K = 64-256).",
        _shared_costs_middle,
        document_untestable=NO_PER_LAYER,
        ja="共有PCA は Layer 11 のノルムに汚染されており、中間層の細かい構造を全く捉えられていない",
    ),
    # ------------------------------------------------------------ 7D
    Claim(
        "7D-individual-good-only-at-two-thirds",
        "7D",
        "Individual bases: only at K = 512 (67% of d_model) does the ratio reach 1.49x",
        _ratio_first_good_at_two_thirds,
        ja="K=512（d_model の 67%）でようやく 1.49x",
    ),
    Claim(
        "7D-individual-k-third-catastrophic",
        "7D",
        "at K = 256 (33%) it is still a catastrophic 8.3x",
        _third_catastrophic,
        ja="K=256（33%）では 8.3x でまだ壊滅的",
    ),
    Claim(
        "7D-few-components-fail",
        "7D",
        "a few components cannot capture the functional information",
        _few_components_fail,
        ja="少数の基底では機能的情報を捉えられない",
    ),
    Claim(
        "7D-same-as-exp6",
        "7D",
        "The same pattern as exp6's W_QK result (K = 140/144 for 1.07x)",
        untested=EXP_OTHER.format("exp6"),
        ja="exp6 の W_QK 結果（K=140/144 で 1.07x）と同じパターン",
    ),
    Claim(
        "7D-shared-catastrophic",
        "7D",
        "Shared basis: catastrophic; 463x at K = 32.",
        _shared_catastrophic,
        ja="壊滅的。K=32 で 463x",
    ),
    Claim(
        "7D-shared-destroys-other-layers",
        "7D",
        "The shared basis ... destroys the other layers' Δφ (the shared ratio is the worse, beyond the two cells' combined band, at most K).",
        _shared_worse,
        ja="共有基底が Layer 11 に最適化されてしまい、他の層の Δφ を破壊している",
    ),
    Claim(
        "7D-shared-optimised-for-last",
        "7D",
        "The shared basis ends up optimised for layer 11 (its top directions are the last layer's).",
        _shared_optimised_for_last,
        document_untestable="within tolerance: not decided: the write-up gives no directions, and its shared K50/K80 "
        "(1/3) equal layer 11's by a coincidence of small integers (layer 2 has K50 = 1 too)",
        ja="共有基底が Layer 11 に最適化されてしまい",
    ),
    Claim(
        "7D-shared-rises-8-to-32",
        "7D",
        "In one range the PPL even rises as K grows (K = 8 → 32: 136x → 463x)",
        _shared_rises,
        ja="K が増えるにつれ PPL が**増加する**区間すらある（K=8→32 で 136x→463x）",
    ),
    Claim(
        "7D-harmful-noise",
        "7D",
        "because components that layer 11 does not need act as harmful noise in the middle layers (7H: the rise from K = 8 to 32 appears with the shared projection at every layer but the last, not at the last alone)",
        harmful_noise,
        followup=True,
        document_untestable=NO_FOLLOWUP,
        ja="Layer 11 に不要な基底が中間層で有害なノイズとして作用するため",
    ),
    Claim(
        "7D-ratios-are-ppl-over-baseline",
        "7D",
        "Ind. Ratio and Sh. Ratio are the PPL divided by the baseline perplexity 29.79",
        _ratios_are_ppl_over_baseline,
        ja="Baseline perplexity: 29.79",
    ),
    Claim(
        "7D-full-k-is-baseline",
        "7D",
        "K = 768: 29.8, 1.00x for both bases",
        _full_k_is_baseline,
        ja="768 | 29.8           | 1.00x      | 29.8       | 1.00x",
    ),
    # ------------------------------------------------------------ 7E
    Claim(
        "7E-attention-consistently-lower",
        "7E",
        "attention is consistently lower rank than the FFN",
        _attn_always_lower,
        contradicted="in layer 2 attention needs K = 97 and the FFN K = 1 (ratio 97.0): not lower there",
        ja="Attention は FFN より一貫して低ランク。",
    ),
    Claim(
        "7E-inner-about-half",
        "7E",
        "In the middle layers attention reaches 90% with about half the FFN's components (ratio 0.42–0.68).",
        _inner_about_half,
        ja="中間層で Attn は FFN の約半分の次元数で90%到達（比率 0.42~0.68）",
    ),
    Claim(
        "7E-inner-attention-below-ffn",
        "7E",
        "In the middle (inner) layers attention needs fewer components than the FFN: attention K90 < FFN K90 in layers 3-10",
        inner_attention_lower,
        ja="中間層で Attn は FFN の約半分の次元数で90%到達（比率 0.42~0.68）",
    ),
    Claim(
        "7E-layer-0-attention-low",
        "7E",
        "Layer 0: attention especially low rank (K = 29); early attention has limited patterns.",
        _first_attn_low,
        ja="Attn が特に低ランク（K=29）。初期層の attention は限定的なパターン",
    ),
    Claim(
        "7E-layer-2-ffn-one-direction",
        "7E",
        "Layer 2: the FFN reaches 90% with K = 1; layer 2's FFN is concentrated in one direction",
        _layer2_ffn_k1,
        scope="gpt2",
        ja="FFN が K=1 で90%。Layer 2 の FFN は1方向に極端に集中",
    ),
    Claim(
        "7E-layer-2-ffn-causes-7B",
        "7E",
        "(this FFN is the cause of 7B's K = 1 for the whole Δφ of layer 2): its writes carry >= 90% of layer 2's Δφ variance, along Δφ's first direction",
        _layer2_ffn_is_cause,
        scope="gpt2",
        document_untestable="the write-up gives K only, not the variance shares or directions",
        ja="7B で全体の Δφ が K=1 だったのはこの FFN が原因",
    ),
    Claim(
        "7E-last-attention-concentrated",
        "7E",
        "Layer 11: attention K = 3; the final layer's attention writes concentratedly toward the unembedding.",
        _last_attn_concentrated,
        ja="Attn が K=3。最終層の attention は unembedding 方向への集中的な書き込み",
    ),
    Claim(
        "7E-last-attention-toward-unembedding",
        "7E",
        "the final layer's attention writes toward the unembedding direction: its top directions lie in the unembedding's top singular subspace far above chance, and more than any other layer's attention",
        _toward_unembedding("attn"),
        document_untestable="needs directions, which the write-up does not give",
        ja="Attn が K=3。最終層の attention は unembedding 方向への集中的な書き込み",
    ),
    Claim(
        "7E-g-from-attention",
        "7E",
        "since attention writes are lower rank than the FFN's, the regularity of g(l/L) likely comes from attention",
        untested=EXP_OTHER.format("exp3's g(l/L)"),
        ja="g(l/L) の規則性は **Attention 由来**の可能性が高い",
    ),
    Claim(
        "7E-attention-similar-patterns",
        "7E",
        "Attention has similar low-dimensional write patterns in every layer, seen as \"injection of an equal amount of context\" (7G: attention's mean overlap between layers exceeds the FFN's and is at least 3x chance)",
        attention_similar_patterns,
        followup=True,
        document_untestable=NO_FOLLOWUP,
        ja="Attention は各レイヤーで類似した低次元の書き込みパターンを持ち、これが「等量の文脈注入」として観測される",
    ),
    Claim(
        "7E-ffn-high-dimensional",
        "7E",
        "the FFN writes in high, diverse dimensions",
        _ffn_high,
        ja="FFN は高次元で多様な書き込みを行い",
    ),
    Claim(
        "7E-ffn-lexical-semantic",
        "7E",
        "the FFN ... does the lexical and semantic processing",
        untested="no experiment in the write-up probes what the FFN computes",
        ja="語彙的・意味的な処理を担当している",
    ),
    Claim("7E-ratio-column", "7E", "Attn/FFN ratio = Attn K(90%) / FFN K(90%)", _ratio_column, ja="Attn/FFN 比"),
    # ------------------------------------------------------------ conclusions
    Claim(
        "concl-exp7-k90-26-31pct",
        "conclusions",
        "exp7 (Δφ): K needed for 90%: 198–235/768 (26–31%)",
        _middle_k90_fraction,
        ja="198-235/768 (26-31%)",
    ),
    Claim(
        "concl-exp7-ppl-1.1x-at-512",
        "conclusions",
        "exp7 (Δφ): K needed for PPL ≈ 1.1x: ~512/768 (67%)",
        _ppl_11_at_two_thirds,
        contradicted="7D gives 44.5 = 1.49x at K = 512, not ≈ 1.1x; the ratio is 1.1x only somewhere between K = 512 and 768",
        ja="~512/768 (67%)",
    ),
    Claim(
        "concl-shared-catastrophic",
        "conclusions",
        "exp7 (Δφ): Effectiveness of a shared basis: catastrophic (norm imbalance)",
        _shared_catastrophic,
        ja="壊滅的（ノルム不均衡）",
    ),
    Claim(
        "concl-high-rank",
        "conclusions",
        "exp7 (Δφ): Δφ is high rank too, hard to compress (no K <= d_model/3 keeps the perplexity within 2x)",
        _hard_to_compress,
        ja="Δφ も高ランク、圧縮困難",
    ),
    Claim(
        "concl-shared-norm-imbalance",
        "conclusions",
        "exp7 (Δφ): effectiveness of a shared basis: catastrophic (norm imbalance): a variance-balanced shared basis reconstructs the non-last layers far better (mean cos +0.1 at K = 64-256)",
        _imbalance_breaks_shared,
        document_untestable="needs a variance-balanced shared basis, which the write-up does not give",
        ja="壊滅的（ノルム不均衡）",
    ),
    Claim(
        "concl-exp6-column",
        "conclusions",
        "exp6 (W_QK): static weight matrix; K for 90%: 82/144 (57%); K for PPL ≈ 1.1x: 140/144 (97%); shared basis N/A; PCA variance ≠ function",
        untested=EXP_OTHER.format("exp6"),
        ja="exp6 (W_QK)",
    ),
    Claim(
        "core-1-variance-not-function",
        "conclusions",
        'PCA of Δφ cannot be used for compression either: the "large directions" of PCA are not the "functionally important directions"',
        _variance_is_not_function,
        ja="**Δφ の PCA も圧縮に使えない**: 動的活性化空間でも、PCA の「大きな方向」≠「機能的に重要な方向」",
    ),
    Claim(
        "core-2-twenty-times",
        "conclusions",
        "layer 11's norm is 20 times the middle layers'",
        _twenty_times,
        literal=_twenty_times_literal,
        overstated="against the mean of 7C's middle layers 3-9 (「中間層17~52」: 17.6-52.4, mean 30.2) layer 11's 354.1 is 11.7x, not 20x; "
        "20x holds against layers 3 (20.1x) and 4 (19.3x) only; read as 'an order of magnitude, 20x against the smallest middle layers' it holds",
        ja="Layer 11 のノルムは中間層の 20 倍",
    ),
    Claim(
        "core-2-shared-sacrifices-others",
        "conclusions",
        "A shared PCA is dragged toward the large-norm layer and sacrifices the others (the largest-norm layer's cosine with K shared components is within 0.1 of that with K of its own, every other layer's at least 0.1 below, K = 64-256).",
        _sacrifices_others,
        document_untestable=NO_PER_LAYER,
        ja="共有 PCA は大ノルム層に引きずられ、他の層を犠牲にする",
    ),
    Claim(
        "core-2-scale-imbalance",
        "conclusions",
        "The scale imbalance between layers breaks the shared basis (a variance-balanced shared basis reconstructs the non-last layers far better: mean cos +0.1 at K = 64-256).",
        _imbalance_breaks_shared,
        document_untestable="needs a variance-balanced shared basis, which the write-up does not give",
        ja="レイヤー間のスケール不均衡が共有基底を破壊",
    ),
    Claim(
        "core-3-attention-about-half",
        "conclusions",
        "Attention is easier to compress than the FFN: attention writes reach 90% with about half the FFN's dimensions.",
        _about_half,
        ja="Attention の書き込みは FFN の約半分の次元で90%",
    ),
    Claim(
        "core-3-attention-candidate",
        "conclusions",
        "If compression is attempted, the attention path, not the FFN, is the candidate (7F: attention-only ratio <= FFN-only ratio at every K < d_model).",
        attention_candidate,
        followup=True,
        document_untestable=NO_FOLLOWUP,
        ja="もし圧縮を試みるなら、FFN ではなく Attention パスが候補",
    ),
    Claim(
        "core-4-layer-2-ffn",
        "conclusions",
        "Layer 2: the FFN is concentrated in one direction (possibly some fixed bias term).",
        _layer2_ffn_k1,
        scope="gpt2",
        ja="Layer 2: FFN が1方向に集中（何らかの固定的バイアス項の可能性）",
    ),
    Claim(
        "core-4-layer-11-attention",
        "conclusions",
        "Layer 11: attention is concentrated in 3 directions (aggregation toward the unembedding).",
        _layer11_attn_3,
        scope="gpt2",
        ja="Layer 11: Attn が3方向に集中（unembedding への集約）",
    ),
    Claim(
        "core-4-layer-11-unembedding",
        "conclusions",
        "(aggregation toward the unembedding): the last layer's top attention directions lie in the unembedding's top singular subspace far above chance, and more than any other layer's attention",
        _toward_unembedding("attn"),
        document_untestable="needs directions, which the write-up does not give",
        ja="Layer 11: Attn が3方向に集中（unembedding への集約）",
    ),
    Claim(
        "core-4-layers-2-and-11-singular",
        "conclusions",
        "Layers 2 and 11 are singular: the only layers whose K90 is below a tenth of the median",
        _singular_layers,
        scope="gpt2",
        ja="Layer 2 と 11 は特異",
    ),
    Claim(
        "core-4-layer-2-fixed-bias",
        "conclusions",
        "Layer 2: ... (possibly some fixed bias term): an input-independent write at one position: the top position carries >= 90% of the variance along PC1, and it is a BOS",
        _layer2_fixed_bias,
        scope="gpt2",
        document_untestable="needs directions and weights, which the write-up does not give",
        ja="Layer 2: FFN が1方向に集中（何らかの固定的バイアス項の可能性）",
    ),
)

SECTIONS = ("background", "setup", "7A", "7B", "7C", "7D", "7E", "conclusions")


def claims_in(*sections: str) -> list[Claim]:
    return [c for c in CLAIMS if c.section in sections]


def cells_in(*sections: str) -> list[Cell]:
    return [c for c in CELLS if c.section in sections]
