"""The weighted engine (lib/tables/context.py) and the bootstrap on it (lib/robustness/bootstrap.py):
weights as repetition, all-ones weights as the run, coverage on Gaussian data of known covariance,
stability at and far from a threshold, the seed, and blocks within chunks."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from lib.measure.capture import Capture, Stats
from lib.measure.spectra import Moments, spectra
from lib.measure.store import Store
from lib.robustness.bootstrap import (
    BLOCK,
    block_counts,
    bootstrap,
    bootstrap_of,
    chunk_sizes,
    interval,
    replicate_tables,
    stability_of,
)
from lib.robustness.dropped import Base
from lib.robustness.judged import judged
from lib.setup.corpus import Selection
from lib.tables.context import Context, Inputs
from lib.tables.registry import TABLES, table
from lib.tables.run import Run
from lib.writeup.document import Cell

LAYERS, D = 3, 8
CHUNKS = (40, 25, 35)
"""Three chunks of counted positions (every position of each counted, BOS included)."""
N = sum(CHUNKS)
MODEL_FREE = (
    "norms",
    "layer_pca",
    "shared_pca",
    "reconstruction",
    "attn_ffn",
    "reconstruction_per_layer",
    "layer_spectra",
    "shared_pca_normalised",
    "shared_pca_balanced",
    "reconstruction_balanced_per_layer",
    "shared_overlap",
    "reconstruction_own_per_layer",
    "write_sources",
    "pc1_origin",
    "baseline_ppl",
)
"""The tables a synthetic capture (no model) can give."""
REPEAT_REL = 1e-9
"""Weighted float64 sums against sums over physically repeated vectors: the same terms summed in
another order, ~1e-15 relative; K and every int exact."""


def gaussian(seed: int = 0) -> Capture:
    g = torch.Generator().manual_seed(seed)
    attn = torch.randn(LAYERS, N, D, generator=g) * torch.linspace(2, 0.2, D)
    ffn = torch.randn(LAYERS, N, D, generator=g)
    return Capture(attn + ffn, attn, ffn, torch.rand(N - len(CHUNKS), generator=g, dtype=torch.float64))


def selection() -> Selection:
    return Selection(tuple(torch.arange(m) for m in CHUNKS), tuple(torch.ones(m, dtype=torch.bool) for m in CHUNKS))


def inputs_of(capture: Capture, sel: Any = None) -> Inputs:
    sel = sel if sel is not None else selection()
    return Inputs(Stats.of_capture(capture), sel, True, config={}, capture=capture)


def close(ours: Any, reference: Any, where: str = "") -> None:
    if isinstance(reference, dict):
        assert ours.keys() == reference.keys(), where
        for k in reference:
            close(ours[k], reference[k], f"{where}.{k}")
    elif isinstance(reference, list):
        assert len(ours) == len(reference), where
        for i, (a, b) in enumerate(zip(ours, reference)):
            close(a, b, f"{where}[{i}]")
    elif isinstance(reference, float) and not math.isnan(reference):
        assert math.isclose(ours, reference, rel_tol=REPEAT_REL, abs_tol=1e-12), (where, ours, reference)
    else:
        assert ours == reference or (ours != ours and reference != reference), (where, ours, reference)


def test_counts_weigh_every_statistic_as_repeated_positions():
    """A position counted w times gives the tables of a capture holding its vectors w times: the
    moments, 7A's mean and std (ddof=1 over sum w), the 7C sample, the NLL."""
    capture, inputs = gaussian(), inputs_of(gaussian())
    counts = torch.randint(0, 4, (N,), generator=torch.Generator().manual_seed(1))
    c = Context(inputs, counts=counts)
    index = c.index
    assert len(index) == int(counts.sum())
    repeated = Capture(
        capture.delta_phi[:, index],
        capture.delta_phi_attn[:, index],
        capture.delta_phi_ffn[:, index],
        capture.nll[c.prediction_index],
    )
    where = selection().where
    fake = SimpleNamespace(where=[where[i] for i in index.tolist()], chunks=())
    reference = Context(inputs_of(repeated, fake))
    for name in MODEL_FREE:
        close(table(c, name), table(reference, name), name)
    close(table(c, "norm_concentration"), table(reference, "norm_concentration"), "norm_concentration")


