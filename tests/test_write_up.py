"""The write-up is data (lib/writeup/exp7/, `--write-up DIR`): its set-up, tables, cells and claims load
from files, and another write-up's files run through the same suite with no change to lib/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lib.errors import ConfigError
from lib.measure.spectra import THRESHOLDS as MEASURED_THRESHOLDS
from lib.session import Session
from lib.writeup.document import THRESHOLDS, load_document
from lib.writeup.write_up import EXP7_WRITE_UP, load_write_up

ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT / "tests" / "data" / "mini-write-up"
OVERSTATED = "the write-up's own 7B: K90 23, 25, 24, 27, 23 after layer 1 rises and falls; none is below layer 1's 23"


def test_exp7_loads_every_cell_of_its_tables_once():
    cells = EXP7_WRITE_UP.cells
    assert len({c.id for c in cells}) == len(cells) == 157
    by_id = {c.id: c for c in cells}
    assert by_id["7A-mean_norm-layer-11"].value == 354.1 and by_id["7A-mean_norm-layer-11"].rtol == 0.05
    assert by_id["7D-baseline-ppl"].measured({"baseline_ppl": 29.0}) == 29.0
    assert by_id["7E-ratio-layer-2"].measured({"attn_ffn": [{"layer": 2, "ratio": 96.0}]}) == 96.0


def test_the_write_up_thresholds_are_the_measured_ones():
    assert THRESHOLDS == MEASURED_THRESHOLDS
    assert [f"k{round(t * 100)}" for t in THRESHOLDS] == list(EXP7_WRITE_UP.tables["shared_pca"])


def test_the_mini_write_up_has_two_cells_a_predicate_and_four_expressions_in_a_section_of_its_own():
    mini = load_write_up(MINI)
    assert [c.id for c in mini.cells] == ["mini-7A-mean_norm-layer-0", "mini-7B-k90-layer-0"]
    assert [c.id for c in mini.claims_in("7B")] == ["mini-first-layer-fewer-components"]
    assert [c.check != "" for c in mini.claims_in("mini")] == [True] * 4
    assert (
        mini.section_ids == ("7A", "7B", "mini")
        and mini.section_title("mini") == "Four sentences about the embedded model"
    )
    holds, _ = mini.claims[0].predicate(mini.tables)  # type: ignore[misc]
    assert holds


def test_a_write_up_directory_without_its_files_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="--write-up .*no such directory"):
        Session.from_options({"cache_dir": str(tmp_path), "write_up": str(tmp_path / "nowhere")})
    (tmp_path / "w").mkdir()
    with pytest.raises(ConfigError, match="no claims.toml"):
        Session.from_options({"cache_dir": str(tmp_path), "write_up": str(tmp_path / "w")})


def test_a_cell_naming_an_undefined_tolerance_is_refused(tmp_path):
    shutil.copytree(MINI, tmp_path / "w")
    path = tmp_path / "w" / "write-up.toml"
    path.write_text(path.read_text().replace('columns = {k90 = "k"}', 'columns = {k90 = "kk"}'))
    with pytest.raises(ValueError, match=r"tolerances \['kk'\]"):
        load_document(tmp_path / "w")


def test_a_three_claim_write_up_runs_on_the_embedded_model(tmp_path):
    """`--write-up tests/data/mini-write-up`: its two cells and its five sentences are the session's claims,
    judged on the embedded model (whose set-up the mini write-up names), with no change to lib/: the
    four expressions as the write-up's own numbers say (one contradicted, one overstated)."""
    import json
    import os
    import subprocess
    import sys

    out, report = tmp_path / "claims.json", tmp_path / "report.md"
    args = ["claims/", "--model", "tiny-wikitext", "--device", "cpu", "--write-up", str(MINI), "--claims-xfail"]
    args += ["--claims-json", str(out), "--claims-report", str(report)]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "-q"],
        cwd=ROOT,
        env={**os.environ, "DPHI_CACHE_DIR": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {(r["claim"], r["kind"]): r["verdict"] for r in json.loads(out.read_text())["rows"]}
    assert rows == {
        ("mini-7A-mean_norm-layer-0", "cell"): "holds",
        ("mini-7B-k90-layer-0", "cell"): "holds",
        ("mini-first-layer-fewer-components", "measured"): "holds",
        ("mini-first-layer-fewer-components", "document"): "holds",
        ("mini-attention-fewer-than-ffn", "measured"): "holds",
        ("mini-attention-fewer-than-ffn", "document"): "holds",
        ("mini-last-layer-largest-norm", "measured"): "does not hold",
        ("mini-last-layer-largest-norm", "document"): "contradicted by the document",
        ("mini-k90-grows-after-layer-1", "measured"): "holds",
        ("mini-k90-grows-after-layer-1", "document"): "overstated by the document: " + OVERSTATED,
        ("mini-k64-ratio-below-2", "measured"): "holds",
        ("mini-k64-ratio-below-2", "document"): "holds",
    }
    _the_report_speaks_of_its_write_up(report.read_text(encoding="utf-8"), json.loads(out.read_text())["rows"])
    # the run is the mini write-up's own set-up: its false sentence is not reproduced, not "does not carry over"
    rows_ = json.loads(out.read_text())["rows"]
    (false,) = [r for r in rows_ if r["claim"] == "mini-last-layer-largest-norm" and r["kind"] == "measured"]
    assert false["own_set_up"] is True
    assert "**Not reproduced on the write-up's own set-up: 1**" in report.read_text(encoding="utf-8")


def _the_report_speaks_of_its_write_up(text: str, rows: list[dict]) -> None:
    """The mini write-up's report: its title, its section titles, its sentence, its cells with their measured
    values; nothing of exp7."""
    mini = load_write_up(MINI)
    assert text.startswith(f"# {mini.title}: claims report\n")
    for title in mini.section_titles.values():
        assert f"## {title}" in text
    assert mini.claims[0].sentence in text and mini.claims[0].ja in text
    for row in (r for r in rows if r["kind"] == "cell"):
        cell = next(c for c in mini.cells if c.id == row["claim"])
        assert f"{cell.column}: write-up {cell.value:g}, measured {row['measured']}" in text, row
    for exp7 in ("Experiment 7", "exp7", "GPT-2", "7A: norms", "7F-7H", "lib/tables/causes.py"):
        assert exp7 not in text, exp7


def test_a_write_up_without_japanese_has_no_original_column():
    import dataclasses

    from lib.report.markdown import markdown
    from lib.report.rows import Row, claim_row
    from lib.writeup.judge import Verdict

    mini = load_write_up(MINI)
    english = dataclasses.replace(mini, claims=tuple(dataclasses.replace(c, ja="") for c in mini.claims))
    row = claim_row(english.claims[0], "r", english.document)
    row.record(Verdict.from_text("holds"))
    cell = Row("mini-7B-k90-layer-0", "7B", "cell", "22", "23", run="r", value=23.0, report_section="7B")
    cell.verdict = Verdict.from_text("holds")
    text = markdown([row, cell], {"r": {}}, english)
    assert "| claim | sentence | write-up | this run |" in text and "original" not in text
    assert "Experiment 7" not in text and "k90: write-up 22, measured 23" in text
    assert "| claim | sentence | original | write-up | this run |" in markdown([row], {"r": {}}, mini)


def test_the_fragility_digest_is_the_same_in_every_process():
    """The digest keying cached fragility rows is read from text (claims, cells, the deciding code's
    source), never from object reprs that print memory addresses: two processes agree."""
    import subprocess
    import sys

    code = "from lib.robustness.judged import claims_digest; print(claims_digest())"
    digests = {
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True).stdout for _ in "ab"
    }
    assert len(digests) == 1 and len(digests.pop().strip()) == 16


