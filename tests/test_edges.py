"""The edges a new user meets first: a model that cannot be had, output paths that cannot be written,
Ctrl-C, --version. Nothing lost, nothing silently green."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lib.tables.run
from lib.cli import main
from lib.setup.outputs import check_output, write_atomic

ROOT = Path(__file__).resolve().parent.parent


def _python(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DPHI_CACHE_DIR": str(cache), "COLUMNS": "200"}  # a temporary path on one line
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_mistyped_model_stops_pytest_with_a_usage_error_and_a_near_name(tmp_path):
    done = _python(
        "-m",
        "pytest",
        "claims/",
        "--model",
        "tiny-wikitex",
        "--device",
        "cpu",
        "-p",
        "no:cacheprovider",
        cache=tmp_path,
    )
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    assert "--model 'tiny-wikitex' cannot be had here" in done.stderr and "did you mean tiny-wikitext?" in done.stderr
    assert not re.search(r"\d+ passed", done.stdout)
    said = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("ERROR: --model 'tiny-wikitex'"), said  # one line, no header


def test_under_k_the_unavailable_run_is_decided_after_deselection(tmp_path):
    """-k may leave only the claims on the document's own tables, which need no model: then it runs."""
    done = _python(
        "-m", "pytest", "claims/", "--model", "tiny-wikitex", "--device", "cpu", "-k", "test_document",
        "-p", "no:cacheprovider", "-q", cache=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0 and re.search(r"\d+ passed", done.stdout), done.stdout[-2000:]


def test_skip_unavailable_brings_back_the_skips(tmp_path):
    done = _python(
        "-m", "pytest", "claims/test_claims.py", "-m", "7A", "--model", "tiny-wikitex", "--device", "cpu",
        "--skip-unavailable", "-p", "no:cacheprovider", "-q", cache=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0 and re.search(r"\d+ skipped", done.stdout), done.stdout[-2000:]
    assert not re.search(r"\d+ failed", done.stdout), done.stdout[-2000:]


def test_a_mistyped_model_is_an_error_of_the_command_too(tmp_path, capsys):
    assert main(["tables", "--model", "tiny-wikitex", "--device", "cpu", "--cache-dir", str(tmp_path)]) == 2
    assert "did you mean tiny-wikitext?" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["a directory", "under a file", "unwritable"])
def test_an_output_that_cannot_be_written_stops_the_command_before_any_model_work(where, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(lib.tables.run.Shared, "bridge", lambda *a: pytest.fail("the model was loaded"))
    (tmp_path / "file").write_text("")
    path = {"a directory": tmp_path, "under a file": tmp_path / "file" / "t.json", "unwritable": Path("/proc/t.json")}
    args = ["tables", "--model", "tiny-wikitext", "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--json", str(path[where])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --json {str(path[where])!r}"), err


def test_check_output_creates_the_directories_and_leaves_nothing_behind(tmp_path):
    out = check_output(tmp_path / "a" / "b" / "c.json", "--claims-json")
    assert out.parent.is_dir() and list(out.parent.iterdir()) == []


def test_an_interrupted_write_keeps_the_old_file_whole(tmp_path, monkeypatch):
    path = write_atomic(tmp_path / "r.json", "old")

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "new" * 1000)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_ctrl_c_in_the_command_is_one_line_and_exit_130(tmp_path):
    code = (
        "import runpy, lib.cli\n"
        "def interrupted(argv=None):\n    raise KeyboardInterrupt\n"
        "lib.cli.main = interrupted\n"
        "runpy.run_module('lib', run_name='__main__')\n"
    )
    done = _python("-c", code, cache=tmp_path)
    assert done.returncode == 130 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_version_names_the_package_and_the_commit(tmp_path):
    done = _python("-m", "lib", "--version", cache=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("dphi-claims ") and "commit " in done.stdout


@pytest.fixture(scope="module")
def embedded_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the embedded model's claims runs below (its tables computed once)."""
    return tmp_path_factory.mktemp("embedded-cache")


def _claims(cache: Path, *args: str) -> subprocess.CompletedProcess:
    base = ["-m", "pytest", "--model", "tiny-wikitext", "--device", "cpu", "-p", "no:cacheprovider", "-q"]
    return _python(*base, *args, cache=cache)


def test_a_claims_output_that_cannot_be_written_is_a_usage_error_before_any_model_work(tmp_path):
    done = _claims(tmp_path / "cache", "claims/test_claims.py", "-m", "7A", "--claims-json", str(tmp_path))
    assert done.returncode == 4 and f"--claims-json {str(tmp_path)!r} is a directory" in done.stderr, done.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("capture-*"))


def test_an_interrupted_session_marks_its_json_incomplete_and_a_baseline_refuses_it(embedded_cache, tmp_path):
    """-x stops the session at its first failing claim (as Ctrl-C would, sooner): the JSON it writes says
    `complete: false`, and neither --claims-baseline nor compare takes it."""
    stopped = tmp_path / "stopped.json"
    done = _claims(embedded_cache, "claims/test_claims.py", "-m", "7A", "-x", "--claims-json", str(stopped))
    assert done.returncode == 1, done.stdout[-2000:]
    assert json.loads(stopped.read_text())["meta"]["complete"] is False
    again = _claims(embedded_cache, "claims/test_claims.py", "-m", "7A", "--claims-baseline", str(stopped))
    assert again.returncode == 4 and "is incomplete" in again.stderr, again.stderr
    assert main(["compare", str(stopped), str(stopped)]) == 2


def test_baseline_rows_without_a_counterpart_fail_unless_allowed(embedded_cache, tmp_path):
    whole, part = tmp_path / "whole.json", tmp_path / "part.csv"
    args = ["claims/test_claims.py", "-m", "7A", "--claims-xfail"]
    done = _claims(embedded_cache, *args, "--claims-json", str(whole), "--claims-csv", str(part))
    assert done.returncode == 0 and json.loads(whole.read_text())["meta"]["complete"] is True, done.stdout[-2000:]
    rows = json.loads(whole.read_text())["rows"]
    assert len(part.read_text().splitlines()) == len(rows) + 1 and part.read_text().startswith("section,kind")
    same = _claims(embedded_cache, *args, "--claims-baseline", str(whole))
    flat = " ".join(same.stdout.split())  # the line, wrapped to the terminal, then pytest's own totals
    ending = flat[flat.rindex(f"baseline {whole}:") :]
    assert same.returncode == 0 and ending.startswith(f"baseline {whole}: {len(rows)} row(s) compared, 0 verdict")
    assert ending.split("tolerance ")[1].startswith("3 passed"), ending
    data = json.loads(whole.read_text())
    data["rows"].append({**data["rows"][0], "claim": "a-claim-since-removed"})
    whole.write_text(json.dumps(data))
    unmatched = _claims(embedded_cache, *args, "--claims-baseline", str(whole))
    assert unmatched.returncode == 1 and "a-claim-since-removed" in unmatched.stdout, unmatched.stdout[-2000:]
    allowed = _claims(embedded_cache, *args, "--claims-baseline", str(whole), "--allow-unmatched")
    assert allowed.returncode == 0, allowed.stdout[-2000:]
    assert main(["compare", str(whole), str(whole)]) == 0


def test_compare_names_the_options_the_two_results_differ_in(tmp_path, capsys):
    def result(name: str, model: str) -> Path:
        row = {"claim": "c", "kind": "measured", "run": "r", "verdict": "holds"}
        meta = {"complete": True, "options": {"model": model, "n_tokens": 1000}}
        (tmp_path / name).write_text(json.dumps({"meta": meta, "runs": {}, "rows": [row]}))
        return tmp_path / name

    assert main(["compare", str(result("a.json", "gpt2")), str(result("b.json", "tiny-wikitext"))]) == 0
    assert "options that differ: model: gpt2 -> tiny-wikitext" in capsys.readouterr().out


def test_one_claims_file_that_fails_loses_no_other(tmp_path):
    from lib.report.files import write_claims_files
    from lib.report.rows import Row
    from lib.writeup.judge import Status, Verdict
    from lib.writeup.write_up import EXP7_WRITE_UP

    (tmp_path / "file").write_text("")
    rows = [Row("c", "7A", "measured", run="r", verdict=Verdict(Status.HOLDS))]
    paths = {"--claims-report": str(tmp_path / "file" / "r.md"), "--claims-json": str(tmp_path / "c.json")}
    lines = write_claims_files(paths, rows, {"r": {}}, {"complete": True}, {}, EXP7_WRITE_UP)
    assert lines[0].startswith("claims JSON written to") and lines[1].startswith("error: --claims-report")
    assert json.loads((tmp_path / "c.json").read_text())["rows"][0]["claim"] == "c"


def test_one_atomic_writer_for_text_bytes_and_a_writing_function(tmp_path):
    """lib/setup/outputs.py write_atomic serves the outputs, the cache (safetensors writes its own file)
    and the fingerprints: a writer that fails leaves the old file whole and no temporary file."""
    from lib.setup.outputs import write_atomic

    path = tmp_path / "entry.bin"
    write_atomic(path, "old")
    write_atomic(path, lambda tmp: tmp.write_bytes(b"new"))
    assert path.read_bytes() == b"new"

    def fails(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, fails)
    assert path.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["entry.bin"]
