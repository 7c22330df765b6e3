"""Claims as expressions (lib/writeup/expression.py): the language on a tables dict, its measured text,
what it refuses at load (one line naming the file, the claim, the offending name and what is allowed),
the reads known from its syntax, and the vocabulary (lib/writeup/columns.py) against the registry."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib.writeup.columns import COLUMNS, markdown_table
from lib.writeup.document import DOCUMENT
from lib.writeup.expression import ExpressionError, Scope, parse
from lib.writeup.language import FUNCTIONS, ROLES, markdown_names
from lib.writeup.roles import NotApplicable
from lib.writeup.write_up import EXP7_WRITE_UP, load_write_up

ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT / "tests" / "data" / "mini-write-up"
SCOPE = Scope.of(DOCUMENT.tables, DOCUMENT.tolerances, {"HALF": 0.5}, "claims.toml: claim c")
T = DOCUMENT.tables  # exp7's own tables: 12 layers, d_model 768


def value(source: str, tables=T) -> tuple[bool, str]:
    return parse(source, SCOPE)(tables)


@pytest.mark.parametrize(
    "source, holds",
    [
        ("layer_pca.k90[2] == 1", True),  # a layer
        ("layer_pca.k90[-1] == 3", True),  # a negative index
        ("max(layer_pca.k90[3:9]) == 235", True),  # a slice
        ("min(layer_pca.k90[middle]) == 198 and layer_pca.k90[last] == 3", True),  # roles
        ("lowrank_ppl.individual_ratio[lowrank_ppl.k == 512] < 2", True),  # a boolean mask
        ("all(attn_ffn.ratio[inner] < 1)", True),  # elementwise comparison, all
        ("any(norms.std_norm > 2 * norms.mean_norm)", True),  # elementwise arithmetic
        ("sum(layer_pca.k90 <= 50) == 2", True),  # a mask counted
        ("argmax(norms.mean_norm) == last and argmin(layer_pca.k90) == 2", True),
        ("rank_correlation(norms.mean_norm[1:]) > 0.9", True),
        ("median(layer_pca.k90) == 198 and mean(norms.mean_norm[0:2]) == 33.35", True),
        ("len(middle) == 6 and n_layers == 12 and d_model == 768", True),
        ("shared_pca.k90 < k_atol * 4 and baseline_ppl > 29", True),  # a record's column, a scalar table
        ("attn_ffn.attn_k90[2] in (97, 98) and 5 not in [1, 2]", True),
        ("abs(-3) == 3 and round(2.6) == 3 and (1 if HALF > 0 else 2) == 1", True),
        ("0 < layer_pca.k90[0] < 80", False),  # a chained comparison
        ("not (norms.mean_norm[0] > norms.mean_norm[-1])", True),
    ],
)
def test_the_language_on_the_write_ups_tables(source, holds):
    assert value(source)[0] is holds


def test_the_measured_text_shows_each_part_with_its_value():
    holds, text = value("layer_pca.k90[-1] < 0.1 * median(layer_pca.k90[middle])")
    assert holds
    assert text == (
        "layer_pca.k90[-1] = 3; 0.1 * median(layer_pca.k90[middle]) = 22.15; median(layer_pca.k90[middle]) = 221.5; "
        "layer_pca.k90[middle] = [198, 220, 226, 235, 221, 222]; middle = [3, 4, 5, 6, 7, 8]"
    )
    holds, text = value("all(attn_ffn.attn_k90 < attn_ffn.ffn_k90)")
    assert not holds and "false at [2]" in text and "attn_ffn.ffn_k90 = [127, 92, 1," in text
    assert value("HALF * d_model > 1")[1] == "HALF * d_model = 384; HALF = 0.5; d_model = 768"  # constants shown


def test_the_four_sentences_of_the_issue_on_the_embedded_models_shape():
    """(a)-(d) of docs/claim-language.md's worked examples, on a 6-layer, d_model 128 tables dict."""
    t = {
        "norms": [{"layer": i, "mean_norm": m} for i, m in enumerate([14.4, 4.0, 4.1, 4.3, 4.5, 4.7])],
        "layer_pca": [{"layer": i, "k90": k} for i, k in enumerate([22, 23, 25, 24, 27, 23])],
        "attn_ffn": [{"layer": i, "attn_k90": a, "ffn_k90": 25} for i, a in enumerate([7, 4, 6, 6, 8, 6])],
        "lowrank_ppl": [{"k": k, "individual_ratio": r} for k, r in [(8, 2.2), (64, 1.0), (128, 1.0)]],
    }
    assert value("all(attn_ffn.attn_k90 < attn_ffn.ffn_k90)", t)[0]
    assert not value("argmax(norms.mean_norm) == last", t)[0]
    assert not value("all(layer_pca.k90[2:] > layer_pca.k90[1:-1])", t)[0]
    assert value("lowrank_ppl.individual_ratio[lowrank_ppl.k == 64] < 2", t)[0]


