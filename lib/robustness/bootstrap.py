"""How much each number moves when the positions are drawn again: a moving-block bootstrap over
positions, every table recomputed per replicate through the registry's builders on the one weighted
engine (lib/tables/context.py), a 95% percentile interval per numeric field, and the stability of
each verdict.

Efron & Tibshirani, "An Introduction to the Bootstrap" (1993): the percentile interval. Künsch, "The
jackknife and the bootstrap for general stationary observations" (Ann. Statist. 1989): the moving-block
bootstrap, since neighbouring positions share their context and their writes are not independent.
Politis & Romano, "The stationary bootstrap" (JASA 1994): the same with random block lengths.

A replicate draws, in each chunk of m counted positions, ceil(m / b) blocks of b consecutive
positions (b = min(BLOCK, m)) with uniform starts, and keeps the first m positions drawn: blocks never
cross a chunk's boundary, and every chunk keeps its size. A block that runs past the chunk's last
position wraps to its first (the circular block bootstrap, Politis & Romano 1992): every position is
then drawn once on average. Without the wrap a chunk's first and last positions are drawn b times less
often than its middle ones, and the first is BOS, whose write is unlike every other (on the embedded
model, layer 2's std of the norms fell below the value of all positions in 97.5% of the replicates). Its counts are the weights of a Context
(refit=False): the moments, norms, 7C sample and NLL averages are reweighted, the PCA bases refitted
from the reweighted moments, 7D/7F/7H's perplexities the full fit's per-prediction NLL reweighted
(the bases held at the full-data fit).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any

import torch

from lib.measure.capture import KEYS
from lib.robustness.judged import cache_meta, cell_value, judged, require_held
from lib.setup.options import option
from lib.tables.context import Context, Inputs
from lib.tables.registry import STAGES, TABLES, table
from lib.writeup.judge import decide
from lib.writeup.write_up import EXP7_WRITE_UP, WriteUp

if TYPE_CHECKING:
    from lib.tables.run import Run
    from lib.writeup.claims import Cell, Claim

BOOTSTRAP_VERSION = 1
"""Bump when the resampling or the recomputation changes, so cached intervals are recomputed."""
REPLICATES = 200
BLOCK: int = option("bootstrap-block").default
"""Positions per block (--bootstrap-block's default; n^(1/3) = 10 at 1000 positions; a longer block keeps
more of the dependence between neighbours, which share their context, at the cost of fewer distinct blocks)."""
SEED = 0
LEVEL = 0.95
"""The percentile interval's coverage: [2.5%, 97.5%] of the replicates."""
NOT_STATISTICS = frozenset({"layer", "largest", "top_positions", "left_out"})
"""Fields that name a row or positions, not a statistic: no interval."""


def block_counts(chunk_sizes: Sequence[int], replicates: int, block: int = BLOCK, seed: int = SEED) -> torch.Tensor:
    """(replicates, sum(chunk_sizes)) long: how often each position (chunk-major, as Selection.where)
    is drawn by a circular block bootstrap within each chunk; every chunk's counts sum to its size."""
    if block < 1 or replicates < 1:
        raise ValueError(f"the bootstrap needs block >= 1 and replicates >= 1, got {block}, {replicates}")
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(replicates, sum(chunk_sizes), dtype=torch.long)
    offset = 0
    for m in chunk_sizes:
        if m:
            b = min(block, m)
            starts = torch.randint(0, m, (replicates, math.ceil(m / b)), generator=g)  # (R, blocks)
            drawn = ((starts[..., None] + torch.arange(b)) % m).flatten(1)[:, :m]  # (R, m) positions in the chunk
            counts[:, offset : offset + m].scatter_add_(1, drawn, torch.ones_like(drawn))
        offset += m
    return counts


def chunk_sizes(where: Sequence[tuple[int, int]]) -> list[int]:
    """Counted positions per chunk, from Selection.where (chunk-major)."""
    sizes: dict[int, int] = {}
    for chunk, _ in where:
        sizes[chunk] = sizes.get(chunk, 0) + 1
    return [sizes[c] for c in sorted(sizes)]


def interval(values: Sequence[Any], level: float = LEVEL) -> Any:
    """The percentile interval of one node of a table over the replicates: [lo, hi] for a number (the
    replicates' values at the lower and upper (1 - level) / 2 quantiles, values attained: a K stays an
    integer), the same structure for a dict or a list of equal lengths, None for anything else."""
    first = values[0]
    if isinstance(first, Mapping):
        values = [{k: x for k, x in v.items() if k not in NOT_STATISTICS} for v in values]
        first = values[0]
    if all(isinstance(v, Real) and not isinstance(v, bool) for v in values):
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        q = (1 - level) / 2
        lo, hi = (float(torch.nanquantile(t, p, interpolation=how)) for p, how in ((q, "lower"), (1 - q, "higher")))
        integral = all(isinstance(v, int) for v in values)
        return [int(lo), int(hi)] if integral and math.isfinite(lo) and math.isfinite(hi) else [lo, hi]
    if isinstance(first, Mapping) and all(isinstance(v, Mapping) and v.keys() == first.keys() for v in values):
        out = {k: interval([v[k] for v in values], level) for k in first}
        return {k: v for k, v in out.items() if v is not None} or None
    if isinstance(first, list) and all(isinstance(v, list) and len(v) == len(first) for v in values):
        out_list = [interval([v[i] for v in values], level) for i in range(len(first))]
        return out_list if any(x is not None for x in out_list) else None
    return None


