"""How much each number moves when the positions are drawn again: a circular block bootstrap over
positions, every table recomputed per replicate through the registry's builders on the one weighted
engine (lib/tables/context.py); per numeric field its SD, its shift and a 95% interval, a prediction
interval for a fresh sample by default (lib/robustness/intervals.py); per claim its stability, judged
on pseudo-samples built from replicate pairs.

Künsch, "The jackknife and the bootstrap for general stationary observations" (Ann. Statist. 1989):
blocks of neighbours, since neighbouring positions share their context and their writes are not
independent. Politis & Romano, "A circular block-resampling procedure for stationary data" (1992):
blocks wrap. Politis & White, "Automatic block-length selection for the dependent bootstrap"
(Econometric Reviews 2004; corrected by Patton, Politis & White 2009): the block length.

A replicate keeps each chunk's BOS (its first position, where counted) exactly once: its own stratum,
since every real window holds it once and its write is unlike every other (GPT-2 small's layer-2 BOS
write is hundreds of times the others'). It draws the chunk's other m counted positions as ceil(m / b)
blocks of b consecutive positions (b = min(block, m)) with uniform starts, wrapping past the chunk's
last position to its first, and keeps the first m drawn: blocks never cross a chunk's boundary and
every chunk keeps its size. The block length is the median Politis-White length (circular) over each
layer's series of Δφ norms and of influences on CEV at K90, capped at a quarter of the longest chunk
(`block_rule`), unless --bootstrap-block sets it. The counts are a Context's weights (refit=False): the
moments, norms, 7C sample and NLL averages are reweighted, the PCA bases refitted from the reweighted
moments, 7D/7F/7H's perplexities the full fit's per-prediction NLL reweighted (the bases held at the
full-data fit: those tables' intervals are lower bounds, `FIXED_BASIS`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from lib.measure.stats import KEYS
from lib.robustness.intervals import KINDS, LEVEL, curves_of, pseudo_samples, summarise
from lib.robustness.judged import cache_meta, cell_value, judged, require_held
from lib.setup.options import option
from lib.setup.progress import progress
from lib.tables.context import Context, Inputs
from lib.tables.registry import STAGES, TABLES, table
from lib.writeup.judge import decide
from lib.writeup.write_up import EXP7_WRITE_UP, WriteUp

if TYPE_CHECKING:
    from lib.tables.run import Run
    from lib.writeup.claims import Cell, Claim

BOOTSTRAP_VERSION = 2
"""Bump when the resampling or the recomputation changes, so cached intervals are recomputed."""
REPLICATES = 200
BLOCK: int = option("bootstrap-block").default
"""--bootstrap-block's default: 0, the block length by rule (`block_rule`); N >= 1 sets it."""
SEED = 0
REFIT_AT_MOST = 16
"""--bootstrap-refit: the projected passes of K <= 16 run with each replicate's own bases (where the
fixed bases understate the SD most); larger K keep the full fit's."""
FIXED_BASIS = tuple(n for n, t in TABLES.items() if t.passes)
"""Tables of projected passes (7D, 7F, 7H): a replicate reweights the full fit's per-prediction NLL, its
bases held at the full-data fit, so their intervals are lower bounds (refitted per replicate, 7D's
shared-basis ratio's SD is 1.34-1.38x larger at K = 8 and 16: docs/uncertainty.md)."""


def strata(where: Sequence[tuple[int, int]]) -> list[tuple[int, bool]]:
    """The resampling strata, from Selection.where (chunk-major): (size, resampled) in order; a chunk's
    BOS (its position 0, where counted) is a stratum of its own, kept once in every replicate."""
    out: list[tuple[int, bool]] = []
    chunk, size = None, 0
    for c, p in [*where, (None, None)]:
        if c != chunk:
            if size:
                out.append((size, True))
            chunk, size = c, 0
            if p == 0:
                out.append((1, False))
                continue
        size += 1
    return out


