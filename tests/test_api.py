"""The Python API (lib.run, docs/python-api.md): the same verdicts as the claims suite, in a notebook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lib
import lib.api
import lib.writeup.judge
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


def test_a_notebook_gets_frames_tensors_and_a_short_repr(cache):
    """to_pandas() with a column per thing a user filters on, each table as a DataFrame, the captured Δφ
    as tensors from the cache, and a repr of one line."""
    result = lib.run(model="tiny-wikitext", device="cpu", cache_dir=str(cache), bootstrap=3)
    frame = result.to_pandas()
    assert list(frame.columns) == list(lib.api.COLUMNS)
    sentences = frame[frame.kind == "measured"]
    assert (sentences.sentence.str.len() > 0).all()
    assert set(frame.status.dropna()) <= {s.value for s in lib.writeup.judge.Status}
    held = frame[frame.status == "holds"]
    assert len(held) and held.holds.all()
    cells = frame[(frame.kind == "cell") & frame.interval_lo.notna()]
    assert len(cells) and (cells.interval_lo <= cells.interval_hi).all()

    pca = result.table("layer_pca")
    assert list(pca.layer) == list(range(6)) and {"k50", "k90"} <= set(pca.columns)
    assert result.table("shared_pca").shape[0] == 1
    with pytest.raises(KeyError, match="no table 'layer_pac'"):
        result.table("layer_pac")

    total, attn, ffn = (result.delta_phi(layer=2, write=w) for w in ("delta_phi", "attn", "ffn"))
    assert total.shape == (1000, 128) and attn.shape == ffn.shape == total.shape
    norms = total.double().norm(dim=-1)
    assert abs(norms.mean().item() - pca_norm(result, 2)) < 1e-4 * pca_norm(result, 2)
    with pytest.raises(ValueError, match="write .mlp. is not allowed; allowed: delta_phi, attn, ffn"):
        result.delta_phi(write="mlp")
    with pytest.raises(ValueError, match="layer 6 is not allowed"):
        result.delta_phi(layer=6)

    shown = repr(result)
    assert "\n" not in shown and len(shown) < 200 and shown.startswith("Results(1 run(s): tiny-wikitext-w0;")


def pca_norm(result: lib.api.Results, layer: int) -> float:
    return next(r["mean_norm"] for r in result.tables["tiny-wikitext-w0"]["norms"] if r["layer"] == layer)


def test_the_api_page_lists_every_option_lib_run_takes():
    from lib.setup.options import OPTIONS

    page = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    missing = [o.key for o in OPTIONS if f"`{o.key}`" not in page]
    assert not missing, f"docs/python-api.md does not list {missing}"
    for keyword in ("baseline", "strict_baseline"):
        assert f"`{keyword}`" in page
