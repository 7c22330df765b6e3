"""Layer roles and the helpers every predicate uses.

Layer roles make sentences portable across models (GPT-2 small: 12 layers):
first = 0, last = L-1, middle = L//4 .. 2L//3 (3-8, the write-up's "middle layers" of
7B), middle_wide = L//4 .. 3L//4 (3-9: 7C's 「中間層17~52」, 52.4 being layer 9), inner =
L//4 .. L-2 (3-10, the layers 7E's "middle layers" ratio range covers), early = 0 .. L//4 - 1
(0-2: 「初期層」). By norm, not position: the largest-norm layer (「大ノルム層」) and the layers
it dominates (「他の層」 of the norm-imbalance sentences). A role with one name is one function
here, and every predicate that names it calls it (tests/test_metamorphic.py).
"""

from __future__ import annotations

from typing import Any

from lib.writeup.document import Tables


class NotApplicable(Exception):
    """A predicate cannot be evaluated on this model's tables (e.g. d_model too small for the K it names)."""


def tolerance(document: Any, kind: str, field: str = "rtol") -> float:
    """The judged write-up's tolerance of its `kind` cells (write-up.toml [tolerances]): a sentence that
    restates cells accepts what they accept. NotApplicable where the write-up gives none of that kind."""
    try:
        return float(document.tolerances[kind][field])
    except KeyError:
        raise NotApplicable(f"the write-up gives no {kind!r} tolerance ({field}) for this sentence to accept") from None


Outcome = tuple[bool, str]
"""(holds, what was measured, in words and numbers)."""


# ---------------------------------------------------------------- helpers for predicates
def n_layers(t: Tables) -> int:
    return len(t["norms"])


def d_model(t: Tables) -> int:
    return int(t["lowrank_ppl"][-1]["k"])


def check_roles(t: Tables) -> None:
    if n_layers(t) < 4:
        raise NotApplicable(f"first, middle and last layers need at least 4 layers; this model has {n_layers(t)}")


def middle(t: Tables) -> range:
    check_roles(t)
    return range(n_layers(t) // 4, 2 * n_layers(t) // 3 + 1)


def middle_wide(t: Tables) -> range:
    """L//4 .. 3L//4, never the last layer (on 4 layers 3L//4 is the last: the middle stops at L-2)."""
    check_roles(t)
    return range(n_layers(t) // 4, min(3 * n_layers(t) // 4, n_layers(t) - 2) + 1)


def inner(t: Tables) -> range:
    check_roles(t)
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


def fmt(values: Any) -> str:
    if isinstance(values, float):
        return f"{values:.3g}"
    if isinstance(values, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in values) + "]"
    return str(values)


def measured_only(t: Tables, *tables: str) -> None:
    """The causal measurements exist on measured tables only (the write-up does not give them)."""
    missing = [name for name in tables if name not in t]
    if missing:
        raise NotApplicable(f"needs {', '.join(missing)}, which the write-up does not give")


def rank_correlation(values: list[float]) -> float:
    """Spearman's rank correlation of values with their index (ties get their mean rank); 0 when
    every value is equal (scipy gives NaN there: no ordering to correlate)."""
    from scipy.stats import spearmanr

    if len(set(values)) < 2:
        return 0.0
    return float(spearmanr(values, range(len(values))).statistic)


def combined_band(rtol: float) -> float:
    """How far the ratio of two cells can move when each moves within its tolerance rtol.

    math.isclose accepts measured values in [v (1 - rtol), v / (1 - rtol)], so a / b can move by
    up to 1 / (1 - rtol)^2 either way: two ratios closer than that are a tie.
    """
    return 1 / (1 - rtol) ** 2


def tied(a: float, b: float, rtol: float) -> bool:
    """a and b within the combined band of two cells of tolerance rtol (positive values)."""
    return max(a, b) <= min(a, b) * combined_band(rtol)


def std_over_mean(t: Tables) -> list[float]:
    return [r["std_norm"] / r["mean_norm"] for r in t["norms"]]


def early(t: Tables) -> range:
    """The early layers (「初期層」): 0 .. L//4 - 1, the layers before `middle` (0-2 on GPT-2)."""
    check_roles(t)
    return range(0, n_layers(t) // 4)


DOMINATED = 5
"""「ノルムが支配的」 / 「大ノルム層」: a layer is dominated by the largest-norm layer when its mean norm
is at most a fifth of it (7C-last-norm-dominates' factor: the document's 354.1 against the middle
layers' 17.6-52.4). GPT-2's layer 10 (97.9, 3.6x below) is neither the large-norm layer nor
dominated by it: the sentences say nothing about it."""


def largest_norm_layer(t: Tables) -> int:
    """「大ノルム層」: the layer with the largest mean ||Δφ|| (the last on GPT-2, not on every model).

    One layer: the sentence before (「Layer 11 のノルムは中間層の 20 倍」) names one, and 7D's
    「共有基底が Layer 11 に最適化」 too."""
    m = [r["mean_norm"] for r in t["norms"]]
    return m.index(max(m))


def dominated_layers(t: Tables) -> list[int]:
    """「他の層」 of the norm-imbalance sentences: the layers whose mean norm is at most 1/DOMINATED
    of the largest-norm layer's. Every predicate that says "the others" of the large-norm layer
    reads this set (lib/causal_predicates.py imbalance_breaks_shared, sacrifices_others)."""
    m = [r["mean_norm"] for r in t["norms"]]
    return [i for i, v in enumerate(m) if DOMINATED * v <= max(m)]
