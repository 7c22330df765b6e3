"""Results over time: baselines, `python -m lib compare`, provenance, snapshots on another device
(lib/report/compare.py, lib/setup/provenance.py, lib/report/snapshot.py). The report's layout and
width: tests/test_report.py."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_claims_suite import ROOT, run_claims

from lib.report import snapshot
from lib.report.compare import load, main
from lib.setup.provenance import LIBRARIES, git_state, meta


def _write(path: Path, rows: list[dict], runs: dict | None = None) -> Path:
    path.write_text(json.dumps({"meta": {}, "runs": runs or {}, "rows": rows}))
    return path


def _row(claim: str, verdict: str, run: str = "m-w0", kind: str = "measured", value: float | None = None) -> dict:
    return {"claim": claim, "kind": kind, "run": run, "verdict": verdict, "measured": f"m of {claim}", "value": value}


# ---------------------------------------------------------------- baseline, end to end
@pytest.fixture(scope="module")
def small_args(make_model, text_file) -> list[str]:
    model = make_model(n_layer=4, d_model=32, seed=5)
    return ["--model", str(model), "--dataset", str(text_file), "--n-tokens", "60", "--device", "cpu"]


def test_baseline_with_a_planted_change_fails_and_names_it(tmp_path, small_args):
    tests = ["claims/test_claims.py", "-m", "7A or 7D", "--claims-xfail", *small_args]
    first = tmp_path / "first.json"
    out = run_claims(tmp_path, *tests, "--claims-json", str(first))
    assert out.returncode == 0, out.stdout[-3000:]
    data = json.loads(first.read_text())
    assert set(data) == {"meta", "runs", "rows"} and len(data["runs"]) == 1

    same = run_claims(tmp_path, *tests, "--claims-baseline", str(first))  # against its own result: passes
    assert same.returncode == 0, same.stdout[-3000:]
    assert "moved beyond their tolerance against the baseline" not in same.stdout

    planted = data["rows"]
    sentence = next(r for r in planted if r["kind"] == "measured" and r["verdict"] in ("holds", "does not hold"))
    before = sentence["verdict"]
    sentence["verdict"] = "holds" if before != "holds" else "does not hold"
    sentence["measured"] = "planted 123.456"
    cell = next(r for r in planted if r["kind"] == "cell" and r["value"])
    cell["value"] *= 1.5  # beyond every cell's tolerance (at most 20% relative)
    baseline = tmp_path / "planted.json"
    baseline.write_text(json.dumps(data))
    changed = run_claims(tmp_path, *tests, "--claims-baseline", str(baseline))
    assert changed.returncode == 1, changed.stdout[-3000:]
    failed = [line for line in changed.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and sentence["claim"] in failed[0], failed
    assert f"verdict changed against the baseline {baseline}" in changed.stdout
    assert (
        f"{sentence['verdict']!r} (measured planted 123.456) -> {before!r}" in changed.stdout
    )  # both verdicts, both values
    assert "cells that moved beyond their tolerance against the baseline: 1" in changed.stdout
    assert re.search(rf"{re.escape(cell['claim'])} \(.*\): [-\d.e+]+ -> [-\d.e+]+ \(-33\.33%\)", changed.stdout)

    assert run_claims(tmp_path, *tests, "--claims-baseline", str(tmp_path / "absent.json")).returncode == 4  # usage


def test_claims_xfail_is_presentation_not_a_verdict(tmp_path, small_args, capsys):
    """A result kept without --claims-xfail and one with it hold the same verdicts ("does not hold" is
    the verdict; xfail is how pytest shows it): the baseline compares clean, compare lists the flag as
    presentation."""
    tests = ["claims/test_claims.py", "-m", "7A or 7D", *small_args]
    strict, lenient = tmp_path / "strict.json", tmp_path / "lenient.json"
    out = run_claims(tmp_path, *tests, "--claims-json", str(strict))
    assert out.returncode == 1, out.stdout[-3000:]  # claims that do not hold fail without the flag
    rows = json.loads(strict.read_text())["rows"]
    assert any(r["verdict"] == "does not hold" for r in rows) and not any(r["verdict"] == "fails" for r in rows)
    out = run_claims(
        tmp_path, *tests, "--claims-xfail", "--claims-json", str(lenient), "--claims-baseline", str(strict)
    )
    assert out.returncode == 0, out.stdout[-3000:]
    assert "0 verdict(s) changed" in out.stdout
    assert main(str(strict), str(lenient)) == 0
    printed = capsys.readouterr().out
    shown = next(line for line in printed.splitlines() if line.startswith("presentation options that differ"))
    assert "claims_xfail: False -> True" in shown
    assert "\noptions that differ" not in printed  # nothing that decides a verdict differs


# ---------------------------------------------------------------- python -m lib compare
def test_compare_exit_codes(tmp_path, capsys):
    a = _write(tmp_path / "a.json", [_row("c1", "holds"), _row("c2", "fails"), _row("d1", "holds", "", "document")])
    same = _write(
        tmp_path / "same.json", [_row("c1", "holds"), _row("c2", "fails"), _row("d1", "holds", "", "document")]
    )
    skipped_other_reason = _write(tmp_path / "s.json", [_row("c1", "holds"), _row("c2", "fails: other words")])
    changed = _write(tmp_path / "b.json", [_row("c1", "does not hold"), _row("c2", "fails")])
    assert main(str(a), str(same)) == 0
    # a verdict is its class, not its reason's wording; the baseline's d1 has no counterpart there
    assert main(str(a), str(skipped_other_reason), allow_unmatched=True) == 0
    assert main(str(a), str(skipped_other_reason)) == 1 and "d1 [document]" in capsys.readouterr().out
    assert main(str(a), str(changed)) == 1
    out = capsys.readouterr().out
    assert (
        "changed verdicts: 1" in out
        and "c1 [measured, m-w0]: verdict 'holds' in the baseline, 'does not hold' now" in out
    )
    assert main(str(a), str(tmp_path / "missing.json")) == 2
    (tmp_path / "bad.json").write_text('{"rows": 3}')
    assert main(str(a), str(tmp_path / "bad.json")) == 2
    assert "bad.json" in capsys.readouterr().err

    command = [sys.executable, "-m", "lib", "compare"]
    done = subprocess.run([*command, str(a), str(changed)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout.index("changed verdicts") < done.stdout.index("cells that moved")
    done = subprocess.run([*command, str(a), str(same)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compare_matches_runs_by_label_or_the_only_run(tmp_path, capsys):
    one = _write(tmp_path / "one.json", [_row("c1", "holds", "gpt2-w0")])
    other_model = _write(tmp_path / "other.json", [_row("c1", "fails", "pythia-w0")])
    assert main(str(one), str(other_model)) == 1  # one run each: compared whatever the labels
    assert "gpt2-w0 -> pythia-w0" in capsys.readouterr().out
    two = _write(tmp_path / "two.json", [_row("c1", "holds", "a-w0"), _row("c1", "fails", "a-w1")])
    swapped = _write(tmp_path / "swap.json", [_row("c1", "fails", "a-w1"), _row("c1", "holds", "a-w0")])
    assert main(str(two), str(swapped)) == 0  # several runs: matched by label, not by position
    crossed = _write(tmp_path / "cross.json", [_row("c1", "fails", "a-w0"), _row("c1", "holds", "a-w1")])
    assert main(str(two), str(crossed)) == 1


def test_compare_reports_cells_beyond_their_own_tolerance(tmp_path, capsys):
    # 7A-mean_norm-layer-0: rtol 0.05 (lib/writeup/claims.py)
    base = _write(tmp_path / "a.json", [_row("7A-mean_norm-layer-0", "skipped: not judged", kind="cell", value=10.0)])
    inside = _write(tmp_path / "b.json", [_row("7A-mean_norm-layer-0", "skipped: x", kind="cell", value=10.4)])
    beyond = _write(tmp_path / "c.json", [_row("7A-mean_norm-layer-0", "skipped: x", kind="cell", value=10.6)])
    assert main(str(base), str(inside)) == 0 and "cells that moved beyond their tolerance: 0" in capsys.readouterr().out
    assert main(str(base), str(beyond)) == 0  # a moved cell is reported, it does not change the exit code
    assert "7A-mean_norm-layer-0 [cell, m-w0]: 10 -> 10.6 (+6.00%), beyond rtol=0.05" in capsys.readouterr().out


def test_a_bare_list_from_before_provenance_still_loads(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps([_row("c1", "holds")]))
    result = load(path)
    assert result.meta == {} and result.run_labels == ["m-w0"]


# ---------------------------------------------------------------- provenance
def test_meta_names_versions_commit_date_device_and_options(tmp_path):
    block = meta({"model": "m"})
    assert set(block["versions"]) == {"python", *LIBRARIES}
    assert re.fullmatch(r"[0-9a-f]{40}", block["git"]["commit"]) and isinstance(block["git"]["dirty"], bool)
    assert block["date"].endswith("+00:00") and block["device"].startswith(("cpu", "cuda", "mps"))
    assert block["options"] == {"model": "m"}
    outside = git_state(tmp_path)  # not a checkout: says so instead of failing
    assert outside["commit"].startswith("unknown: ") and outside["dirty"] is None


def test_an_untracked_output_file_does_not_mark_the_checkout_dirty(tmp_path):
    """A figure or claims JSON written into the checkout is untracked: the commit is not "modified"; an
    edited tracked file is."""
    import subprocess

    git = lambda *args: subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    (tmp_path / "figure.png").write_bytes(b"png")
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path)["dirty"] is True


# ---------------------------------------------------------------- snapshots on another device
LAYER = {"layer": 3, "k50": 10, "k90": 40, "mean_norm": 17.6}


@pytest.mark.parametrize(
    "measured,within",
    [
        ({**LAYER, "mean_norm": 17.6 * (1 + 5e-4)}, True),  # float32 kernels: ~1e-5, amplified
        ({**LAYER, "mean_norm": 17.6 * 1.01}, False),
        ({**LAYER, "k90": 42}, True),  # K moves by up to 2 where the variance curve is flat
        ({**LAYER, "k90": 43}, False),
        ({**LAYER, "layer": 4}, False),  # a row index is exact
    ],
)
def test_device_tolerance(measured, within):
    found = snapshot.device_difference({"layer_pca": [LAYER]}, {"layer_pca": [measured]})
    assert (found is None) is within, found
    if not within:
        assert found.startswith(".layer_pca[0].")


def test_attn_ffn_ratio_moves_as_far_as_its_ks_allow():
    row = {"layer": 0, "attn_k90": 10, "ffn_k90": 20, "ratio": 0.5}
    assert snapshot.device_difference(row, {**row, "attn_k90": 12, "ratio": 0.6}) is None
    assert snapshot.device_difference(row, {**row, "attn_k90": 12, "ratio": 0.9}) is not None


def test_a_run_on_another_device_finds_the_cpu_snapshot(monkeypatch, tmp_path, make_model, make_config, text_file):
    monkeypatch.setattr(snapshot, "SNAPSHOTS", tmp_path)
    cpu = make_config(make_model(n_layer=1), text_file, n_tokens=20)
    assert cpu.device == "cpu"
    mps = dataclasses.replace(cpu, device="mps")
    assert mps.run_id != cpu.run_id and snapshot.cpu_snapshot(mps, "t[x]") is None  # none committed
    file = tmp_path / cpu.run_id / "test_snapshots" / "t[x].json"
    file.parent.mkdir(parents=True)
    file.write_text("{}")
    assert snapshot.cpu_snapshot(mps, "t[x]") == file
    assert snapshot.cpu_snapshot(cpu, "t[x]") is None  # the CPU run uses its own


PRETEND_OTHER_DEVICE = """
import os
from pathlib import Path
import lib.report.snapshot

