"""Baselines that tell noise from change: with --bootstrap, a changed verdict fails only beyond
noise (stable in both results), a cell moves when the two 95% intervals do not overlap; UNSTABLE marks."""

from __future__ import annotations

import json
from pathlib import Path

from lib.report.compare import main
from lib.report.rows import Row
from lib.report.summary import unstable
from lib.writeup.judge import Status, Verdict


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps({"meta": {"complete": True}, "runs": {}, "rows": rows}))
    return path


def _row(claim: str, verdict: str, stability: float | None = None, kind: str = "measured", **more: object) -> dict:
    row = {"claim": claim, "kind": kind, "run": "m-w0", "verdict": verdict, "measured": "m"}
    return {**row, "stability": stability, **more}


def test_a_flip_within_noise_passes_and_one_beyond_noise_fails(tmp_path, capsys):
    before = _write(tmp_path / "a.json", [_row("c1", "holds", 0.99), _row("c2", "holds", 0.6)])
    noisy = _write(tmp_path / "b.json", [_row("c1", "holds", 0.99), _row("c2", "does not hold (xfail)", 0.97)])
    real = _write(tmp_path / "c.json", [_row("c1", "does not hold (xfail)", 0.98), _row("c2", "holds", 0.6)])
    assert main(str(before), str(noisy)) == 0  # c2 was unstable in the baseline: within noise
    assert "within noise" in capsys.readouterr().out
    assert main(str(before), str(noisy), strict=True) == 1  # --strict-baseline: every change fails
    assert main(str(before), str(real)) == 1  # c1 stable in both: beyond noise
    assert "beyond noise" in capsys.readouterr().out


def test_a_baseline_without_a_bootstrap_compares_as_before_and_says_so(tmp_path, capsys):
    before = _write(tmp_path / "a.json", [_row("c1", "holds")])
    after = _write(tmp_path / "b.json", [_row("c1", "does not hold (xfail)", 0.3)])
    assert main(str(before), str(after)) == 1
    assert "the baseline has no bootstrap" in capsys.readouterr().out


def test_a_cell_moves_when_its_intervals_do_not_overlap(tmp_path, capsys):
    cell = {"kind": "cell", "claim": "7A-mean_norm-layer-0"}  # tolerance: 5%
    before = _write(tmp_path / "a.json", [_row(**cell, verdict="holds", value=50.0, interval=[45.0, 55.0])])
    inside = _write(tmp_path / "b.json", [_row(**cell, verdict="holds", value=54.0, interval=[50.0, 58.0])])
    apart = _write(tmp_path / "c.json", [_row(**cell, verdict="holds", value=50.5, interval=[55.5, 60.0])])
    main(str(before), str(inside))
    assert "cells that moved beyond their tolerance: 0" in capsys.readouterr().out  # 8% apart, within noise
    main(str(before), str(apart))
    assert "cells that moved beyond their tolerance: 1" in capsys.readouterr().out  # 1% apart, intervals apart


def test_unstable_marks_a_claim_that_holds_in_too_few_replicates():
    def row(status: Status, stability: float | None) -> Row:
        return Row("c", "7A", "measured", run="m-w0", verdict=Verdict(status), stability=stability)

    assert unstable(row(Status.HOLDS, 0.9)) and not unstable(row(Status.HOLDS, 0.95))
    assert not unstable(row(Status.DOES_NOT_HOLD, 0.5)) and not unstable(row(Status.HOLDS, None))


def test_every_judged_claim_of_the_embedded_model_has_a_stability(tmp_path):
    """`pytest claims/ --bootstrap R`: every cell and sentence judged on the run carries its stability,
    every cell shown its 95% interval (in the JSON and beside the value in the report), and
    `python -m lib tables --bootstrap R --json` writes the key `intervals` parallel to the tables."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DPHI_CACHE_DIR": str(tmp_path / "cache")}
    out, report, tables = tmp_path / "claims.json", tmp_path / "report.md", tmp_path / "tables.json"
    args = ["--model", "tiny-wikitext", "--device", "cpu", "--bootstrap", "10"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "claims/", *args, "--claims-xfail", "-p", "no:cacheprovider", "-q"]
        + ["--claims-json", str(out), "--claims-report", str(report)],
        cwd=root, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    rows = json.loads(out.read_text())["rows"]
    judged = [r for r in rows if r["kind"] in ("cell", "measured") and not r["verdict"].startswith("skipped")]
    assert judged and all(0.0 <= r["stability"] <= 1.0 for r in judged)
    shown = [r for r in rows if r["kind"] == "cell" and r["value"] is not None]
    assert shown and all(r["interval"][0] <= r["interval"][1] for r in shown)
    assert "14.45 [" in report.read_text()  # layer 0's mean norm, its interval beside it
    cmd = [sys.executable, "-m", "lib", "tables", *args, "--json", str(tables)]
    assert subprocess.run(cmd, cwd=root, env=env, capture_output=True, timeout=900).returncode == 0
    data = json.loads(tables.read_text())
    assert (
        len(data["intervals"]["norms"]) == len(data["norms"]) and len(data["intervals"]["norms"][0]["mean_norm"]) == 2
    )


def test_the_stability_is_printed_beside_unstable_and_the_interval_names_its_kind():
    from lib.report.markdown import bootstrap_legend, mark
    from lib.report.terminal import entry

    row = Row("c", "7B", "cell", run="m-w0", verdict=Verdict(Status.HOLDS), stability=0.71, value=22.0)
    row.interval, row.interval_kind, row.sd = [21, 22], "prediction", 0.5
    assert mark(row) == "holds (UNSTABLE, stability 0.71)"
    shown = "\n".join(entry(row, 120))
    assert "95 percent prediction interval [21, 22], sd 0.5" in shown and "stability 0.71 (UNSTABLE)" in shown
    assert "95 percent prediction interval" in bootstrap_legend([row])
    assert Row.from_json(row.to_json()).interval_kind == "prediction"
