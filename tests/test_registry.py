"""The table registry (lib/tables/registry.py): every list of tables derives from it, and a table
registered there is computed, cached, written, snapshotted and recomputed without positions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lib.measure.stats import Capture, Stats
from lib.measure.store import Store
from lib.robustness.dropk import sources
from lib.robustness.dropped import Base, Dropped
from lib.robustness.recording import Recorder
from lib.setup.corpus import Selection
from lib.tables.registry import TABLES, Table, register, snapshotted, unregister, write_up_order
from lib.tables.run import Run

sys.path.insert(0, str(Path(__file__).parent))  # the toy table's module, also a plugin for the subprocess
from toy_table import TOY  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def toy() -> Iterator[Table]:
    register(TOY)
    try:
        yield TOY
    finally:
        unregister(TOY.name)


@pytest.fixture(scope="module")
def small(make_model, make_config, text_file):
    """A small config-built model on our text: (model dir, config)."""
    model = make_model(n_layer=2, d_model=32)
    return model, make_config(model, text_file, n_tokens=60, numerics="compat")  # the CLI's default


def _max_norms(run: Run) -> list[dict[str, float]]:
    """The toy table computed independently from the run's per-position norms."""
    return [{"layer": i, "max_norm": max(row.tolist())} for i, row in enumerate(run.stats.norms)]


def test_every_table_of_a_run_is_registered_and_snapshotted_or_says_why(small, tmp_path):
    run = Run(small[1], Store(tmp_path))
    assert list(run.tables) + list(run.followups) == list(TABLES)  # registry order is the JSON's
    for name, entry in TABLES.items():
        assert (name in snapshotted()) != bool(entry.unsnapshotted), name
    assert write_up_order()[:2] == ("config", "norms") and "lowrank_ppl" in write_up_order()


def test_an_entry_is_checked_when_registered():
    with pytest.raises(ValueError, match="give build or row"):
        Table("both", "7A", build=lambda c: 0, row=lambda c, i: 0)
    with pytest.raises(ValueError, match="registered already"):
        register(TABLES["norms"])


def test_a_registered_table_is_computed_cached_and_written(toy, small, text_file, tmp_path, monkeypatch):
    model, config = small
    run = Run(config, Store(tmp_path / "cache"))
    assert run.tables[toy.name] == _max_norms(run)
    # an entry written before the table was registered lacks it: it is recomputed, not read
    unregister(toy.name)
    try:
        assert toy.name not in Run(config, Store(tmp_path / "old")).tables
    finally:
        register(toy)
    assert Run(config, Store(tmp_path / "old")).tables[toy.name] == _max_norms(run)

    def recompute(*args: object) -> None:
        raise AssertionError("recomputed instead of reading the cache")

    monkeypatch.setattr(Run, "compute_tables", recompute)
    assert Run(config, Store(tmp_path / "cache")).tables[toy.name] == run.tables[toy.name]
    monkeypatch.undo()

    from lib.cli import main

    out = tmp_path / "t.json"
    args = ["tables", "--model", str(model), "--dataset", str(text_file), "--n-tokens", "60", "--device", "cpu"]
    args += ["--batch-size", str(run.batch_size)]  # the same batches: the same float32 sums
    assert main([*args, "--cache-dir", str(tmp_path / "cli"), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert list(data)[: len(write_up_order())] == list(write_up_order())
    assert data[toy.name] == json.loads(json.dumps(run.tables[toy.name]))


def test_a_registered_table_is_snapshotted(small, text_file, tmp_path):
    """claims/test_snapshots.py parametrizes over the registry: a table registered by a plugin gets a
    snapshot, which then fails when the table changes."""
    model, _ = small
    env = {
        **os.environ,
        "DPHI_CACHE_DIR": str(tmp_path / "cache"),
        "DPHI_SNAPSHOT_DIR": str(tmp_path / "snaps"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    args = ["--model", str(model), "--dataset", str(text_file), "--n-tokens", "60", "--device", "cpu"]
    command = [sys.executable, "-m", "pytest", "-p", "toy_table", "-p", "no:cacheprovider", "claims/test_snapshots.py"]
    command += ["-k", TOY.name, *args]

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*command, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    created = run("--snapshot-update")
    assert created.returncode == 0 and "1 passed" in created.stdout, created.stdout[-2000:]
    (path,) = (tmp_path / "snaps").rglob(f"*{TOY.name}*.json")
    assert [r["layer"] for r in json.loads(path.read_text())[TOY.name]] == [0, 1]
    assert run("--require-snapshots").returncode == 0
    snapshot = json.loads(path.read_text())
    snapshot[TOY.name][0]["max_norm"] *= 2
    path.write_text(json.dumps(snapshot))
    changed = run("--require-snapshots")
    assert changed.returncode == 1 and "1 failed" in changed.stdout, changed.stdout[-2000:]


N, LAYERS, D = 40, 2, 8
SELECTION = Selection((torch.arange(N),), (torch.ones(N, dtype=torch.bool),))  # one chunk, every position


def test_a_registered_table_is_recomputed_without_positions(toy):
    """--fragility's recomputation builds the toy table with the same builder, without the dropped
    positions, and the search ranks positions by the writes its entry names."""
    g = torch.Generator().manual_seed(0)
    attn, ffn = torch.randn(LAYERS, N, D, generator=g), torch.randn(LAYERS, N, D, generator=g)
    ffn[1, 7] += 100.0  # layer 1's largest write, at position 7
    capture = Capture(attn + ffn, attn, ffn, torch.rand(N - 1, generator=g, dtype=torch.float64))
    stats = Stats.of_capture(capture)
    norms = (attn + ffn).double().norm(dim=-1)  # (LAYERS, N)
    run_rows = [{"layer": i, "max_norm": float(row.max())} for i, row in enumerate(norms)]
    base = Base(capture, stats, SELECTION, {toy.name: run_rows}, centred=True)
    assert list(Dropped(base, [])[toy.name]) == run_rows
    without = Dropped(base, [7])[toy.name]
    assert without[1]["max_norm"] == float(torch.cat([norms[1, :7], norms[1, 8:]]).max()) < run_rows[1]["max_norm"]

    recorder = Recorder(base.tables)
    assert recorder[toy.name][1]["max_norm"] > 0
    assert sources(recorder.reads, LAYERS, per_layer=True) == {("norm", 1)}
    assert sources(recorder.reads, LAYERS) == {("norm", 0), ("norm", 1)}