def cpu_snapshot(config, test_name):  # this machine has no accelerator: the CPU snapshots stand in another dir
    path = Path(os.environ["CPU_SNAPSHOTS"]) / config.run_id / "test_snapshots" / f"{test_name}.json"
    return path if path.is_file() else None

lib.report.snapshot.cpu_snapshot = cpu_snapshot
"""


def test_a_run_without_its_own_snapshots_is_checked_against_the_cpu_ones_and_says_so(tmp_path, small_args):
    """claims/test_snapshots.py's path for mps and cuda, on this CPU-only machine: the own snapshot directory
    is empty and lib.report.snapshot.cpu_snapshot (patched before the test module imports it) points at CPU ones."""
    (tmp_path / "pretend_device.py").write_text(PRETEND_OTHER_DEVICE)
    cpu = tmp_path / "cpu-snapshots"
    test = ["claims/test_snapshots.py", *small_args, "-p", "no:cacheprovider"]

    def pytest_run(snapshots: Path, *args: str) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "DPHI_CACHE_DIR": str(tmp_path / "cache"),
            "DPHI_SNAPSHOT_DIR": str(snapshots),
            "CPU_SNAPSHOTS": str(cpu),
            "PYTHONPATH": str(tmp_path),
        }
        cmd = [sys.executable, "-m", "pytest", *test, *args]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    assert pytest_run(cpu, "--snapshot-update").returncode == 0
    own = tmp_path / "own"  # empty: the run has no snapshot of its own
    out = pytest_run(own, "-p", "pretend_device", "--require-snapshots")
    assert out.returncode == 0, out.stdout[-3000:]
    said = " ".join(out.stdout.split())  # the summary's lines wrap at the terminal's width
    assert "compared with the CPU snapshot" in said and "within the device tolerance (rtol 0.001, K +-2)" in said
    norms = next(cpu.rglob("*-norms].json"))
    data = json.loads(norms.read_text())
    data["norms"][0]["mean_norm"] *= 1.01  # beyond the device tolerance
    norms.write_text(json.dumps(data))
    changed = pytest_run(own, "-p", "pretend_device")
    assert changed.returncode == 1 and "norms on cpu against the CPU snapshot" in changed.stdout
    assert ".norms[0].mean_norm: snapshot" in changed.stdout