def block_counts(
    chunks: Sequence[int | tuple[int, bool]], replicates: int, block: int, seed: int = SEED
) -> torch.Tensor:
    """(replicates, positions) long: how often each position (in the strata's order, as Selection.where)
    is drawn by a circular block bootstrap within each stratum; a stratum (size, False) is kept once,
    a bare size is resampled; every stratum's counts sum to its size."""
    if block < 1 or replicates < 1:
        raise ValueError(f"the bootstrap needs block >= 1 and replicates >= 1, got {block}, {replicates}")
    parts = [(c, True) if isinstance(c, int) else c for c in chunks]
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(replicates, sum(m for m, _ in parts), dtype=torch.long)
    offset = 0
    for m, resampled in parts:
        if m and not resampled:
            counts[:, offset : offset + m] = 1
        elif m:
            b = min(block, m)
            starts = torch.randint(0, m, (replicates, math.ceil(m / b)), generator=g)  # (R, blocks)
            drawn = ((starts[..., None] + torch.arange(b)) % m).flatten(1)[:, :m]  # (R, m) positions in the stratum
            counts[:, offset : offset + m].scatter_add_(1, drawn, torch.ones_like(drawn))
        offset += m
    return counts


def politis_white(series: torch.Tensor) -> float | None:
    """The circular block bootstrap's optimal block length of one (n,) series (arch's implementation of
    Politis & White 2004 with Patton, Politis & White 2009's correction); None for a constant series."""
    from arch.bootstrap import optimal_block_length

    x = series.double().numpy()
    if len(x) < 8 or float(x.std()) == 0.0:
        return None
    length = float(optimal_block_length(x)["circular"].iloc[0])
    return length if math.isfinite(length) else None


