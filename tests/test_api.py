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


def test_run_gives_the_claims_suites_verdicts(cache, tmp_path):
    result = lib.run(model="tiny-wikitext", device="cpu", cache_dir=str(cache))
    out = tmp_path / "claims.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "claims/", "--model", "tiny-wikitext", "--device", "cpu", "--claims-xfail"]
        + ["--claims-json", str(out), "-p", "no:cacheprovider", "-q"],
        cwd=ROOT,
        env={**os.environ, "DPHI_CACHE_DIR": str(cache)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    suite = {(r["claim"], r["kind"], r["run"]): r for r in json.loads(out.read_text())["rows"]}
    ours = {(r.id, r.kind, r.run): r.to_json() for r in result.rows}
    assert ours.keys() == suite.keys()
    for key, row in ours.items():
        expected = {k: v for k, v in suite[key].items() if k != "verdict"}
        assert {k: v for k, v in row.items() if k != "verdict"} == expected, key
        assert row["verdict"].split(":")[0] == suite[key]["verdict"].split(":")[0], key
    assert result.tables["tiny-wikitext-w0"]["norms"][0]["layer"] == 0
    frame = result.to_pandas()
    assert len(frame) == len(result.rows) and {"claim", "kind", "verdict", "run"} <= set(frame.columns)


def test_run_names_a_bad_value_before_any_model_work(cache):
    with pytest.raises(ConfigError, match="--positions 'some'"):
        lib.run(model="tiny-wikitext", device="cpu", positions="some", cache_dir=str(cache))
    with pytest.raises(ConfigError, match="unknown options"):
        lib.run(modle="tiny-wikitext", cache_dir=str(cache))
