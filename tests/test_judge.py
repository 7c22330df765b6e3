"""The one judge (lib/writeup/judge.py), its Verdict, and the Row that carries it (lib/report/rows.py)."""

from __future__ import annotations

import dataclasses
import json
import statistics
from typing import Any

import pytest

from lib.report.compare import Result, compare
from lib.report.rows import Row
from lib.report.text import markdown_table, num
from lib.robustness.judged import judged, verdict
from lib.writeup import catalogue
from lib.writeup.claims import CELLS, CLAIMS, DOCUMENT_TABLES, SETUP, Claim, NotApplicable
from lib.writeup.judge import NO_ROW, NOT_GPT2, Status, Verdict, decide, on_document, on_run

WRITE_UP = {"model": SETUP.model, "dataset": SETUP.dataset, "n_tokens": 1000}
WRITE_UP |= {"numerics": "compat", "positions": "all", "pca": "centred"}
"""A run config (RunConfig.to_json's fields the judge reads) of the write-up's set-up."""
OTHER = {**WRITE_UP, "model": "tiny"}


def claim(predicate: Any, scope: str = "any", **marks: Any) -> Claim:
    return Claim("c", "7B", "a planted sentence", predicate, scope=scope, **marks)


def raises(e: Exception) -> Any:
    def predicate(t: Any) -> tuple[bool, str]:
        raise e

    return predicate


# ---------------------------------------------------------------- the verdict and its text
@pytest.mark.parametrize(
    "text",
    [
        "holds",
        "fails",
        "does not hold",
        "contradicted by the document",
        "skipped",
        "skipped: not judged: the write-up's numbers are for GPT-2 small; a: b",
        "overstated by the document: literally: every layer",
    ],
)
def test_the_claims_json_words_read_back_to_the_same_text(text):
    assert Verdict.from_text(text).text() == text


def test_a_verdict_shows_its_reason_only_where_the_claims_json_does():
    assert Verdict(Status.SKIPPED, reason="not tested: x").text() == "skipped: not tested: x"
    assert Verdict(Status.DOES_NOT_HOLD, "m", "the long failure message").text() == "does not hold"
    assert Verdict.from_text("does not hold (xfail)").status is Status.DOES_NOT_HOLD  # claims JSON of before
    assert Verdict.from_text("skipped: a: b") == Verdict(Status.SKIPPED, reason="a: b")
    with pytest.raises(ValueError, match="unknown verdict 'maybe'"):
        Verdict.from_text("maybe")


# ---------------------------------------------------------------- one definition of undecided
def test_not_applicable_is_undecided_everywhere():
    c = claim(raises(NotApplicable("too few layers")))
    assert decide(c, {}) == Verdict(Status.SKIPPED, reason="does not apply to this model: too few layers")
    assert on_run(c, dict, OTHER).reason == "does not apply to this model: too few layers"
    assert verdict(c, {}) == (None, "does not apply to this model: too few layers")  # the search: no flip


def test_a_lookup_error_is_undecided_only_for_a_claim_that_names_gpt2_smalls_layers():
    named = claim(raises(IndexError("list index out of range")), scope="gpt2")
    assert decide(named, {}).status is Status.SKIPPED
    assert on_run(named, dict, OTHER) == Verdict(Status.SKIPPED, reason=NOT_GPT2)
    with pytest.raises(IndexError):  # GPT-2 small has every layer such a claim names: a bug
        on_run(named, dict, WRITE_UP)
    with pytest.raises(KeyError):  # a claim phrased for any model that misses a row: a bug
        decide(claim(raises(KeyError("norms"))), {})


@pytest.mark.parametrize("error", [ZeroDivisionError("division by zero"), statistics.StatisticsError("no data")])
def test_arithmetic_errors_are_bugs_not_undecided(error):
    """Fragility counted these as "cannot decide" (no flip), which hid a broken predicate; now they surface."""
    with pytest.raises(type(error)):
        verdict(claim(raises(error)), {})


# ---------------------------------------------------------------- on a run, on the document
def test_a_cell_is_judged_on_the_write_ups_set_up_only_and_shown_on_any():
    cell = next(c for c in CELLS if c.id == "7A-mean_norm-layer-11")
    tables = {"norms": [{"layer": 11, "mean_norm": 354.0, "std_norm": 1.0}]}
    assert on_run(cell, lambda: tables, WRITE_UP) == Verdict(Status.HOLDS, value=354.0)
    off = on_run(cell, lambda: tables, {**WRITE_UP, "n_tokens": 500})
    assert off.status is Status.SKIPPED and off.value == 354.0 and off.reason.endswith("this run differs in n_tokens")
    far = on_run(cell, lambda: {"norms": [{"layer": 11, "mean_norm": 400.0}]}, WRITE_UP)
    assert far.status is Status.DOES_NOT_HOLD and "tolerance rtol=0.05" in far.reason
    assert on_run(cell, lambda: {"norms": [{"layer": 0, "mean_norm": 1.0}]}, WRITE_UP).reason == NO_ROW