@dataclass
class Bootstrap:
    """R replicates of a run's tables and their intervals."""

    intervals: dict[str, Any]
    """table -> its structure with each numeric field a [lo, hi] (a per-layer table: a list of rows)."""
    replicates: list[dict[str, Any]]
    """Each replicate's tables (those that read no position: the run's own)."""
    counts: torch.Tensor
    """(R, n_positions) the replicates' weights."""
    block: int
    seed: int


def replicate_tables(
    inputs: Inputs, tables: Mapping[str, Any], counts: torch.Tensor, wanted: Sequence[str], directions: tuple[str, ...]
) -> tuple[dict[str, Any], Context]:
    """The tables `wanted` under one replicate's counts, through their registry entries (the run's
    identity, which reads no position, from `tables`), and the context. directions: the writes whose
    bases some table reads with directions (eigh); the others' spectra come from one spectra.spectra call
    per write (Context.spectra)."""
    c = Context(inputs, counts=counts, directions=directions, refit=False)
    before = set(inputs.memo)
    for key in KEYS:
        if key not in directions:
            c.spectra(key)
    out = {name: table(c, name) if TABLES[name].reads else tables[name] for name in wanted}
    if c.key:  # the replicate's small results leave the run's memo (the run's own, key (), stay)
        for k in set(inputs.memo) - before:
            if k[-1] == c.key:
                del inputs.memo[k]
    return out, c


def bootstrap(
    inputs: Inputs,
    tables: Mapping[str, Any],
    replicates: int = REPLICATES,
    block: int = BLOCK,
    seed: int = SEED,
    stages: Sequence[str] = ("tables",),
) -> Bootstrap:
    """The run's tables (of `stages`, those present in `tables`) recomputed under R moving-block
    replicates, and their 95% percentile intervals: intervals[table][row][field] = [lo, hi] (a scalar
    table: [lo, hi]; a dict table: intervals[table][field])."""
    if any(s not in STAGES for s in stages):
        raise ValueError(f"stages must be among {STAGES}, got {stages}")
    wanted = [n for n, t in TABLES.items() if t.stage in stages and n in tables]
    counts = block_counts(chunk_sizes(inputs.selection.where), replicates, block, seed)
    # the first replicate fits spectra first and so finds the writes whose directions a table reads:
    # the others fit those with eigh at once (their spectra come with them)
    first, c = replicate_tables(inputs, tables, counts[0], wanted, ())
    reps = [first] + [replicate_tables(inputs, tables, r, wanted, c.with_directions)[0] for r in counts[1:]]
    positional = [n for n in wanted if TABLES[n].reads]
    intervals = {n: interval([rep[n] for rep in reps]) for n in positional}
    return Bootstrap({n: v for n, v in intervals.items() if v is not None}, reps, counts, block, seed)


def stability_of(
    items: Sequence[Claim | Cell], tables: Mapping[str, Any], replicates: Sequence[Mapping[str, Any]]
) -> dict[str, float | None]:
    """claim id -> the share of replicates in which `decide` gives the verdict of all positions
    (an undecided replicate counts as not the same); None where all positions decide nothing."""
    out: dict[str, float | None] = {}
    for item in items:
        holds = decide(item, tables, cell_value).holds
        if holds is None:
            out[item.id] = None
            continue
        same = sum(decide(item, rep, cell_value).holds == holds for rep in replicates)
        out[item.id] = same / len(replicates)
    return out


def bootstrap_of(
    run: Run,
    replicates: int = REPLICATES,
    block: int = BLOCK,
    seed: int = SEED,
    write_up: WriteUp = EXP7_WRITE_UP,
    follow_ups: bool = False,
) -> dict[str, Any]:
    """The bootstrap of one run: {"intervals": bootstrap's, "stability": {claim id: share or None},
    "replicates": R, "block": b, "seed": s}; cached in the run's store (stage "bootstrap"); needs the
    held capture. follow_ups: the follow-up tables and sentences too."""
    meta = cache_meta(
        "bootstrap", BOOTSTRAP_VERSION, run, write_up, follow_ups, replicates=replicates, block=block, seed=seed
    )

    def compute() -> dict[str, Any]:
        tables = {**run.tables, **(run.followups if follow_ups else {})}
        require_held(run, "--bootstrap")
        inputs = run.context.inputs  # its memo may hold the full fit's per-prediction NLL already
        stages = STAGES if follow_ups else ("tables",)
        b = bootstrap(inputs, tables, replicates, block, seed, stages)
        stability = stability_of(judged(follow_ups, write_up), tables, b.replicates)
        return {
            "intervals": b.intervals,
            "stability": stability,
            "replicates": replicates,
            "block": block,
            "seed": seed,
        }

    stage = "bootstrap-followups" if follow_ups else "bootstrap"
    return run.store.get_or_compute_json(stage, run.config.key(), meta, compute)