def block_rule(inputs: Inputs) -> dict[str, Any]:
    """The block length by rule: the median Politis-White length over each layer's series of Δφ norms
    and of each position's influence on CEV at K90 (||U_K^T (x - mu)||^2 - CEV_K ||x - mu||^2, up to a
    constant), BOS left out, capped at a quarter of the longest chunk (at least 1)."""
    where = inputs.selection.where
    keep = torch.tensor([p != 0 for _, p in where])
    sizes = [m for m, resampled in strata(where) if resampled]
    cap = max(1, max(sizes, default=4) // 4)
    full = Context(inputs, directions=("delta_phi",))
    x_all = inputs.vectors["delta_phi"]  # (n_layers, n, d_model)
    lengths: list[float] = []
    for layer in range(full.n_layers):
        fit = full.pca("delta_phi", layer, vectors=True)
        k = fit.k_at(0.9)
        x = x_all[layer, keep].double() - fit.mean  # (n', d)
        cev = float(torch.cumsum(fit.ratio, 0)[k - 1]) if k else 0.0
        influence = (x @ fit.directions[:, :k]).square().sum(-1) - cev * x.square().sum(-1)  # (n',)
        for series in (inputs.stats.norms[layer, keep], influence):
            length = politis_white(series)
            if length is not None:
                lengths.append(length)
    median = statistics.median(lengths) if lengths else 1.0
    return {
        "rule": "Politis-White (arch.bootstrap.optimal_block_length, circular), median over layers' norm and K90-influence series",
        "median": median,
        "cap": cap,
        "block": int(min(cap, max(1, math.ceil(median)))),
    }


@dataclass
class Bootstrap:
    """R replicates of a run's tables and what they say about each number."""

    fields: dict[str, dict[str, Any]]
    """{"prediction", "population", "sd", "shift"} -> table -> its structure with each numeric field's
    value ([lo, hi] for the intervals; a per-layer table: a list of rows)."""
    replicates: list[dict[str, Any]]
    """Each replicate's tables (those that read no position: the run's own)."""
    curves: tuple[dict[Any, torch.Tensor], list[dict[Any, torch.Tensor]]]
    """The K fields' cumulative-variance curves: the estimate's and each replicate's (intervals.curves_of)."""
    positional: list[str]
    """The tables that read the positions (the others are the run's own in every replicate)."""
    counts: torch.Tensor
    """(R, n_positions) the replicates' weights."""
    block: int
    seed: int
    rule: dict[str, Any] | None = None
    """block_rule's record where the block length came from the rule; None where it was given."""

    @property
    def intervals(self) -> dict[str, Any]:
        """The prediction intervals (table -> structure of [lo, hi])."""
        return self.fields["prediction"]

    def pseudo(self, tables: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
        """The pseudo-samples a claim's stability is judged on (intervals.pseudo_samples)."""
        return pseudo_samples(tables, self.replicates, self.curves, self.positional, self.seed)


def replicate_tables(
    inputs: Inputs,
    tables: Mapping[str, Any],
    counts: torch.Tensor,
    wanted: Sequence[str],
    directions: tuple[str, ...],
    refit: tuple[int, ...] = (),
) -> tuple[dict[str, Any], Context]:
    """The tables `wanted` under one replicate's counts, through their registry entries (the run's
    identity, which reads no position, from `tables`), and the context. directions: the writes whose
    bases some table reads with directions (eigh); the others' spectra come from one spectra.spectra call
    per write (Context.spectra). refit: the K values whose projected passes use the replicate's bases."""
    c = Context(inputs, counts=counts, directions=directions, refit=refit or False)
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
    level: float = LEVEL,
    refit: tuple[int, ...] = (),
) -> Bootstrap:
    """The run's tables (of `stages`, those present in `tables`) recomputed under R circular-block
    replicates (block 0: by rule), and each numeric field's intervals, SD and shift (Bootstrap.fields).
    refit: the K values whose projected passes use each replicate's own bases."""
    if any(s not in STAGES for s in stages):
        raise ValueError(f"stages must be among {STAGES}, got {stages}")
    rule = block_rule(inputs) if block == 0 else None
    block = rule["block"] if rule is not None else block
    wanted = [n for n, t in TABLES.items() if t.stage in stages and n in tables]
    counts = block_counts(strata(inputs.selection.where), replicates, block, seed)
    # the first replicate fits spectra first and so finds the writes whose directions a table reads:
    # the others fit those with eigh at once (their spectra come with them)
    reps, curves, c = [], [], None
    for r in progress(f"bootstrap: {replicates} replicates")(list(counts)):
        rep, c = replicate_tables(inputs, tables, r, wanted, () if c is None else c.with_directions, refit)
        reps.append(rep)
        curves.append(curves_of(c, tables))
    own = curves_of(Context(inputs, directions=()), tables)
    positional = [n for n in wanted if TABLES[n].reads]
    fields = summarise(tables, reps, (own, curves), positional, level, seed)
    return Bootstrap(fields, reps, (own, curves), positional, counts, block, seed, rule)


def stability_of(
    items: Sequence[Claim | Cell], tables: Mapping[str, Any], samples: Iterable[Mapping[str, Any]]
) -> dict[str, float | None]:
    """claim id -> the share of `samples` (tables: replicates, or Bootstrap.pseudo's pseudo-samples) on
    which `decide` gives the verdict of all positions (an undecided one counts as not the same); None
    where all positions decide nothing."""
    holds = {item.id: decide(item, tables, cell_value).holds for item in items}
    same = dict.fromkeys(holds, 0)
    n = 0
    for sample in samples:
        n += 1
        for item in items:
            if holds[item.id] is not None:
                same[item.id] += decide(item, sample, cell_value).holds == holds[item.id]
    return {k: (None if h is None or n == 0 else same[k] / n) for k, h in holds.items()}


def bootstrap_of(
    run: Run,
    replicates: int = REPLICATES,
    block: int = BLOCK,
    seed: int = SEED,
    write_up: WriteUp = EXP7_WRITE_UP,
    follow_ups: bool = False,
    refit: bool = False,
) -> dict[str, Any]:
    """The bootstrap of one run, JSON-shaped: {"intervals": the prediction intervals, "population": the
    basic intervals, "sd", "shift" (each table -> structure), "stability": {claim id: share or None},
    "replicates": R, "block": b, "block_rule": block_rule's record or None, "seed": s, "fixed_basis":
    FIXED_BASIS, "refit": the K values refitted}; cached in the run's store (stage "bootstrap"); needs the
    held capture. block 0: by rule. follow_ups: the follow-up tables and sentences too. refit: the
    projected passes of K <= REFIT_AT_MOST with each replicate's bases (--bootstrap-refit)."""
    meta = cache_meta(
        "bootstrap", BOOTSTRAP_VERSION, run, write_up, follow_ups, replicates=replicates, block=block, seed=seed
    )
    if refit:
        meta["refit"] = REFIT_AT_MOST

    def compute() -> dict[str, Any]:
        tables = {**run.tables, **(run.followups if follow_ups else {})}
        require_held(run, "--bootstrap")
        inputs = run.context.inputs  # its memo may hold the full fit's per-prediction NLL already
        stages = STAGES if follow_ups else ("tables",)
        ks = tuple(k for k in inputs.ks or () if k <= REFIT_AT_MOST) if refit else ()
        b = bootstrap(inputs, tables, replicates, block, seed, stages, refit=ks)
        stability = stability_of(judged(follow_ups, write_up), tables, b.pseudo(tables))
        return {
            "intervals": b.fields["prediction"],
            "population": b.fields["population"],
            "sd": b.fields["sd"],
            "shift": b.fields["shift"],
            "stability": stability,
            "replicates": replicates,
            "block": b.block,
            "block_rule": b.rule,
            "seed": seed,
            "fixed_basis": [n for n in FIXED_BASIS if n in b.positional],
            "refit": list(ks),
        }

    stage = "bootstrap-followups" if follow_ups else "bootstrap"
    return run.store.get_or_compute_json(stage, run.config.key(), meta, compute)


def _cell_path(cell: Cell, tables: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Where a cell's number sits in its table: (column,), (row index, column) or () for a scalar."""
    table = tables.get(cell.table)
    if table is None:
        return None
    if cell.match is None:
        return () if cell.column == "" else (cell.column,)
    key, want = cell.match
    at = next((i for i, row in enumerate(table) if row[key] == want), None)
    return None if at is None else (at, cell.column)


def _get(node: Any, path: Sequence[Any]) -> Any:
    for p in path:
        if node is None:
            return None
        node = node.get(p) if isinstance(node, Mapping) else (node[p] if isinstance(p, int) and p < len(node) else None)
    return node


def interval_of(
    boot: Mapping[str, Any], tables: Mapping[str, Any], cell: Cell, kind: str = "prediction"
) -> dict[str, Any] | None:
    """A cell's uncertainty, as the row shows it: {"interval": [lo, hi], "kind": the interval's kind
    (with ", lower bound" for a table of projected passes, but a row whose K was refitted), "sd", "shift"}; None where the bootstrap
    has no interval for it. kind: "prediction" (a fresh sample of the same size) or "population"."""
    if kind not in KINDS:
        raise ValueError(f"interval kind {kind!r} is not one of {KINDS}")
    path = _cell_path(cell, tables)
    key = "intervals" if kind == "prediction" else kind
    if path is None or key not in boot:
        return None
    band = _get((boot.get(key) or {}).get(cell.table), path)
    if band is None:
        return None
    refitted = cell.match is not None and cell.match[0] == "k" and cell.match[1] in boot.get("refit", ())
    lower = cell.table in boot.get("fixed_basis", ()) and not refitted
    return {
        "interval": band,
        "kind": kind + (", lower bound (bases held at the full fit)" if lower else ""),
        "sd": _get((boot.get("sd") or {}).get(cell.table), path),
        "shift": _get((boot.get("shift") or {}).get(cell.table), path),
    }


def uncertainty_json(boot: Mapping[str, Any], kind: str = "prediction") -> dict[str, Any]:
    """What the tables JSON carries beside the tables: the intervals of `kind`, its name, every field's
    SD and shift, and how the positions were drawn (replicates, block, its rule, seed, the tables whose
    intervals are lower bounds)."""
    return {
        "intervals": boot["intervals"] if kind == "prediction" else boot[kind],
        "interval_kind": kind,
        "sd": boot.get("sd"),
        "shift": boot.get("shift"),
        "bootstrap": {k: boot.get(k) for k in ("replicates", "block", "block_rule", "seed", "fixed_basis", "refit")},
    }


def describe(boot: Mapping[str, Any], kind: str = "prediction") -> str:
    """One line for the terminal: how the positions were drawn and which interval is shown."""
    rule = boot.get("block_rule")
    how = f"Politis-White median {rule['median']:.1f}, cap {rule['cap']}" if rule else "--bootstrap-block"
    return (
        f"bootstrap: {boot['replicates']} replicates, block {boot['block']} ({how}), BOS kept once per chunk; "
        f"95 percent {kind} intervals"
    )
