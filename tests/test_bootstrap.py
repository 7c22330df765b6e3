"""The weighted engine (lib/tables/context.py) and the bootstrap on it (lib/robustness/bootstrap.py):
weights as repetition, all-ones weights as the run, stability at and far from a threshold, the seed,
blocks within chunks, BOS its own stratum, the block rule, the memo keyed on refit, and every field of
the embedded model inside its own interval (coverage and calibration: tests/test_intervals.py)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from lib.measure.stats import Capture, Stats
from lib.measure.store import Store
from lib.robustness.bootstrap import (
    block_counts,
    block_rule,
    bootstrap,
    bootstrap_of,
    interval_of,
    replicate_tables,
    stability_of,
    strata,
)
from lib.robustness.dropped import Base
from lib.robustness.intervals import at, field_summary, leaves, pairs
from lib.robustness.judged import judged
from lib.setup.corpus import Selection
from lib.tables.context import Context, Inputs
from lib.tables.registry import TABLES, Table, register, table, unregister
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
    counts = block_counts(sizes, 500, block=16, seed=3)
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    for lo, hi in zip(bounds, bounds[1:]):
        assert (counts[:, lo:hi].sum(1) == hi - lo).all()
    # circular blocks: a chunk's edges are drawn as often as its middle
    mean = block_counts([40], 4000, block=16, seed=1).double().mean(0)  # (40,)
    assert (mean - 1).abs().max() < 0.1, mean  # standard error ~0.02 over 4000 replicates
    assert (block_counts([16, 16], 10, block=16) == 1).all()
    assert not (block_counts([16, 16], 10, block=4) == 1).all()


def test_bos_is_its_own_stratum_counted_once_in_every_replicate():
    """Each chunk's position 0 (BOS) is a stratum of one, drawn exactly once in every replicate; the
    chunk's other positions are resampled among themselves; a chunk whose BOS is not counted is one stratum."""
    where = selection().where
    assert strata(where) == [(1, False), (39, True), (1, False), (24, True), (1, False), (34, True)]
    counts = block_counts(strata(where), 300, block=8, seed=2)
    bos = [i for i, (_, p) in enumerate(where) if p == 0]
    assert (counts[:, bos] == 1).all()
    assert (counts.sum(1) == N).all()
    assert strata([(0, 1), (0, 2), (1, 0), (1, 1)]) == [(2, True), (1, False), (1, True)]


def planted_bos(seed: int = 0) -> Capture:
    """Gaussian writes whose layer-1 BOS writes are huge (norm 500, GPT-2 small's layer-2 scale), each
    chunk's along its own direction: layer 1's K90 is then the number of BOS writes drawn."""
    capture = gaussian(seed)
    starts = torch.tensor([0, *CHUNKS]).cumsum(0)[:-1].tolist()
    for direction, at_bos in enumerate(starts):
        for x in (capture.delta_phi, capture.delta_phi_attn):
            x[1, at_bos] = 0
            x[1, at_bos, direction] = 500.0
    return capture


def test_a_huge_bos_write_leaves_a_stable_claim_stable():
    """With BOS its own stratum, layer 1's K90 (3: one direction per chunk's BOS) is the same in every
    replicate, and a cell on it is stable (>= 0.95); with BOS resampled like any other position (drawn
    0-5 times), far fewer replicates keep it."""
    inputs = inputs_of(planted_bos())
    tables = {name: table(Context(inputs), name) for name in ("norms", "layer_pca", "attn_ffn")}
    assert tables["layer_pca"][1]["k90"] == 3
    k90 = Cell("planted-bos-k90", "7B", "layer_pca", 1, "k90", 3.0, 0.0, 0.0, "planted")
    b = bootstrap(inputs, tables, replicates=60, block=8)
    assert stability_of([k90], tables, b.pseudo(tables))[k90.id] >= 0.95
    resampled = block_counts([N], 60, block=8)  # one stratum: BOS drawn like the others
    reps = [replicate_tables(inputs, tables, r, list(tables), ())[0] for r in resampled]
    assert sum(r["layer_pca"][1]["k90"] == 3 for r in reps) / len(reps) < 0.9


def test_the_block_length_comes_from_the_rule_unless_given():
    """block 0: the Politis-White rule, recorded, capped at a quarter of the longest chunk; N: N."""
    inputs = inputs_of(gaussian())
    tables = {"norms": table(Context(inputs), "norms")}
    rule = block_rule(inputs)
    assert rule["cap"] == 39 // 4 and 1 <= rule["block"] <= rule["cap"] and rule["median"] > 0
    assert bootstrap(inputs, tables, replicates=5, block=0).block == rule["block"]
    given = bootstrap(inputs, tables, replicates=5, block=3)
    assert (given.block, given.rule) == (3, None)


def test_the_memo_keys_on_refit():
    """A refitted and a fixed-basis context with the same counts do not answer for each other."""
    register(Table("toy_refit", "causes", build=lambda c: c.refit))
    try:
        inputs = inputs_of(gaussian())
        counts = block_counts([N], 1, block=4)[0]
        assert table(Context(inputs, counts=counts, refit=False), "toy_refit") is False
        assert table(Context(inputs, counts=counts, refit=True), "toy_refit") is True
    finally:
        unregister("toy_refit")


