"""The rule every claim keeps: a sentence that restates table cells accepts at least what the cells accept.

A faithful reproduction never passes the cells and fails the sentence. Hypothesis draws the
write-up's tables with every cell within its own tolerance (Cell.within), consistently: ratios
recomputed from the perplexities and K values they are made of, K non-decreasing over the
thresholds, K = d_model the identity projection (ratio 1). Every claim decidable on the document
gives the verdict it gives on the document's own tables: one that holds holds, a contradicted one
stays contradicted, and an overstated claim's literal reading stays false.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib.writeup.claims import CELLS, CLAIMS, DOCUMENT_TABLES, THRESHOLDS, Cell

# Cell.within is math.isclose; a drawn float this close to the band's edge could fall out of it by
# rounding, so floats are drawn from the band shrunk by one part in 10^9 of the value.
EDGE = 1e-9

DECIDABLE = [c for c in CLAIMS if c.predicate is not None and not c.document_untestable]
CELL = {(c.table, c.row, c.column): c for c in CELLS}


def band(cell: Cell) -> tuple[float, float]:
    """The values Cell.within accepts: isclose(m, v) holds for m in [v (1 - rtol), v / (1 - rtol)]
    (rtol is relative to the larger of the two) and for |m - v| <= atol."""
    v = cell.value
    lo, hi = min(v * (1 - cell.rtol), v - cell.atol), max(v / (1 - cell.rtol), v + cell.atol)
    return lo + EDGE * abs(v), hi - EDGE * abs(v)


def float_in(cell: Cell) -> st.SearchStrategy[float]:
    lo, hi = band(cell)
    return st.floats(lo, hi)


def ints_in(cell: Cell, at_least: int = 1) -> list[int]:
    """The whole numbers >= at_least that the cell accepts (K values)."""
    lo, hi = band(cell)
    return [k for k in range(max(at_least, math.ceil(lo)), math.floor(hi) + 1) if cell.within(k)]


@st.composite
def k_row(draw: st.DrawFn, table: str, row: int | None) -> dict[str, int]:
    """K at 50/80/90/95% within their cells, non-decreasing over the thresholds."""
    ks: dict[str, int] = {}
    least = 1
    for t in (f"k{round(t * 100)}" for t in THRESHOLDS):
        choices = ints_in(CELL[(table, row, t)], least)
        if not choices:  # no K at this threshold both within its cell and >= the previous one's
            raise AssertionError(f"{table} row {row}: no {t} within its cell at or above {least}")
        ks[t] = least = draw(st.sampled_from(choices))
    return ks


def attn_ffn_pairs(layer: int) -> list[tuple[int, int]]:
    """(attention K90, FFN K90) within their cells whose ratio is within the ratio cell."""
    ratio = CELL[("attn_ffn", layer, "ratio")]
    return [
        (a, f)
        for a in ints_in(CELL[("attn_ffn", layer, "attn_k90")])
        for f in ints_in(CELL[("attn_ffn", layer, "ffn_k90")])
        if ratio.within(a / f)
    ]


PAIRS = {layer: attn_ffn_pairs(layer) for layer in range(len(DOCUMENT_TABLES["attn_ffn"]))}


@st.composite
def ratio_and_ppl(draw: st.DrawFn, row: int, kind: str, baseline: float) -> tuple[float, float]:
    """A 7D ratio within its cell whose perplexity (ratio x baseline) is within its own cell."""
    r_lo, r_hi = band(CELL[("lowrank_ppl", row, f"{kind}_ratio")])
    p_lo, p_hi = band(CELL[("lowrank_ppl", row, f"{kind}_ppl")])
    lo, hi = max(r_lo, p_lo / baseline), min(r_hi, p_hi / baseline)
    assert lo <= hi, f"7D row {row} {kind}: no ratio within both cells at baseline {baseline}"
    ratio = draw(st.floats(lo, hi))
    return ratio, ratio * baseline


@st.composite
def faithful_tables(draw: st.DrawFn) -> dict[str, Any]:
    t = copy.deepcopy(DOCUMENT_TABLES)
    for r in t["norms"]:
        for c in ("mean_norm", "std_norm"):
            r[c] = draw(float_in(CELL[("norms", r["layer"], c)]))
    for r in t["layer_pca"]:
        r.update(draw(k_row("layer_pca", r["layer"])))
    t["shared_pca"] = draw(k_row("shared_pca", None))
    for i, r in enumerate(t["reconstruction"]):
        r["cos_sim"] = min(1.0, draw(float_in(CELL[("reconstruction", i, "cos_sim")])))
        r["relative_l2"] = max(0.0, draw(float_in(CELL[("reconstruction", i, "relative_l2")])))
    baseline = t["baseline_ppl"] = draw(float_in(CELL[("baseline_ppl", None, "")]))
    last = len(t["lowrank_ppl"]) - 1
    for i, r in enumerate(t["lowrank_ppl"]):
        for kind in ("individual", "shared"):
            # K = d_model projects onto the whole space: the unchanged forward pass, ratio 1
            ratio, ppl = (1.0, baseline) if i == last else draw(ratio_and_ppl(i, kind, baseline))
            r[f"{kind}_ratio"], r[f"{kind}_ppl"] = ratio, ppl
    for r in t["attn_ffn"]:
        a, f = draw(st.sampled_from(PAIRS[r["layer"]]))
        r.update(attn_k90=a, ffn_k90=f, ratio=a / f)
    return t


def verdicts(t: dict[str, Any]) -> dict[str, bool]:
    out = {c.id: c.predicate(t)[0] for c in DECIDABLE}
    out |= {f"{c.id} (literal)": c.literal(t)[0] for c in DECIDABLE if c.literal is not None}
    return out


ON_DOCUMENT = verdicts(DOCUMENT_TABLES)


def test_drawn_tables_are_within_every_cell():
    """The strategy's own check: a drawn table passes every cell (else the rule below proves nothing)."""

    @settings(max_examples=50, deadline=None)
    @given(faithful_tables())
    def check(t: dict[str, Any]) -> None:
        outside = [c.id for c in CELLS if not c.within(c.measured(t))]
        assert not outside, outside

    check()


@settings(max_examples=400, deadline=None)
@given(faithful_tables())
def test_every_claim_keeps_its_document_verdict_within_the_cells(t):
    changed = {name: (ON_DOCUMENT[name], now) for name, now in verdicts(t).items() if now != ON_DOCUMENT[name]}
    assert not changed, "verdict (document, drawn) changed within the cells' tolerance: " + "; ".join(
        f"{name}: {was} -> {now}" for name, (was, now) in changed.items()
    )


def test_the_rule_covers_the_contradicted_and_overstated_claims():
    """Contradicted claims are in the rule (their False must stay False), and every overstated one's literal reading."""
    contradicted = [c.id for c in DECIDABLE if c.contradicted]
    assert contradicted and all(not ON_DOCUMENT[i] for i in contradicted)
    overstated = [c.id for c in DECIDABLE if c.overstated]
    assert overstated and all(ON_DOCUMENT[i] and not ON_DOCUMENT[f"{i} (literal)"] for i in overstated)


@pytest.mark.parametrize("claim", [c for c in CLAIMS if c.document_untestable], ids=lambda c: c.id)
def test_undecidable_on_the_document_says_why(claim):
    assert claim.document_untestable.strip()
