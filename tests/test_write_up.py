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
    assert mini.section_ids == ("7A", "7B", "mini") and mini.title("mini") == "Four sentences about the embedded model"
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

    out = tmp_path / "claims.json"
    args = ["claims/", "--model", "tiny-wikitext", "--device", "cpu", "--write-up", str(MINI), "--claims-xfail"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--claims-json", str(out), "-p", "no:cacheprovider", "-q"],
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
        ("mini-last-layer-largest-norm", "measured"): "does not hold (xfail)",
        ("mini-last-layer-largest-norm", "document"): "contradicted by the document",
        ("mini-k90-grows-after-layer-1", "measured"): "holds",
        ("mini-k90-grows-after-layer-1", "document"): "overstated by the document: " + OVERSTATED,
        ("mini-k64-ratio-below-2", "measured"): "holds",
        ("mini-k64-ratio-below-2", "document"): "holds",
    }


def test_the_fragility_digest_is_the_same_in_every_process():
    """The digest keying cached fragility rows is read from text (claims, cells, the deciding code's
    source), never from object reprs that print memory addresses: two processes agree."""
    import subprocess
    import sys

    code = "from lib.fragility.search import claims_digest; print(claims_digest())"
    digests = {
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True).stdout for _ in "ab"
    }
    assert len(digests) == 1 and len(digests.pop().strip()) == 16


def test_the_fragility_digest_follows_the_write_up():
    from lib.fragility.search import claims_digest

    assert claims_digest(load_write_up(MINI)) != claims_digest(EXP7_WRITE_UP)