def test_a_row_or_a_role_this_model_lacks_is_not_applicable():
    small = {"norms": [{"layer": i, "mean_norm": 1.0} for i in range(3)], "layer_pca": [{"k90": 1}] * 3}
    with pytest.raises(NotApplicable, match=r"no row 11"):
        value("layer_pca.k90[11] > 0", small)
    with pytest.raises(NotApplicable, match="at least 4 layers"):
        value("min(layer_pca.k90[middle]) > 0", small)
    with pytest.raises(NotApplicable, match="empty selection"):
        value("min(layer_pca.k90[layer_pca.k90 > 5]) > 0", small)


def test_a_column_of_several_values_is_neither_true_nor_false():
    with pytest.raises(TypeError, match="use all\\(\\) or any\\(\\)"):
        value("layer_pca.k90 > 0")


@pytest.mark.parametrize(
    "source, says",
    [
        ("__import__('os').system('true')", "the name '__import__' is refused (no dunders, nothing private)"),
        ("().__class__.__base__.__subclasses__()", "the attribute '__subclasses__' is refused"),
        ("__import__('os')", "the name '__import__' is refused"),
        (
            "sorted(layer_pca.k90)",
            "the call 'sorted'(...) is refused: not a function of the claim language; allowed: min",
        ),
        ("norms.mean_norm.__class__", "the attribute '__class__' is refused"),
        ("__builtins__", "the name '__builtins__' is refused"),
        ("open('x')", "the call 'open'(...) is refused"),
        ("attn_ffn.attn_k95 > 1", "'attn_k95' is not a column of table attn_ffn; allowed: layer, attn_k90, ffn_k90"),
        ("attn_fnn.ratio > 1", "'attn_fnn.ratio': an attribute is a column of a table; allowed: tables attn_ffn"),
        ("layer_pca.k90[centre] > 1", "unknown name 'centre'; allowed: tables"),
        ("[k for k in layer_pca.k90]", "ListComp ('[k for k in layer_pca.k90]') is not part of the claim language"),
        ("(lambda: 1)()", "the call 'lambda: 1'(...) is refused"),
        ("(x := 1)", "NamedExpr"),
        ("norms > 1", "table norms is not a number"),
        ("min > 1", "the function min is not a value"),
        ("'text' == 'text'", "the constant 'text' is not a number"),
        ("max(layer_pca.k90, key=abs)", "max() with keywords"),
        ("layer_pca.k90[0] >", "is not an expression (invalid syntax"),
    ],
)
def test_what_steps_outside_the_language_is_refused_at_load_in_one_line(source, says):
    with pytest.raises(ExpressionError) as e:
        parse(source, SCOPE)
    message = str(e.value)
    assert message.startswith("claims.toml: claim c: ") and says in message and "\n" not in message


def test_an_escape_in_a_claims_file_is_refused_when_the_write_up_loads_and_nothing_runs(tmp_path):
    """The escape is refused by the load check: no table is read, no call is made (a marker file an
    evaluated `open` would create stays absent)."""
    shutil.copytree(MINI, tmp_path / "w")
    marker = tmp_path / "ran"
    for escape in (f"__import__('os').system('touch {marker}')", "().__class__.__base__.__subclasses__()"):
        (tmp_path / "w" / "claims.toml").write_text(
            f'[[claim]]\nid = "escape"\nsection = "mini"\nsentence = "s"\ncheck = "{escape}"\n'
        )
        with pytest.raises(
            ValueError, match=r"^claims.toml: claim escape: check: the (name|attribute) '__\w+__' is refused"
        ):
            load_write_up(tmp_path / "w")
    assert not marker.exists()


