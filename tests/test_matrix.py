"""The run matrix (lib/setup/matrix.py): option lists, token windows, what runs share, and the cross-run report."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_claims_suite import run_claims

from lib.errors import ConfigError
from lib.report.markdown import markdown, sentences, window_spread
from lib.report.rows import Row
from lib.setup.corpus import hf_spec, resolve_dataset, select_tokens, window_text_tokens
from lib.setup.matrix import build_matrix, labels
from lib.setup.options import split
from lib.tables.run import Shared
from lib.writeup.judge import Verdict
from lib.writeup.write_up import EXP7_WRITE_UP


def _values(model: str, text: str, **overrides: object) -> dict:
    values = dict(model=model, dataset=text, n_tokens=40, device="cpu", numerics="raw", positions="all", pca="centred")
    values.update(overrides)
    return values


def test_split_keeps_order_drops_repeats_and_checks_each_value():
    assert split("model", " a, b,a ,") == ["a", "b"]
    assert split("numerics", "raw,compat") == ["raw", "compat"]
    with pytest.raises(ConfigError, match="--numerics 'exact' is not allowed; allowed: compat, raw"):
        split("numerics", "compat,exact")
    with pytest.raises(ConfigError, match="--model ' , ': expected one value or a comma-separated list"):
        split("model", " , ")


def test_runs_are_the_product_of_the_lists_times_the_windows(make_model, text_file):
    a, b = make_model(n_layer=1, seed=1), make_model(n_layer=1, seed=2)
    runs = build_matrix(_values(f"{a},{b}", str(text_file), numerics="raw,compat"), windows=3)
    assert len(runs) == 2 * 2 * 3
    assert len({r.key() for r in runs}) == 12  # every run its own cache entries and snapshots
    assert [r.window for r in runs[:3]] == [0, 1, 2]
    names = labels(runs)
    assert len(set(names)) == 12  # two directories of one name ("model...") are told apart
    with pytest.raises(ConfigError, match="--windows 0 is not allowed"):
        build_matrix(_values(str(a), str(text_file)), windows=0)


def test_window_zero_keeps_the_single_run_keys(make_model, text_file):
    """Adding windows must not move the cache entries and snapshots of existing single-window runs."""
    run = build_matrix(_values(str(make_model(n_layer=1)), str(text_file)))[0]
    assert "window" not in run.identity() and "-w" not in run.run_id


@given(
    n_tokens=st.integers(2, 60),
    n_ctx=st.integers(2, 17),
    positions=st.sampled_from(["all", "text"]),
    windows=st.integers(1, 4),
)
def test_windows_are_disjoint_start_with_bos_and_window_zero_is_the_write_ups(n_tokens, n_ctx, positions, windows):
    text = list(range(1, 400))  # BOS is 0; text tokens are distinct
    first = select_tokens(text, 0, n_tokens, n_ctx, positions)
    seen: set[int] = set()
    for w in range(windows):
        sel = select_tokens(text, 0, n_tokens, n_ctx, positions, window=w)
        if w == 0:
            assert [c.tolist() for c in sel.chunks] == [c.tolist() for c in first.chunks]
        assert sel.n_positions == n_tokens and all(int(c[0]) == 0 for c in sel.chunks)
        used = [int(t) for c in sel.chunks for t in c[1:]]
        assert len(used) == window_text_tokens(n_tokens, n_ctx, positions)
        assert not seen & set(used)  # no text token in two windows
        if w:
            assert min(used) == max(seen) + 1  # window w follows window w-1
        seen |= set(used)


def test_too_many_windows_say_how_many_fit():
    with pytest.raises(ConfigError, match=r"--windows 4 with --n-tokens 50: .* at most 3 windows fit"):
        select_tokens(list(range(1, 160)), 0, 50, 20, "all", window=3)


def test_hf_dataset_spec_and_offline_skip(monkeypatch):
    assert hf_spec("hf:Salesforce/wikitext:wikitext-103-raw-v1:validation:text") == (
        "Salesforce/wikitext",
        "wikitext-103-raw-v1",
        "validation",
        "text",
    )
    assert hf_spec("hf:imdb") == ("imdb", None, "test", "text")
    with pytest.raises(ConfigError, match="expected hf:NAME"):
        hf_spec("hf:")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    location, revision = resolve_dataset("hf:no-such-org/no-such-dataset")
    assert location == "hf:no-such-org/no-such-dataset"
    assert revision.startswith("unavailable: dataset 'hf:no-such-org/no-such-dataset' is not in the `datasets` cache")


def test_a_model_is_loaded_once_per_model_and_numerics(make_model, text_file, monkeypatch):
    import lib.measure.models

    loads = []
    real = lib.measure.models.load_model
    monkeypatch.setattr(lib.measure.models, "load_model", lambda config: loads.append(config) or real(config))
    shared = Shared()
    runs = build_matrix(_values(str(make_model(n_layer=1)), str(text_file), numerics="raw,compat"), windows=2)
    bridges = [shared.bridge(r) for r in runs]
    assert len(loads) == 2 and bridges[0] is bridges[1] and bridges[0] is not bridges[2]
    ids = [shared.text_ids(r, bridges[i].tokenizer) for i, r in enumerate(runs)]
    assert all(i is ids[0] for i in ids)  # one tokenization of the text


def _rows() -> list[Row]:
    rows = []
    for run, value, verdict in (
        ("m-w0", 10.0, "holds"),
        ("m-w1", 12.0, "does not hold"),
        ("n-w0", 5.0, "holds"),
    ):
        rows.append(
            Row(
                "7A-mean_norm-layer-0",
                "7A",
                "cell",
                "50.4",
                f"{value:g}",
                run=run,
                value=value,
                verdict=Verdict.from_text("skipped: not judged"),
            )
        )
        rows.append(
            Row("7A-last-layer-largest", "7A", "measured", "last 354", "x", run=run, verdict=Verdict.from_text(verdict))
        )
    return rows


def test_a_sentence_row_counts_the_runs_where_it_holds():
    lines = sentences(_rows(), ["m-w0", "m-w1", "n-w0"])
    row = next(line for line in lines if line.startswith("| 7A-last-layer-largest"))
    assert row.endswith("| last 354 | holds: x | does not hold: x | holds: x | 2 of 3 runs |")  # no document row here


def test_window_spread_of_a_cell_beside_the_documents_value():
    runs = {"m-w0": {"group": "m"}, "m-w1": {"group": "m"}, "n-w0": {"group": "n"}}
    lines = window_spread(_rows(), runs)
    assert lines[2] == "| 7A-mean_norm-layer-0 | m | 2 | 50.4 | 11 | 1.41 | 10–12 |"
    assert len(lines) == 3  # n has one window: no spread
    text = markdown(_rows(), runs, EXP7_WRITE_UP, "report.png")
    assert "| holds in |" in text and "![write-up vs measured](report.png)" in text


def test_json_rows_carry_what_the_issue_asks():
    data = json.loads(json.dumps([r.to_json() for r in _rows()]))
    assert {"claim", "section", "kind", "run", "document", "measured", "verdict"} <= set(data[0])
    assert data[0]["value"] == 10.0


def test_claims_across_models_and_windows_in_one_session(tmp_path, make_model, text_file):
    """Two models x two windows: every claim reported in each of the 4 runs, values shown where not judged."""
    a, b = make_model(n_layer=4, d_model=32, seed=3), make_model(n_layer=4, d_model=32, seed=4)
    report, figure = tmp_path / "r.json", tmp_path / "r.md"
    out = run_claims(
        tmp_path,
        "claims/test_claims.py",
        "-m",
        "7A or conclusions",
        "--model",
        f"{a},{b}",
        "--dataset",
        str(text_file),
        "--n-tokens",
        "40",
        "--windows",
        "2",
        "--device",
        "cpu",
        "--claims-xfail",
        "--claims-json",
        str(report),
        "--claims-report",
        str(figure),
        "-k",
        "not snapshot",
    )
    assert out.returncode == 0, out.stdout[-3000:]
    rows = json.loads(report.read_text())["rows"]
    runs = {r["run"] for r in rows if r["run"]}
    assert len(runs) == 4
    per_run = {run: {r["claim"] for r in rows if r["run"] == run} for run in runs}
    assert len({frozenset(c) for c in per_run.values()}) == 1  # the same claims in every run
    cell = next(r for r in rows if r["claim"] == "7A-mean_norm-layer-0")
    assert cell["value"] is not None and cell["verdict"].startswith("skipped: not judged")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Table cells across token windows" in figure.read_text()


def test_windows_that_do_not_fit_stop_the_command_before_any_capture(make_model, text_file, tmp_path):
    import subprocess
    import sys

    from test_claims_suite import ROOT

    cmd = [
        sys.executable,
        "-m",
        "lib",
        "tables",
        "--model",
        str(make_model(n_layer=1)),
        "--dataset",
        str(text_file),
        "--n-tokens",
        "40",
        "--windows",
        "500",
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--windows 500 with --n-tokens 40" in done.stderr and "windows fit" in done.stderr
    assert not list((tmp_path / "c").glob("capture-*"))  # nothing computed
