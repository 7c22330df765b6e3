"""Progress on long work (lib/setup/progress.py): a bar on a terminal, one line per stage elsewhere,
nothing when quiet; end to end on a cold `python -m lib tables`."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lib.setup import progress

ROOT = Path(__file__).resolve().parent.parent


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch):
    def make(tty: bool) -> _Stream:
        stream = _Stream(tty)
        monkeypatch.setattr(sys, "stderr", stream)
        return stream

    monkeypatch.setattr(progress, "QUIET", False)
    return make


def test_off_a_terminal_a_stage_ends_in_one_line(stderr):
    out = stderr(tty=False)
    assert list(progress.progress("capture Δφ")([1, 2, 3])) == [1, 2, 3]
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dphi: capture Δφ: 3 steps in ") and lines[0].endswith(" s")


def test_on_a_terminal_a_bar_that_stays(stderr):
    out = stderr(tty=True)
    assert list(progress.progress("7D low-rank passes")(range(4))) == [0, 1, 2, 3]
    assert "dphi: 7D low-rank passes" in out.getvalue() and "4/4" in out.getvalue()


def test_quiet_shows_nothing(stderr, monkeypatch):
    out = stderr(tty=False)
    monkeypatch.setattr(progress, "QUIET", True)
    assert list(progress.progress("capture Δφ")([1])) == [1]
    assert out.getvalue() == ""


def test_a_cold_tables_run_shows_each_long_stage_and_quiet_hides_them(make_model, text_file, tmp_path):
    model = make_model(n_layer=2, d_model=32, seed=3)
    command = [sys.executable, "-m", "lib", "tables", "--model", str(model), "--dataset", str(text_file)]
    command += ["--n-tokens", "60", "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cold = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert cold.returncode == 0, cold.stderr[-2000:]
    stages = [line for line in cold.stderr.splitlines() if re.match(r"dphi: .*: \d+ steps? in [\d.]+ s$", line)]
    assert any(line.startswith("dphi: capture Δφ: ") for line in stages), cold.stderr
    assert any(line.startswith("dphi: 7D low-rank passes: ") for line in stages), cold.stderr
    analyses = subprocess.run(
        [*command, "--bootstrap", "2", "--bootstrap-block", "4", "--fragility"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert analyses.returncode == 0, analyses.stderr[-2000:]
    assert re.search(r"^dphi: bootstrap: 2 replicates: 2 steps in ", analyses.stderr, re.M), analyses.stderr
    assert re.search(r"^dphi: fragility search: \d+ claims and cells: \d+ steps in ", analyses.stderr, re.M)
    quiet = subprocess.run(
        [*command, "--refresh", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert quiet.returncode == 0 and not re.search(r": \d+ steps? in ", quiet.stderr), quiet.stderr