def test_the_reads_are_known_from_the_syntax():
    check = parse("layer_pca.k90[2] <= 1 + k_atol and attn_ffn.ffn_k90[middle][0] > 0.2 * d_model", SCOPE)
    assert check.tables == ("attn_ffn", "layer_pca", "lowrank_ppl")
    assert check.reads(T) == {
        "layer_pca": ({"k90"}, {2}),
        "attn_ffn": ({"ffn_k90"}, {3, 4, 5, 6, 7, 8}),
        "lowrank_ppl": ({"k"}, {7}),  # d_model: the sweep's last K
    }
    mask = parse("lowrank_ppl.individual_ratio[lowrank_ppl.k == 64] < 2 and baseline_ppl > 1", SCOPE)
    assert mask.reads(T) == {"lowrank_ppl": ({"individual_ratio", "k"}, {None}), "baseline_ppl": (set(), {None})}


def test_fragility_takes_a_checks_reads_from_its_syntax_and_a_predicates_from_the_recorder():
    from lib.robustness.recording import static_reads

    by_id = {c.id: c for c in EXP7_WRITE_UP.claims}
    reads = static_reads(by_id["7E-layer-2-ffn-one-direction"], T)
    assert reads is not None and reads.fields == {"attn_ffn": {"ffn_k90"}} and reads.rows == {"attn_ffn": {2}}
    assert static_reads(by_id["7E-inner-about-half"], T) is None  # a Python predicate: recorded


def test_at_least_30_of_exp7s_claims_are_expressions():
    checks = [c for c in EXP7_WRITE_UP.claims if c.check]
    assert len(checks) >= 30
    assert all(c.predicate is not None and c.predicate_name == "" for c in checks)


def test_constants_carry_a_value_and_a_reason(tmp_path):
    shutil.copytree(MINI, tmp_path / "w")
    path = tmp_path / "w" / "claims.toml"
    text = path.read_text()
    path.write_text(text.replace('USABLE = {value = 2, reason = "', 'USABLE = {value = 2, why = "'))
    with pytest.raises(ValueError, match=r"claims.toml: \[constants\] USABLE: give \{value"):
        load_write_up(tmp_path / "w")
    path.write_text(text.replace("USABLE = {", "middle = {"))
    with pytest.raises(ValueError, match=r"\[constants\] 'middle': a constant's name is an identifier that is no"):
        load_write_up(tmp_path / "w")


def test_every_registered_table_is_in_the_languages_vocabulary_with_its_snapshot_columns():
    from lib.tables.registry import TABLES

    assert set(TABLES) == set(COLUMNS)
    snapshots = sorted((ROOT / "snapshots").glob("tiny-wikitext-*/test_snapshots/*.json"))
    assert snapshots
    for path in snapshots:
        for name, table in json.loads(path.read_text()).items():
            rows = table if isinstance(table, list) else [table]
            have = {k for r in rows if isinstance(r, dict) for k in r} if isinstance(table, (list, dict)) else set()
            assert have == set(COLUMNS[name][2]), (name, sorted(have))


def test_the_claim_language_page_holds_the_generated_table_and_every_function_and_role():
    page = (ROOT / "docs" / "claim-language.md").read_text()
    assert markdown_table() in page, "docs/claim-language.md: regenerate its table with lib.writeup.columns"
    assert markdown_names() in page, "docs/claim-language.md: regenerate its names with lib.writeup.language"
    for name in (*FUNCTIONS, *ROLES):
        assert re.search(rf"`{name}\b", page), name


