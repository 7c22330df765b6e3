"""The cost of --fragility over every claim against the cold tables' cost.

GPT-2-small-shaped model (12 layers, d_model 768, vocab 50257, random init from a config) on
WikiText-2 test, 1000 positions, as benchmarks/test_pipeline.py: the tables from nothing (model
loaded), then the fragility of every sentence and cell on them (the capture and tables in memory,
nothing in the cache: every drop set is recomputed, hypothesis has no stored examples).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from test_pipeline import DEVICE, FULL, gpt2_shaped, run  # noqa: F401 (fixtures)

from lib.measure.store import Store
from lib.robustness.dropk import fragility_of
from lib.tables.run import Run


@pytest.mark.skipif(not FULL, reason="--fragility's cost: part of the full sweep (make bench BENCH_FULL=1)")
@pytest.mark.benchmark(group="fragility")
def test_fragility_against_cold_tables(benchmark, run, tmp_path):  # noqa: F811
    """--fragility's search and verification, every claim, vs the cold tables of the same run."""
    fresh = Run(run.config, Store(tmp_path / "cache"), batch_size=run.batch_size)
    fresh.bridge, fresh.selection = run.bridge, run.selection
    start, cpu = time.perf_counter(), time.process_time()
    fresh.tables
    tables_s, tables_cpu = time.perf_counter() - start, time.process_time() - cpu
    cpu = time.process_time()
    rows = benchmark.pedantic(lambda: fragility_of(fresh), rounds=1, warmup_rounds=0)
    fragility_s, fragility_cpu = benchmark.stats.stats.min, time.process_time() - cpu
    flipped = Counter(r["kind"] for r in rows if r["k"] is not None)
    benchmark.extra_info.update(
        plain="the cold tables (capture, 7A-7E, causes)",
        plain_s=round(tables_s, 3),
        ours_s=round(fragility_s, 3),
        ratio=round(fragility_s / tables_s, 3),
        # CPU seconds of this process: on a shared machine the wall ratio moves with the others' load
        tables_cpu_s=round(tables_cpu, 3),
        fragility_cpu_s=round(fragility_cpu, 3),
        cpu_ratio=round(fragility_cpu / tables_cpu, 3),
        claims=len(rows),
        flipped=dict(flipped),
        device=DEVICE,
        threads=torch.get_num_threads(),
    )
    assert len(rows) > 0 and Path(fresh.store.root).is_dir()