def test_a_sentence_not_tested_reads_no_tables():
    untested = next(c for c in CLAIMS if c.untested)

    def tables() -> dict[str, Any]:
        raise AssertionError("read")

    assert on_run(untested, tables, WRITE_UP).text() == f"skipped: not tested: {untested.untested}"


def test_the_document_side_checks_claims_toml_marks():
    contradicted = next(c for c in CLAIMS if c.contradicted and c.predicate and not c.document_untestable)
    assert on_document(contradicted).status is Status.CONTRADICTED
    overstated = next(c for c in CLAIMS if c.overstated)
    v = on_document(overstated)
    assert v.status is Status.OVERSTATED and v.measured.startswith("qualified: ") and v.reason == overstated.overstated
    wrongly_marked = dataclasses.replace(contradicted, predicate=lambda t: (True, "follows"))
    assert on_document(wrongly_marked).status is Status.FAILS
    assert on_document(dataclasses.replace(overstated, literal=None)).status is Status.FAILS


def test_the_catalogue_says_what_the_judge_says_on_the_document():
    words = {v: k for k, v in catalogue.WORDS.items()}
    for c in CLAIMS:
        word, _ = catalogue.verdict(c)
        if word in words:
            assert words[word] is on_document(c).status, c.id


def test_every_cell_holds_on_the_document_for_the_search():
    """The search's verdict is the judge's: the write-up's own numbers are within every cell's tolerance."""
    cells = [j for j in judged() if j in CELLS]
    assert cells and all(verdict(c, DOCUMENT_TABLES)[0] is True for c in cells)


# ---------------------------------------------------------------- the row and its JSON
OLD_ROW = {
    "section": "7A",
    "kind": "cell",
    "document": "354.1",
    "measured": "4.656",
    "ja": "",
    "note": "",
    "run": "tiny-wikitext-w0",
    "value": 4.656,
    "verdict": "skipped: not judged: the write-up's numbers are for GPT-2 small; this run differs in model",
    "baseline": "",
    "moved": "",
    "fragility": None,
    "claim": "7A-mean_norm-layer-11",
}
"""A row as --claims-json wrote it before the Row had a JSON of its own."""


def test_a_row_writes_the_claims_json_row_byte_for_byte():
    row = Row.from_json(OLD_ROW)
    assert row.status is Status.SKIPPED and row.id == "7A-mean_norm-layer-11"
    assert json.dumps(row.to_json()) == json.dumps(OLD_ROW)  # the same keys in the same order
    assert Row.from_json(json.loads(json.dumps(row.to_json()))) == row  # as pytest-xdist hands it over


def test_old_baselines_with_bare_rows_compare_by_status():
    bare = Row.from_json({"claim": "a", "kind": "measured", "verdict": "holds"})
    assert (bare.run, bare.value, bare.measured) == ("", None, "")
    now = dataclasses.replace(bare, verdict=Verdict.from_text("skipped: another reason"))
    changed = compare(Result("b", rows=[bare]), Result("c", rows=[now]), {}).verdicts
    assert [c.verdict_line() for c in changed] == [
        "a [measured]: verdict 'holds' in the baseline, 'skipped' now; measured: baseline -, now -"
    ]
    with pytest.raises(ValueError, match="lacks claim, kind or verdict"):
        Row.from_json({"claim": "a"})


# ---------------------------------------------------------------- the report's text helpers
def test_num_prints_whole_numbers_whole_and_others_to_four_digits():
    assert [num(354.1), num(1000.0), num(0.123456), num(41)] == ["354.1", "1000", "0.1235", "41"]
    assert num(12345.678, grouping=True, whole=False) == "12,346" and num(-0.5, 3, sign=True) == "-0.5"
    assert num(-3876.5, 3, sign=True, whole=False) == "-3876" and num(1.939e-15) == "1.939e-15"  # one format
    assert num(2.5e12) == "2.5e+12"  # past 1e9: significant digits


def test_markdown_table_plain_and_aligned():
    assert markdown_table(["a", "b"], [[1, "x"]]) == ["| a | b |", "|---|---|", "| 1 | x |"]
    assert markdown_table(["a", "bb"], [["123", "x"]], aligned=True) == ["|   a | bb |", "|-----|----|", "| 123 |  x |"]
