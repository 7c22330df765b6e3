"""Every table, one entry each: what it is, how it is built, what it reads, where it goes.

Everything that lists table names derives it from TABLES: Run.tables and Run.followups (computing
and caching, `build`), the tables recomputed without positions (lib/robustness/dropped.py), the
search's sources and recorded reads (lib/robustness), the snapshots (claims/test_snapshots.py) and
the order of `python -m lib tables --json` (`write_up_order`). Adding a table is one entry here
plus its function (docs/adding-a-table.md).

A builder takes a Context (lib/tables/context.py): the run's statistics under a weight per position
(every position once, a drop set, a bootstrap replicate's counts), and the bases fitted from them
once; so the same builder serves Run.tables, the fragility search's and the bootstrap's recomputations.
A builder of projected passes gives them as a function of the context whose bases they use
(`c.nll_means(lambda f: ..., desc)`): the bootstrap holds the bases at the full-data fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lib.measure.spectra import Pca
from lib.measure.stats import KEYS
from lib.tables.causes import (
    balanced_reconstruction,
    norm_concentration,
    own_reconstruction,
    pc1_origin,
    shared_balanced,
    shared_overlap,
    shared_pca_normalised,
    unembedding_overlap,
    write_sources,
)
from lib.tables.context import Context, Inputs
from lib.tables.core import (
    attn_ffn_table,
    lowrank_ks,
    lowrank_table,
    norms_table,
    ppl_rows,
    projections,
    reconstruction_tables,
)
from lib.tables.followups import (
    layer_pca_without_outliers,
    shared_ablation_projections,
    shared_ablation_table,
    site_only_projections,
    subspace_overlap,
)

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.measure.stats import Capture, Stats
    from lib.setup.corpus import Selection

STAGES = ("tables", "followups")
"""Run.tables (always computed), Run.followups (7F-7H: on request); each cached as one JSON entry."""
K_COLUMN = "k"
"""The column of a perplexity table known without the projected passes (its K list)."""


@dataclass(frozen=True)
class Table:
    """One table of the tables JSON."""

    name: str
    section: str
    """The report section: 7A-7E, causes, follow-ups, or run (the run's identity)."""
    build: Callable[[Context], Any] | None = None
    """The whole table from a context; derived from `row` where the table is built row by row."""
    row: Callable[[Context, int], Any] | None = None
    """Layer i's row (per_layer tables built row by row): a recomputation computes only the rows a claim reads."""
    reads: tuple[str, ...] = ("delta_phi",)
    """The writes (KEYS, or "norm": 7A's per-position norms of Δφ) whose positions it is computed from:
    the fragility search ranks positions by their influence on these. (): no position changes it."""
    per_layer: bool = False
    """Row i is layer i, computed from layer i's writes only."""
    passes: bool = False
    """Needs forward passes (projected ones): costly to recompute; its K column is known without them."""
    perplexity: bool = False
    """A perplexity (7D, 7F, 7H, the baseline): a claim reading it beyond the K column is searched as
    one whose every recomputation runs the projected passes (no single-position try, no shrinking)."""
    unsnapshotted: str = ""
    """Why no snapshot locks it ("": claims/test_snapshots.py snapshots it)."""
    write_up: bool = False
    """One of the write-up's tables: first in the tables JSON, in registry order."""
    stage: str = "tables"
    """STAGES: computed with Run.tables, or with Run.followups on request."""

    def __post_init__(self) -> None:
        if (self.build is None) == (self.row is None):
            raise ValueError(f"table {self.name!r}: give build or row, not both")
        if self.stage not in STAGES:
            raise ValueError(f"table {self.name!r}: stage {self.stage!r} is not one of {STAGES}")

    def __call__(self, c: Context) -> Any:
        if self.row is not None:
            return [self.row(c, i) for i in range(c.n_layers)]
        assert self.build is not None
        return self.build(c)


TABLES: dict[str, Table] = {}
"""name -> entry, in the tables JSON's order."""


def register(table: Table) -> Table:
    """Add a table (the registry's entries below, a test's toy one); its name must be new."""
    if table.name in TABLES:
        raise ValueError(f"table {table.name!r} is registered already")
    TABLES[table.name] = table
    return table


def unregister(name: str) -> None:
    del TABLES[name]


def table(c: Context, name: str) -> Any:
    """A table built on the context, once per run, weighting and `refit` (a builder may read another
    table): a refitted and a fixed-basis context with the same counts give different 7D tables."""
    fixed = () if c.refit is True or c.counts is None else ("fixed basis", c.refit)
    return c.once(("table", name, *fixed), lambda: TABLES[name](c), shared=True)


def build(c: Context, stage: str = "tables") -> dict[str, Any]:
    """Every table of one stage, JSON-shaped, in registry order."""
    return {name: table(c, name) for name, t in TABLES.items() if t.stage == stage}


def names(stage: str | None = None, **flags: Any) -> tuple[str, ...]:
    """The registered tables (of one stage) whose entries have these field values, in registry order."""
    return tuple(
        n
        for n, t in TABLES.items()
        if (stage is None or t.stage == stage) and all(getattr(t, k) == v for k, v in flags.items())
    )


def write_up_order() -> tuple[str, ...]:
    """The write-up's tables, as the tables JSON puts them first."""
    return names(write_up=True)


def snapshotted(stage: str | None = None) -> tuple[str, ...]:
    """The tables claims/test_snapshots.py locks."""
    return names(stage, unsnapshotted="")


# ---------------------------------------------------------------- the builders the entries share
def _reconstruction(c: Context) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return c.once(("reconstruction",), lambda: reconstruction_tables(c.light.sample, c.shared))


def _balanced(c: Context) -> Pca:
    return c.once(("balanced",), lambda: shared_balanced(c.stats, c.centred))


def _lowrank(c: Context) -> list[dict[str, Any]]:
    nll = c.nll_means(lambda f: projections(f.bases("delta_phi"), f.shared, f.ks), "7D low-rank passes")
    return lowrank_table(c.baseline_nll, nll, c.ks)


def _unembedding(c: Context) -> dict[str, Any]:
    k90 = [row["k90"] for row in table(c, "layer_pca")]
    attn_k90 = [row["attn_k90"] for row in table(c, "attn_ffn")]
    return unembedding_overlap(c.inputs.readout, c.bases("delta_phi"), c.bases("attn"), k90, attn_k90)


def _site_only(c: Context, site: str) -> list[dict[str, Any]]:
    """7F: one write projected at every layer with its own layers' bases (site_only_projections)."""
    variants = lambda f: site_only_projections(f.bases(site), f.ks, site)  # noqa: E731
    return ppl_rows(c.baseline_nll, c.nll_means(variants, f"7F {site}-only passes"), c.ks)


def _shared_ablation(c: Context) -> list[dict[str, Any]]:
    variants = lambda f: shared_ablation_projections(f.shared, f.n_layers, f.ks)  # noqa: E731
    nll = c.nll_means(variants, "7H shared-ablation passes")
    return shared_ablation_table(c.baseline_nll, nll, c.ks)


def _model_shape(c: Context) -> dict[str, int]:
    if c.inputs.bridge is None:
        raise KeyError("model_shape needs the model")
    cfg = c.inputs.bridge.cfg
    return {"n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "d_model": cfg.d_model}


IDENTITY = "the run's identity, not a measurement: the run id that names the snapshot directory fixes it"
for entry in (
    # the write-up's tables 7A-7E (lib/tables/core.py), in its order
    Table("config", "run", build=lambda c: c.inputs.config, reads=(), unsnapshotted=IDENTITY, write_up=True),
    Table("norms", "7A", build=lambda c: norms_table(c.light.norms), reads=("norm",), per_layer=True, write_up=True),
    Table(
        "layer_pca",
        "7B",
        row=lambda c, i: {"layer": i, **c.pca("delta_phi", i).k_columns()},
        per_layer=True,
        write_up=True,
    ),
    Table("shared_pca", "7C", build=lambda c: c.shared.k_columns(), write_up=True),
    Table("reconstruction", "7C", build=lambda c: _reconstruction(c)[0], write_up=True),
    Table("baseline_ppl", "7D", build=lambda c: math.exp(c.baseline_nll), perplexity=True, write_up=True),
    Table("lowrank_ppl", "7D", build=_lowrank, passes=True, perplexity=True, write_up=True),
    Table(
        "attn_ffn",
        "7E",
        row=lambda c, i: {**attn_ffn_table([c.pca("attn", i)], [c.pca("ffn", i)])[0], "layer": i},
        reads=("attn", "ffn"),
        per_layer=True,
        write_up=True,
    ),
    # the suite's own views of 7B-7C
    Table("reconstruction_per_layer", "7C", build=lambda c: _reconstruction(c)[1]),
    Table("layer_spectra", "7B", row=lambda c, i: c.pca("delta_phi", i).ratio.tolist(), per_layer=True),
    Table(
        "reconstruction_sample",
        "7C",
        build=lambda c: len(c.light.sample[0]),
        unsnapshotted="min(positions, SAMPLE_SIZE): fixed by the token count the run id names",
    ),
    Table("model_shape", "run", build=_model_shape, reads=(), unsnapshotted=IDENTITY),
    # the causes (lib/tables/causes.py)
    Table("shared_pca_normalised", "causes", build=lambda c: shared_pca_normalised(c.stats, c.centred)),
    Table("shared_pca_balanced", "causes", build=lambda c: _balanced(c).k_columns()),
    Table(
        "reconstruction_balanced_per_layer",
        "causes",
        build=lambda c: balanced_reconstruction(c.light.sample, _balanced(c), c.shared),
    ),
    Table("shared_overlap", "causes", build=lambda c: shared_overlap(c.shared, c.bases("delta_phi"))),
    Table(
        "reconstruction_own_per_layer",
        "causes",
        build=lambda c: own_reconstruction(c.light.sample, c.bases("delta_phi")),
    ),
    Table(
        "write_sources",
        "causes",
        build=lambda c: write_sources(c.stats_of(len(KEYS)), c.bases("delta_phi"), c.bases("ffn"), c.centred),
        reads=KEYS,
        per_layer=True,
    ),
    Table("unembedding_overlap", "causes", build=_unembedding, reads=("delta_phi", "attn")),
    Table(
        "norm_concentration",
        "causes",
        build=lambda c: norm_concentration(c.light, c.where),  # type: ignore[arg-type]
        reads=("norm",),
        per_layer=True,
    ),
    Table(
        "pc1_origin",
        "causes",
        build=lambda c: pc1_origin(c.light, c.bases("delta_phi"), c.inputs.b_out, c.sample_where),
        per_layer=True,
    ),
    # the follow-ups 7F-7H (lib/tables/followups.py), on request
    Table(
        "attn_only_ppl",
        "follow-ups",
        build=lambda c: _site_only(c, "attn"),
        reads=("attn",),
        passes=True,
        perplexity=True,
        stage="followups",
    ),
    Table(
        "ffn_only_ppl",
        "follow-ups",
        build=lambda c: _site_only(c, "ffn"),
        reads=("ffn",),
        passes=True,
        perplexity=True,
        stage="followups",
    ),
    Table(
        "subspace_overlap",
        "follow-ups",
        build=lambda c: subspace_overlap(c.bases("attn"), c.bases("ffn")),
        reads=("attn", "ffn"),
        stage="followups",
    ),
    Table("shared_ablation", "follow-ups", build=_shared_ablation, passes=True, perplexity=True, stage="followups"),
    Table(
        "layer_pca_without_outliers",
        "follow-ups",
        build=lambda c: layer_pca_without_outliers(c.stats, c.where, c.centred, c.vectors_at),  # type: ignore[arg-type]
        reads=("delta_phi", "norm"),
        per_layer=True,
        stage="followups",
    ),
):
    register(entry)


def followup_tables(
    bridge: TransformerBridge,
    selection: Selection,
    stats: Stats,
    *,
    centred: bool,
    ks: Sequence[int],
    batch_size: int = 8,
    progress: Callable[[list], Iterable] = iter,
    attention: str = "sdpa",
    capture: Capture | None = None,
) -> dict[str, Any]:
    """Tables 7F-7H and layer_pca_without_outliers of one run, outside a Run (the tests' entry point).

    ks: the run's K list (config.ks), completed by lowrank_ks as 7D's. `capture`: the held Δφ,
    if any; without it the outliers' few vectors are recaptured (followups.recapture).
    """
    inputs = Inputs(
        stats,
        selection,
        centred,
        config={},
        ks=lowrank_ks(stats.total.shape[-1], ks),
        bridge=bridge,
        capture=capture,
        batch_size=batch_size,
        attention=attention,
        progress=lambda desc: progress,
    )
    return build(Context(inputs), "followups")