MOVED = {
    "bg-delta-phi-dynamic": ("delta_phi_input_dependent", None),
    "setup-gpt2-small": ("gpt2_shape", None),
    "7A-norm-rises-with-depth": ("norms_trend_with_depth", "norms_rise_every_layer"),
    "7A-last-layer-largest": ("last_norm_largest", None),
    "7A-layer-2-std-ratio-abnormal": ("layer2_heavy_tail", None),
    "7B-not-low-rank": ("not_low_rank", None),
    "7B-middle-k90-26-31pct": ("middle_k90_fraction", None),
    "7B-middle-effectively-full-rank": ("middle_effectively_full_rank", "middle_full_rank_literal"),
    "7B-layer-0-comparatively-low": ("first_lower_than_middle", None),
    "7B-layer-2-one-direction": ("layer2_k1", None),
    "7B-last-layer-concentrated": ("last_concentrated", None),
    "7B-no-layer-90pct-with-50": ("none_meets_50", "none_meets_50_literal"),
    "7B-others-need-over-80": ("all_but_2_last_over_80", None),
    "7C-pooled-12000-rows": ("pooled_rows", None),
    "7C-shared-looks-low-rank": ("shared_low", None),
    "7C-last-norm-dominates": ("last_norm_dominates", None),
    "7C-reconstruction-poor": ("shared_reconstruction_poor", None),
    "7D-individual-good-only-at-two-thirds": ("ratio_first_good_at_two_thirds", None),
    "7D-individual-k-third-catastrophic": ("third_catastrophic", None),
    "7D-few-components-fail": ("few_components_fail", None),
    "7D-shared-catastrophic": ("shared_catastrophic", None),
    "7D-full-k-is-baseline": ("full_k_is_baseline", None),
    "7E-attention-consistently-lower": ("attn_always_lower", None),
    "7E-layer-0-attention-low": ("first_attn_low", None),
    "7E-early-attention-limited": ("early_attn_limited", None),
    "7E-layer-2-ffn-one-direction": ("layer2_ffn_k1", None),
    "7E-last-attention-concentrated": ("last_attn_concentrated", None),
    "7E-ffn-high-dimensional": ("ffn_high", None),
    "concl-exp7-k90-26-31pct": ("middle_k90_fraction", "every_k90_fraction"),
    "concl-exp7-ppl-1.1x-at-512": ("ppl_11_at_two_thirds", None),
    "concl-shared-catastrophic": ("shared_catastrophic", None),
    "core-2-twenty-times": ("twenty_times", "twenty_times_literal"),
    "core-3-attention-about-half": ("about_half", None),
    "core-4-layer-2-ffn": ("layer2_ffn_k1", None),
    "core-4-layer-11-attention": ("layer11_attn_3", None),
}
"""exp7's claims that moved from a predicate to a check: the predicate (and literal) each replaced."""


def _outcome(decide, tables):
    try:
        return decide(tables)[0]
    except (NotApplicable, StopIteration):  # ratio_first_good_at_two_thirds: StopIteration where no K is usable
        return "n/a"
    except LookupError:
        return "lookup"


def _embedded_tables() -> dict:
    tables = {"config": {"n_tokens": 1000}, "model_shape": {"n_layers": 6, "n_heads": 4, "d_model": 128}}
    for path in (ROOT / "snapshots").glob("tiny-wikitext-*/test_snapshots/*.json"):
        tables.update(json.loads(path.read_text()))
    return tables


@pytest.mark.parametrize("tables", [T, _embedded_tables()], ids=["document", "embedded-model"])
def test_each_moved_claim_decides_as_the_predicate_it_replaced(tables):
    """The check (and literal_check) of each moved claim gives the verdict its Python predicate gave, on
    exp7's own tables and on the embedded model's (its committed snapshots)."""
    from lib.writeup.registry import PREDICATES

    by_id = {c.id: c for c in EXP7_WRITE_UP.claims}
    for claim_id, (name, literal) in MOVED.items():
        claim = by_id[claim_id]
        assert claim.check or claim.literal_check, claim_id
        assert _outcome(claim.predicate, tables) == _outcome(PREDICATES[name], tables), claim_id
        if literal:
            assert _outcome(claim.literal, tables) == _outcome(PREDICATES[literal], tables), claim_id


@st.composite
def scaled_tables(draw: st.DrawFn, base=T) -> dict:
    """exp7's own tables with every number scaled by its own factor in [1/3, 3] (K values stay whole and
    at least 1): the moved claims' verdicts flip on many of them."""
    factor = st.floats(1 / 3, 3)

    def scaled(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return v
        x = v * draw(factor)
        return max(1, round(x)) if isinstance(v, int) else x

    out = {}
    for name, table in base.items():
        if name in ("config", "model_shape"):
            out[name] = table
        elif isinstance(table, list):
            out[name] = [{k: v if k in ("layer", "k") else scaled(v) for k, v in row.items()} for row in table]
        elif isinstance(table, dict):
            out[name] = {k: scaled(v) for k, v in table.items()}
        else:
            out[name] = scaled(table)
    return out


@settings(max_examples=60, deadline=None)
@given(scaled_tables())
def test_each_moved_claim_decides_as_its_predicate_on_drawn_tables(tables):
    test_each_moved_claim_decides_as_the_predicate_it_replaced(tables)