def test_a_drop_set_is_the_0_1_case():
    """Context(drop) and Context(counts with zeros there) are one weighting: the same key and tables."""
    inputs = inputs_of(gaussian())
    counts = torch.ones(N, dtype=torch.long)
    counts[[3, 50, 77]] = 0
    dropped, weighted = Context(inputs, drop=[77, 3, 50]), Context(inputs, counts=counts)
    assert dropped.key == weighted.key == dropped.drop == (3, 50, 77)
    for name in MODEL_FREE:
        assert json.dumps(TABLES[name](dropped)) == json.dumps(TABLES[name](weighted)), name


def test_block_counts_stay_within_each_chunk():
    """Every chunk's counts sum to its size, for blocks longer and shorter than the chunk; every
    position is drawn once on average; a block as long as a chunk draws it whole."""
    sizes = [5, 37, 16, 3, 100]
    counts = block_counts(sizes, 500, block=BLOCK, seed=3)
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    for lo, hi in zip(bounds, bounds[1:]):
        assert (counts[:, lo:hi].sum(1) == hi - lo).all()
    # circular blocks: a chunk's edges are drawn as often as its middle (BOS is a chunk's first position)
    mean = block_counts([40], 4000, block=16, seed=1).double().mean(0)  # (40,)
    assert (mean - 1).abs().max() < 0.1, mean  # standard error ~0.02 over 4000 replicates
    assert (block_counts([16, 16], 10, block=16) == 1).all()
    assert not (block_counts([16, 16], 10, block=4) == 1).all()
    assert chunk_sizes(selection().where) == list(CHUNKS)


def test_the_same_seed_gives_the_same_intervals():
    inputs = inputs_of(gaussian())
    tables = {name: table(Context(inputs), name) for name in ("norms", "layer_pca", "attn_ffn")}
    first = bootstrap(inputs, tables, replicates=30, seed=5)
    again = bootstrap(inputs, tables, replicates=30, seed=5)
    other = bootstrap(inputs, tables, replicates=30, seed=6)
    assert json.dumps(first.intervals) == json.dumps(again.intervals)
    assert json.dumps(first.intervals) != json.dumps(other.intervals)
    assert first.intervals["norms"][0].keys() == {"mean_norm", "std_norm"}  # no interval for the layer index


def test_interval_shapes():
    rows = [[{"layer": 0, "k90": k, "ratio": k / 10}] for k in range(1, 41)]
    assert interval(rows) == [{"k90": [1, 40], "ratio": [0.1, 4.0]}]
    assert interval([float(v) for v in range(1001)]) == [25.0, 975.0]
    assert interval([{"k": 3}] * 5) == {"k": [3, 3]}


COVERAGE_N, COVERAGE_R, SEEDS, K_FIXED = 400, 200, 100, 2
VARIANCES = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.125, 0.0625], dtype=torch.float64)