def test_the_same_seed_gives_the_same_intervals():
    inputs = inputs_of(gaussian())
    tables = {name: table(Context(inputs), name) for name in ("norms", "layer_pca", "attn_ffn")}
    first = bootstrap(inputs, tables, replicates=30, seed=5)
    again = bootstrap(inputs, tables, replicates=30, seed=5)
    other = bootstrap(inputs, tables, replicates=30, seed=6)
    assert json.dumps(first.intervals) == json.dumps(again.intervals)
    assert json.dumps(first.intervals) != json.dumps(other.intervals)
    assert first.intervals["norms"][0].keys() == {"mean_norm", "std_norm"}  # no interval for the layer index


def test_a_prediction_interval_always_holds_its_estimate():
    """The pairwise differences are symmetric: t + [q_lo, q_hi] holds t whatever the replicates'
    shift; the basic interval moves the replicates back by it; ints stay ints."""
    i, j = pairs(40, 4000, 0)
    shifted = [10.0 + 0.01 * r for r in range(40)]  # every replicate above the estimate
    f = field_summary(5.0, shifted, i, j, 0.95)
    lo, hi = f["prediction"]
    assert lo < 5.0 < hi and math.isclose(lo - 5.0, 5.0 - hi, abs_tol=1e-12)
    assert f["population"][1] < 5.0  # 2t - q: the basic interval corrects the shift of +5.2
    assert math.isclose(f["shift"], 10.195 - 5.0, rel_tol=1e-12) and f["sd"] > 0
    k = field_summary(22, [21] * 40, i, j, 0.95)
    assert k["prediction"] == [22, 22] and k["population"] == [23, 23] and k["shift"] == -1.0
    assert all(isinstance(v, int) for v in k["prediction"])
    assert len(pairs(200, 4000, 0)[0]) == 4000 and len(pairs(10, 4000, 0)[0]) == 90


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
    b = bootstrap(inputs, tables, replicates=100, block=4)
    stability = stability_of([edge, far], tables, b.pseudo(tables))
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
    assert (out["replicates"], out["seed"]) == (20, 0)
    assert out["block_rule"]["block"] == out["block"] and out["fixed_basis"] == ["lowrank_ppl"]
    assert bootstrap_of(embedded_run, replicates=20) == out  # cached


def test_every_field_of_the_embedded_model_lies_in_its_own_interval(embedded_run):
    """Every numeric field's prediction interval holds its estimate (the percentile interval left 433
    of 1254 outside); a cell's interval as the row gets it: kind named, a lower bound for 7D."""
    out, tables = bootstrap_of(embedded_run, replicates=20), embedded_run.tables
    n = 0
    for name in out["intervals"]:
        for path, value in leaves(tables[name], (name,)):
            lo, hi = at(out["intervals"], path)
            assert lo <= value <= hi, (path, value, lo, hi)
            assert at(out["sd"], path) is None or at(out["sd"], path) >= 0
            n += 1
    assert n > 1000
    mean_norm = Cell("c", "7A", "norms", 0, "mean_norm", 14.0, 0.1, 0.0, "x", match=("layer", 0))
    u = interval_of(out, tables, mean_norm)
    assert u["kind"] == "prediction" and u["interval"][0] <= tables["norms"][0]["mean_norm"] <= u["interval"][1]
    ppl = Cell("p", "7D", "lowrank_ppl", 0, "shared_ratio", 2.0, 0.1, 0.0, "x", match=("k", 8))
    assert interval_of(out, tables, ppl, "population")["kind"].startswith("population, lower bound")


def test_the_windows_give_each_cell_its_spread_and_each_claim_its_agreement():
    """Three windows' tables: a cell's values across them, and the share of windows keeping window
    0's verdict (a cell within its 5% tolerance in windows 0 and 2, outside it in window 1)."""
    from lib.robustness.windows import window_spread

    def tables(mean_norm: float) -> dict[str, Any]:
        return {"norms": [{"layer": 0, "mean_norm": mean_norm, "std_norm": 1.0}]}

    c = Cell("w", "7A", "norms", 0, "mean_norm", 10.0, 0.05, 0.0, "planted", match=("layer", 0))
    out = window_spread([tables(10.2), tables(11.0), tables(9.9)], [c])
    assert out["windows"] == 3 and out["agreement"]["w"] == pytest.approx(2 / 3)
    spread = out["cells"]["w"]
    assert spread["values"] == [10.2, 11.0, 9.9] and (spread["min"], spread["max"]) == (9.9, 11.0)
    assert spread["sd"] == pytest.approx(0.5686240703, rel=1e-9)  # stdev of the three values
    assert window_spread([tables(10.2)], [c])["cells"]["w"]["sd"] is None


def test_a_refit_runs_the_small_k_passes_with_each_replicates_bases(embedded_run):
    """refit=(8, 16): 7D's rows at K = 8 and 16 come from the replicate's own bases (they differ from
    the fixed-basis replicate's), the other rows are the fixed-basis ones exactly."""
    inputs, tables = embedded_run.context.inputs, embedded_run.tables
    counts = block_counts(strata(inputs.selection.where), 1, block=16, seed=4)[0]
    fixed, _ = replicate_tables(inputs, tables, counts, ["lowrank_ppl"], ())
    refit, _ = replicate_tables(inputs, tables, counts, ["lowrank_ppl"], (), refit=(8, 16))
    for a, b in zip(fixed["lowrank_ppl"], refit["lowrank_ppl"]):
        if a["k"] in (8, 16):
            assert a["shared_ratio"] != b["shared_ratio"] and a["individual_ratio"] != b["individual_ratio"], a["k"]
        else:
            assert a == b, a["k"]
