"""Runs that survive their faults (issue 21): a cache that cannot be written, absurd sizes, a
kernel probe that fails; and a warm run that loads nothing it does not need."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lib.measure.kernels
import lib.setup.corpus
import lib.tables.run
from lib.errors import ConfigError
from lib.setup.corpus import check_text_size
from lib.setup.model_source import resolve_model
from lib.tables.run import Run

ROOT = Path(__file__).resolve().parent.parent
FILE_LIMIT = 4096
"""Bytes a child process may write to one file: the embedded model's capture (MBs) and tables (tens
of KB) and the tokenized text (MBs) fail with EFBIG, as on a full disk; lock files (empty) and the fingerprint
cache (~300 B) fit."""


def _tables_command(cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lib", "tables", "--model", "tiny-wikitext", "--device", "cpu"] + [
        "--n-tokens",
        "300",
        "--ks",
        "8",
        "--cache-dir",
        str(cache),
        *extra,
    ]


def _limit_file_size() -> None:
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as a full disk fails with ENOSPC
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def test_a_cache_that_cannot_be_written_costs_no_result(tmp_path: Path):
    """A cache directory whose writes fail: one warning line per entry naming the directory and the size
    needed, the tables printed and written, exit 0, and nothing partial left in the cache."""
    cache = tmp_path / "cache"
    env = {**os.environ, "DPHI_CACHE_DIR": str(tmp_path / "fingerprints")}
    done = subprocess.run(
        _tables_command(cache),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        preexec_fn=_limit_file_size,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "## 7A" in done.stdout and "## 7E" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if "not written to" in line]
    assert len(warnings) == 3, done.stderr  # the tokenized text, the capture and the tables
    for line in warnings:
        assert line.startswith("warning: cache entry ") and f"not written to {cache}:" in line and "needed" in line
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [], "a partial entry was left"


def test_absurd_n_tokens_ends_at_once_saying_what_the_text_holds(tmp_path: Path):
    start = time.perf_counter()
    done = subprocess.run(
        _tables_command(tmp_path / "cache") + ["--n-tokens", "1000000000000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DPHI_CACHE_DIR": str(tmp_path / "fingerprints")},
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 2, done.stderr
    assert "--n-tokens 1000000000000 is larger than the text provides" in done.stderr
    assert "positions with --positions all" in done.stderr and "attention kernel" not in done.stderr  # no model
    # imports (~2 s) and reading the text; 30 s leaves room for a loaded 2-core machine
    assert elapsed < 30, elapsed


def test_absurd_n_tokens_stops_a_pytest_session_before_any_test(tmp_path: Path):
    """Under pytest too: one usage error (exit 4) naming the size and what the text holds, not an error
    per test, and no model loaded."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "claims/test_claims.py", "-m", "7A", "-p", "no:cacheprovider", "--model"]
        + ["tiny-wikitext", "--device", "cpu", "--n-tokens", "1000000000000", "--cache-dir", str(tmp_path / "c")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DPHI_CACHE_DIR": str(tmp_path / "fingerprints")},
    )
    assert done.returncode == 4, done.stdout[-2000:] + done.stderr[-2000:]
    assert "--n-tokens 1000000000000 is larger than the text provides" in done.stderr
    assert "passed" not in done.stdout and "failed" not in done.stdout and "attention kernel" not in done.stderr


def test_sizes_are_checked_before_tokenising_or_loading(make_model, make_config, shared_text, store, monkeypatch):
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("tokenised or loaded a model before checking the sizes")

    monkeypatch.setattr(lib.setup.corpus, "tokenize", forbidden)
    monkeypatch.setattr(lib.tables.run, "tokenize", forbidden)
    monkeypatch.setattr(lib.tables.run.Shared, "bridge", forbidden)
    run = Run(make_config(make_model(), shared_text, n_tokens=10**12), store)
    with pytest.raises(ConfigError, match=r"bytes hold at most [\d,]+ positions"):
        run.check_sizes()


@pytest.mark.parametrize("positions", ["all", "text"])
@pytest.mark.parametrize("n_ctx", [2, 3, 64])
def test_the_text_bound_never_refuses_what_fits(positions, n_ctx, tokenizer_dir):
    """The bound from the text's bytes is an upper bound: the most positions select_tokens accepts pass
    it; the 'at most N' it states is what it enforces (N passes, N + 1 does not)."""
    import re

    from transformers import AutoTokenizer

    text = "Residual streams carry what each layer writes. Ünïcode costs bytes: 東京. " * 3
    ids = lib.setup.corpus.tokenize(AutoTokenizer.from_pretrained(tokenizer_dir), text)
    fits = len(ids) + (-(-len(ids) // (n_ctx - 1)) if positions == "all" else 0)
    lib.setup.corpus.select_tokens(ids, 0, fits, n_ctx, positions)  # the most that fits, exactly
    check_text_size(text, fits, n_ctx, positions)
    with pytest.raises(ConfigError, match="larger than the text provides") as refused:
        check_text_size(text, 10**12, n_ctx, positions)
    stated = int(re.search(r"at most ([\d,]+) positions", str(refused.value)).group(1).replace(",", ""))
    check_text_size(text, stated, n_ctx, positions)
    with pytest.raises(ConfigError):
        check_text_size(text, stated + 1, n_ctx, positions)


def test_memory_guard_runs_before_the_model_and_names_the_dtype(make_model, make_config, text_file, store, monkeypatch):
    import lib.measure.capture

    monkeypatch.setattr(lib.tables.run.Shared, "bridge", lambda *a: pytest.fail("the model was loaded"))
    monkeypatch.setattr(lib.measure.capture, "free_bytes", lambda device: 10_000)
    run = Run(make_config(make_model(), text_file, n_tokens=50), store)
    with pytest.raises(ConfigError, match=r"the model's weights in float32 .* or --dtype bfloat16"):
        run.check_sizes()


def test_a_warm_command_loads_no_model(tmp_path: Path):
    env = {**os.environ, "DPHI_CACHE_DIR": str(tmp_path / "fingerprints")}
    cold, warm = (
        subprocess.run(
            _tables_command(tmp_path / "cache"), cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
        )
        for _ in range(2)
    )
    assert cold.returncode == 0 and warm.returncode == 0, warm.stderr
    assert "attention kernel" in cold.stderr, "the cold run must load the model (and say which kernel)"
    assert "attention kernel" not in warm.stderr, "a warm run loaded the model and probed kernels"
    assert warm.stdout == cold.stdout


def test_a_failing_probe_names_the_exception(make_model, make_config, text_file, store, monkeypatch):
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no kernel for this shape\nsecond line")

    monkeypatch.setattr(lib.measure.kernels, "_fused", broken)
    decision = lib.measure.kernels.probe(Run(make_config(make_model(), text_file), store).bridge)
    assert decision.kernel == "eager"
    assert "(RuntimeError: no kernel for this shape)" in decision.line() and "\n" not in decision.line()


def test_a_model_fingerprint_is_cached_by_path_size_and_time(make_model, tmp_path: Path, monkeypatch):
    import shutil

    monkeypatch.setenv("DPHI_CACHE_DIR", str(tmp_path / "cache"))
    model = shutil.copytree(make_model(), tmp_path / "model")
    weights = model / "model.safetensors"
    _, first = resolve_model(str(model))
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # same size; the time set back below: the cached fingerprint answers
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert resolve_model(str(model))[1] == first, "the fingerprint was recomputed: no cache"
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # modified: hashed again
    assert resolve_model(str(model))[1] != first