def test_the_fragility_digest_follows_the_write_up():
    from lib.robustness.judged import claims_digest

    assert claims_digest(load_write_up(MINI)) != claims_digest(EXP7_WRITE_UP)


def _broken(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """The mini write-up with one edit, in a directory of its own."""
    shutil.copytree(MINI, tmp_path / "w")
    path = tmp_path / "w" / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    return tmp_path / "w"


@pytest.mark.parametrize(
    "file, old, new, says",
    [
        (
            "write-up.toml",
            'columns = {k90 = "k"}',
            'columns = {k95 = "k"}',
            "write-up.toml: [[cells]] mini-7B-{column}-layer-{layer}: column 'k95' is not in every row of table "
            "layer_pca; its columns: k90, layer",
        ),
        (
            "write-up.toml",
            'table = "layer_pca"',
            'table = "layer_pcaa"',
            "write-up.toml: [[cells]] mini-7B-{column}-layer-{layer}: table 'layer_pcaa' is not in [tables]; "
            "its tables: model_shape, norms, layer_pca, attn_ffn, lowrank_ppl",
        ),
        (
            "write-up.toml",
            'text_name = "WikiText-2 test"\n',
            "",
            "write-up.toml: [setup] lacks text_name; [setup] has model, model_name, dataset, dataset_revision, "
            "text_name, n_tokens, numerics, positions, pca",
        ),
        (
            "claims.toml",
            'check = "all(attn_ffn.attn_k90 < attn_ffn.ffn_k90)"',
            'check = "all(attn_ffn.attn_k95 < attn_ffn.ffn_k90)"',
            "claims.toml: claim mini-attention-fewer-than-ffn: check: 'attn_k95' is not a column of table "
            "attn_ffn; allowed: layer, attn_k90, ffn_k90, ratio",
        ),
        (
            "claims.toml",
            'check = "all(attn_ffn.attn_k90 < attn_ffn.ffn_k90)"',
            'check = "all(attn_fnn.attn_k90 < attn_ffn.ffn_k90)"',
            "claims.toml: claim mini-attention-fewer-than-ffn: check: 'attn_fnn.attn_k90': an attribute is a column",
        ),
        (
            "claims.toml",
            'section = "mini"\nsentence = "The last layer',
            'section = "8A"\nsentence = "The last layer',
            "claims.toml: claim mini-last-layer-largest-norm: section '8A' is not one of the write-up's 7A, 7B, mini",
        ),
        (
            "claims.toml",
            'sentence = "The perplexity ratio at K = 64 is below 2x."\n',
            "",
            "claims.toml: claim mini-k64-ratio-below-2: missing sentence; every [[claim]] has id, section, sentence",
        ),
    ],
    ids=["cell-column", "cell-table", "setup-text_name", "check-column", "check-table", "section", "sentence"],
)
def test_a_write_up_naming_what_does_not_exist_is_one_clear_line(tmp_path, file, old, new, says):
    """Each name error of a write-up is one line naming the file, the entry and what is allowed, raised
    where the session loads it (a ConfigError, before any model work)."""
    directory = _broken(tmp_path, file, old, new)
    with pytest.raises(ConfigError) as e:
        Session.from_options({"cache_dir": str(tmp_path / "cache"), "write_up": str(directory)})
    assert says in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_claim_without_ja_loads_an_english_only_write_up_has_one_language():
    mini = load_write_up(MINI)
    assert {c.ja for c in mini.claims_in("mini")} == {""}


def test_a_name_error_stops_pytest_with_its_line_and_no_traceback(tmp_path):
    import os
    import subprocess
    import sys

    directory = _broken(tmp_path, "write-up.toml", 'columns = {k90 = "k"}', 'columns = {attn_k95 = "k"}')
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "claims/", "--model", "tiny-wikitext", "--write-up", str(directory)],
        cwd=ROOT,
        env={**os.environ, "DPHI_CACHE_DIR": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 4, out[-2000:]  # a usage error, not INTERNALERROR (3)
    assert "column 'attn_k95' is not in every row of table layer_pca" in out and "Traceback" not in out


def test_a_write_ups_own_predicates_register_by_decorator_and_join_its_digest(tmp_path):
    """A predicates.py beside the TOML files: its @predicate functions are claims' predicates by name, a
    name registered twice is refused, and its source is part of the write-up's digest (the cache keys)."""
    directory = _broken(
        tmp_path, "claims.toml", 'predicate = "first_lower_than_middle"', 'predicate = "mini_first_below_second"'
    )
    (directory / "predicates.py").write_text(
        "from lib.writeup.registry import predicate\n\n\n"
        "@predicate\ndef mini_first_below_second(t):\n"
        "    a, b = t['layer_pca'][0]['k90'], t['layer_pca'][1]['k90']\n"
        "    return a < b, f'layer 0 K90 {a}, layer 1 {b}'\n"
    )
    mini = load_write_up(directory)
    claim = next(c for c in mini.claims if c.predicate_name == "mini_first_below_second")
    assert claim.predicate(mini.tables) == (True, "layer 0 K90 22, layer 1 23")  # type: ignore[misc]
    before = mini.digest
    (directory / "predicates.py").write_text((directory / "predicates.py").read_text() + "# changed\n")
    assert load_write_up(directory).digest != before
    (tmp_path / "twice").mkdir()
    shutil.copytree(directory, tmp_path / "twice" / "w")
    with pytest.raises(ValueError, match="predicate 'mini_first_below_second' is registered by .* and again by"):
        load_write_up(tmp_path / "twice" / "w")


def test_one_section_runs_alone_by_its_marker(tmp_path):
    import os
    import subprocess
    import sys

    args = ["claims/test_claims.py", "--model", "tiny-wikitext", "--write-up", str(MINI), "--collect-only", "-q"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-m", "mini"],
        cwd=ROOT,
        env={**os.environ, "DPHI_CACHE_DIR": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    assert done.returncode == 0 and len(ids) == 8, done.stdout[-2000:]
    assert all("mini-" in i for i in ids) and any(i.startswith("claims/test_claims.py::test_sentence[") for i in ids)


def test_a_python_predicate_takes_the_write_ups_set_up_and_tolerances_not_exp7s():
    """A predicate with a `document` parameter gets the write-up's document bound at load: its set-up
    (thousand_positions) and its tolerances (inner_about_half's ratio band)."""
    from dataclasses import replace

    from lib.writeup.claims import CLAIMS_FILE, load_claims
    from lib.writeup.document import DOCUMENT

    other = replace(
        DOCUMENT,
        setup=replace(DOCUMENT.setup, n_tokens=60),
        tolerances={**DOCUMENT.tolerances, "ratio": {**DOCUMENT.tolerances["ratio"], "rtol": 0.5}},
    )
    mine = {c.id: c for c in load_claims(CLAIMS_FILE, other)}
    exp7 = {c.id: c for c in EXP7_WRITE_UP.claims}
    config = {**DOCUMENT.tables["config"], "n_tokens": 60, "dataset_revision": DOCUMENT.setup.dataset_revision}
    positions = "setup-1000-positions"
    assert mine[positions].predicate({"config": config})[0] and not exp7[positions].predicate({"config": config})[0]
    tables = {**DOCUMENT.tables, "attn_ffn": [{**r, "ratio": 0.3} for r in DOCUMENT.tables["attn_ffn"]]}
    half = "7E-inner-about-half"
    assert "range 0.21-" in mine[half].predicate(tables)[1] and "range 0.34-" in exp7[half].predicate(tables)[1]


def test_the_catalogue_of_another_write_up_is_its_own():
    from lib.writeup import catalogue

    page = catalogue.markdown(load_write_up(MINI))
    assert "## Four sentences about the embedded model" in page and "## Components of the first layer" in page
    assert "`all(attn_ffn.attn_k90 < attn_ffn.ffn_k90)`" in page and "| contradicted |" in page
    assert "7A-norm-rises-with-depth" not in page and "exp7/claims.toml" not in page
    rows = catalogue.listing(write_up=load_write_up(MINI))
    assert [r[0] for r in rows if r[1] == "mini"] == [c.id for c in load_write_up(MINI).claims_in("mini")]


def test_python_m_lib_claims_lists_another_write_up_and_its_own_sections(capsys):
    from lib.cli import main

    assert main(["claims", "--write-up", str(MINI)]) == 0
    listed = capsys.readouterr().out
    assert "mini-attention-fewer-than-ffn" in listed and "7B-not-low-rank" not in listed
    assert main(["claims", "--write-up", str(MINI), "--section", "mini"]) == 0
    only = capsys.readouterr().out
    assert "mini-attention-fewer-than-ffn" in only and "mini-first-layer-fewer-components" not in only
    assert main(["claims", "--write-up", str(MINI), "--section", "8A"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --section '8A' is not a section of this write-up; allowed: 7A, 7B, mini"]


def test_python_predicates_accept_what_the_judged_write_ups_cells_accept():
    """A sentence restating cells accepts what the judged write-up's cells accept (its [tolerances]),
    not exp7's module constants; a write-up without that kind of tolerance cannot decide it."""
    import copy
    import dataclasses

    import pytest

    from lib.writeup.document import DOCUMENT, DOCUMENT_TABLES
    from lib.writeup.predicates.restated import layer2_ffn_k1, layer11_attn_3
    from lib.writeup.roles import NotApplicable

    tables = copy.deepcopy(DOCUMENT_TABLES)
    tables["attn_ffn"][-1]["attn_k90"] = 3 + int(DOCUMENT.tolerances["k"]["atol"])  # exp7's cell accepts it
    tables["attn_ffn"][2]["ffn_k90"] = 1 + int(DOCUMENT.tolerances["k"]["atol"])
    exact = {**DOCUMENT.tolerances, "k": {**DOCUMENT.tolerances["k"], "atol": 0}}
    strict = dataclasses.replace(DOCUMENT, tolerances=exact)
    assert layer11_attn_3(tables)[0] and not layer11_attn_3(tables, strict)[0]
    assert layer2_ffn_k1(tables)[0] and not layer2_ffn_k1(tables, strict)[0]
    with pytest.raises(NotApplicable, match="the write-up gives no 'k' tolerance"):
        layer11_attn_3(tables, dataclasses.replace(DOCUMENT, tolerances={}))
