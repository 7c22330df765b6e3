"""The cost of the bootstrap (lib/robustness/bootstrap.py) against its floor, its eigendecompositions.

GPT-2-small-shaped model (12 layers, d_model 768, vocab 50257, random init from a config) on
WikiText-2 test, 1000 positions, as benchmarks/test_pipeline.py. The floor (issue 28): R x one
float64 eigvalsh per (layer, write) covariance the tables read (Δφ, attention, FFN: a (12, 768, 768)
stack each) plus the shared bases' (7C's, the norm-scaled and the variance-balanced one), timed in
the same run (the fastest of FLOOR_ROUNDS, times R). Two bootstraps against it: the write-up's
tables whose statistics are K values and means (7A-7E: eigenvalues only, 7D reweighted), and every
table of the stage (the causes read directions: one eigh per covariance, ~3x an eigvalsh).
"""

from __future__ import annotations

import math
import os
import time

import pytest
import torch
from test_pipeline import DEVICE, FULL, gpt2_shaped, run  # noqa: F401 (fixtures)

from lib.measure.spectra import spectra
from lib.measure.stats import KEYS, Stats
from lib.robustness.bootstrap import bootstrap

REPLICATES = int(os.environ.get("DPHI_BENCH_REPLICATES", "200"))
"""$DPHI_BENCH_REPLICATES: R (default 200, the issue's --bootstrap 200)."""
FLOOR_ROUNDS = 3
K_TABLES = ("config", "norms", "layer_pca", "shared_pca", "baseline_ppl", "lowrank_ppl", "attn_ffn")
"""The write-up's tables but 7C's reconstruction (which reads the shared basis's directions)."""


def floor_once(stats: Stats) -> tuple[float, float]:
    """One replicate's floor, (wall, CPU) seconds of the fastest of FLOOR_ROUNDS: spectra.spectra
    (eigvalsh) of each write's layers, and of the three shared bases."""
    per_write = [[stats.moments(k, i) for i in range(stats.total.shape[1])] for k in KEYS]
    shared = stats.shared_moments()
    best = (math.inf, math.inf)
    for _ in range(FLOOR_ROUNDS):
        start, cpu = time.perf_counter(), time.process_time()
        for moments in per_write:
            spectra(moments)
        spectra([shared] * 3)
        best = min(best, (time.perf_counter() - start, time.process_time() - cpu))
    return best


@pytest.mark.skipif(not FULL, reason="--bootstrap's cost: part of the full sweep (make bench BENCH_FULL=1)")
@pytest.mark.benchmark(group="bootstrap")
def test_bootstrap_against_its_floor(benchmark, run):  # noqa: F811
    """--bootstrap R on the K tables and on every table, vs R x the eigendecompositions alone."""
    run.tables  # the run's tables and the full fit's 7D passes aside: the bootstrap reweights their NLL
    inputs = run.context.inputs
    inputs.readout  # the readout's eigh, once per run
    load = os.getloadavg()[0]
    floor_s, floor_cpu = (REPLICATES * t for t in floor_once(run.stats))
    k_tables = {n: run.tables[n] for n in K_TABLES}
    start, cpu = time.perf_counter(), time.process_time()
    bootstrap(inputs, k_tables, REPLICATES)
    k_s, k_cpu = time.perf_counter() - start, time.process_time() - cpu
    cpu = time.process_time()
    every = benchmark.pedantic(lambda: bootstrap(inputs, run.tables, REPLICATES), rounds=1, warmup_rounds=0)
    every_s, every_cpu = benchmark.stats.stats.min, time.process_time() - cpu
    benchmark.extra_info.update(
        plain=f"{REPLICATES} x (eigvalsh of each write's 12 covariances + the 3 shared bases)",
        plain_s=round(floor_s, 3),
        k_tables_s=round(k_s, 3),
        k_tables_ratio=round(k_s / floor_s, 3),
        ours_s=round(every_s, 3),
        ratio=round(every_s / floor_s, 3),
        # CPU seconds of this process: on a shared machine the wall ratio moves with the others' load
        plain_cpu_s=round(floor_cpu, 3),
        k_tables_cpu_ratio=round(k_cpu / floor_cpu, 3),
        cpu_ratio=round(every_cpu / floor_cpu, 3),
        replicates=REPLICATES,
        load_average=round(load, 2),
        device=DEVICE,
        threads=torch.get_num_threads(),
    )
    assert len(every.replicates) == REPLICATES and "layer_pca" in every.intervals