def test_coverage_on_gaussian_writes_of_known_covariance():
    """On i.i.d. Gaussian writes (d=8, n=400) of known covariance, the 95% percentile intervals of the
    mean norm and of the explained variance at K=2 contain the true value in at least 90 of 100 seeds
    (binomial(100, 0.95): fewer than 90 has probability ~2%; more than 100 seeds would slow the suite).
    Independent positions: blocks of 1 (the default 16 gives 400 / 16 = 25 blocks, and its intervals
    cover 87 and 92 times here: docs/uncertainty.md). The replicates' moments are the engine's: counts from block_counts, sums sum_i w_i x_i x_i^T,
    spectra from spectra.spectra, intervals from `interval`."""
    true_ratio = float(VARIANCES[:K_FIXED].sum() / VARIANCES.sum())
    g = torch.Generator().manual_seed(0)
    big = torch.randn(2_000_000, D, generator=g, dtype=torch.float64) * VARIANCES.sqrt()
    true_norm = float(big.norm(dim=-1).mean())  # Monte Carlo: standard error ~1e-3 of the intervals' width
    hits = {"norm": 0, "ratio": 0}
    for seed in range(SEEDS):
        x = torch.randn(COVERAGE_N, D, generator=g, dtype=torch.float64) * VARIANCES.sqrt()  # (n, d)
        w = block_counts([COVERAGE_N], COVERAGE_R, block=1, seed=seed).double()  # (R, n)
        norms = (w @ x.norm(dim=-1)) / COVERAGE_N  # (R,)
        outer = torch.einsum("rn,ni,nj->rij", w, x, x)  # (R, d, d)
        moments = [Moments(COVERAGE_N, w[r] @ x, outer[r]) for r in range(COVERAGE_R)]
        variance = spectra(moments)  # (R, d)
        ratio = variance[:, :K_FIXED].sum(-1) / variance.sum(-1)
        lo, hi = interval(norms.tolist())
        hits["norm"] += lo <= true_norm <= hi
        lo, hi = interval(ratio.tolist())
        hits["ratio"] += lo <= true_ratio <= hi
    assert hits["norm"] >= 90 and hits["ratio"] >= 90, hits


def cell(name: str, value: float, rtol: float) -> Cell:
    return Cell(name, "7A", "norms", 0, "mean_norm", value, rtol, 0.0, "planted")


def test_stability_at_and_far_from_a_threshold():
    """A cell whose measured value sits on its tolerance's edge holds in about half the replicates;
    one far inside it in all of them."""
    inputs = inputs_of(gaussian())
    tables = {"norms": table(Context(inputs), "norms")}
    measured = tables["norms"][0]["mean_norm"]
    rtol = 0.01
    edge = cell("at-its-edge", measured / (1 - rtol) * (1 - 1e-9), rtol)  # |measured - value| just within rtol * value
    far = cell("far-inside", measured, 0.5)
    b = bootstrap(inputs, tables, replicates=100)
    stability = stability_of([edge, far], tables, b.replicates)
    assert stability[far.id] == 1.0
    assert 0.2 < stability[edge.id] < 0.8, stability


@pytest.fixture(scope="module")
def embedded_run(embedded_config, tmp_path_factory) -> Run:
    run = Run(embedded_config(), Store(tmp_path_factory.mktemp("cache")))
    run.tables
    return run


def base_of(run: Run) -> Base:
    return Base(run.capture, run.stats, run.selection, run.tables, True, run.bridge, run.batch_size)


def test_all_ones_weights_reproduce_every_table(embedded_run):
    """Every table of the embedded model, 7D's perplexities included, under all-ones weights through
    the bootstrap's path (refit=False, spectra from spectra.spectra): exactly the run's."""
    run = embedded_run
    inputs = base_of(run).inputs
    ones = torch.ones(run.stats.norms.shape[1], dtype=torch.long)
    ours, _ = replicate_tables(inputs, run.tables, ones, list(run.tables), ())
    assert json.dumps(ours) == json.dumps(run.tables)


def test_every_judged_claim_of_the_embedded_model_has_a_stability(embedded_run):
    out = bootstrap_of(embedded_run, replicates=20)
    decided = {r: s for r, s in out["stability"].items() if s is not None}
    assert out["stability"].keys() == {j.id for j in judged()}
    assert decided and all(0.0 <= s <= 1.0 for s in decided.values())
    assert (out["replicates"], out["block"], out["seed"]) == (20, BLOCK, 0)
    lo, hi = out["intervals"]["norms"][0]["mean_norm"]
    assert lo <= embedded_run.tables["norms"][0]["mean_norm"] <= hi
    assert bootstrap_of(embedded_run, replicates=20) == out  # cached
