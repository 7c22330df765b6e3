"""The Python API (lib.run, docs/python-api.md): the same verdicts as the claims suite, in a notebook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lib
from lib.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _suite_rows(cache: Path, out: Path, *flags: str) -> dict[tuple[str, str, str], dict]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "claims/", "--model", "tiny-wikitext", "--device", "cpu", "--claims-xfail"]
        + ["--claims-json", str(out), "-p", "no:cacheprovider", "-q", *flags],
        cwd=ROOT,
        env={**os.environ, "DPHI_CACHE_DIR": str(cache)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    return {(r["claim"], r["kind"], r["run"]): r for r in json.loads(out.read_text())["rows"]}


@pytest.mark.parametrize(
    ("options", "flags"),
    [({}, ()), ({"bootstrap": 3, "fragility": True}, ("--bootstrap", "3", "--fragility"))],
    ids=["plain", "bootstrap-fragility"],
)
def test_run_gives_exactly_the_claims_suites_rows(cache, tmp_path, options, flags):
    """One pipeline (lib/session.py): every row lib.run returns is the row pytest writes, field for field,
    intervals, stability and fragility included."""
    result = lib.run(model="tiny-wikitext", device="cpu", cache_dir=str(cache), **options)
    suite = _suite_rows(cache, tmp_path / "claims.json", *flags)
    ours = {(r.id, r.kind, r.run): r.to_json() for r in result.rows}
    assert ours.keys() == suite.keys()
    for key, row in ours.items():
        assert row == suite[key], key
    if options:
        assert any("interval" in r for r in ours.values()) and any("stability" in r for r in ours.values())
        assert any(r.get("fragility") for r in ours.values())
    assert result.tables["tiny-wikitext-w0"]["norms"][0]["layer"] == 0
    frame = result.to_pandas()
    assert len(frame) == len(result.rows) and {"claim", "kind", "verdict", "run"} <= set(frame.columns)


def test_run_judges_against_a_baseline_as_the_suite_does(cache, tmp_path):
    """lib.run(baseline=...) marks a changed verdict on its row, as --claims-baseline does."""
    kept = tmp_path / "before.json"
    before = lib.run(model="tiny-wikitext", device="cpu", cache_dir=str(cache))
    data = before.to_json()
    flipped = next(r for r in data["rows"] if r["kind"] == "measured" and r["verdict"] == "holds")
    flipped["verdict"] = "does not hold"
    kept.write_text(json.dumps(data))
    after = lib.run(model="tiny-wikitext", device="cpu", cache_dir=str(cache), baseline=str(kept))
    marked = [r for r in after.rows if r.baseline]
    assert [(r.id, r.kind, r.run) for r in marked] == [(flipped["claim"], "measured", flipped["run"])]
    assert marked[0].baseline.startswith("does not hold; measured")


def test_run_names_a_bad_value_before_any_model_work(cache):
    with pytest.raises(ConfigError, match="--positions 'some'"):
        lib.run(model="tiny-wikitext", device="cpu", positions="some", cache_dir=str(cache))
    with pytest.raises(ConfigError, match="unknown options"):
        lib.run(modle="tiny-wikitext", cache_dir=str(cache))
