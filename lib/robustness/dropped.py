"""Tables 7A-7E, the causes and the follow-ups with some positions left out, through the tables' own
builders (lib/tables/registry.py) on a Context without those positions (lib/tables/context.py).

`Dropped` is a read-only mapping with the keys of Run.tables; each table, and each layer's row of
the tables built row by row, is computed when first read, so a claim that reads layer 2's K90 costs
one eigvalsh. A table of perplexities (7D, 7F, 7H) needs new projected passes and is computed only
when a perplexity is read; its K column is known without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from lib.measure.stats import KEYS, Stats
from lib.tables.context import Context, Inputs, Where
from lib.tables.core import lowrank_ks
from lib.tables.registry import K_COLUMN, TABLES, table

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.measure.stats import Capture
    from lib.setup.corpus import Selection

__all__ = ["Base", "Dropped", "Where", "downdate"]


@dataclass
class Base:
    """What every drop set shares: the held capture, its statistics, the run's settings and tables."""

    capture: Capture
    stats: Stats
    selection: Selection
    tables: dict[str, Any]
    """The run's own tables (Run.tables): the verdicts before any drop, and the keys to rebuild."""
    centred: bool
    bridge: TransformerBridge | None = None
    """Needed for 7D's passes and the causes' weights; None: those tables raise."""
    batch_size: int = 1
    attention: str = "sdpa"

    @cached_property
    def inputs(self) -> Inputs:
        """The tables' inputs (lib/tables/context.py), shared by every drop set; K list and config from the
        run's tables."""
        config = self.tables.get("config", {})
        ks = lowrank_ks(self.stats.total.shape[-1], config["ks"]) if "ks" in config else None
        return Inputs(
            self.stats,
            self.selection,
            self.centred,
            config,
            ks=ks,
            bridge=self.bridge,
            capture=self.capture,
            batch_size=self.batch_size,
            attention=self.attention,
        )

    @property
    def vectors(self) -> dict[str, torch.Tensor]:
        """KEYS -> the capture's (n_layers, n_positions, d_model) writes."""
        return self.inputs.vectors

    @property
    def memo(self) -> dict[tuple[Any, ...], Any]:
        """(table, drop set) -> the table, (spectrum, key, layer, drop set) -> the layer's spectrum: each
        computed once per drop set, whichever claim reads it first (Inputs.memo)."""
        return self.inputs.memo


def downdate(base: Base, drop: Sequence[int]) -> Stats:
    """Stats without the positions `drop` (flat indices): moments downdated, norms, sample and NLL filtered."""
    return Context(base.inputs, drop, directions=()).stats_of(len(KEYS))


class LazyRow(Mapping[str, Any]):
    """A row whose `known` fields are given and whose others come from `fill()` (the whole table)."""

    def __init__(self, known: dict[str, Any], fill: Callable[[], dict[str, Any]]) -> None:
        self.known, self.fill = known, fill

    def __getitem__(self, key: str) -> Any:
        return self.known[key] if key in self.known else self.fill()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fill())

    def __len__(self) -> int:
        return len(self.fill())


class LazyRows(Sequence[Any]):
    """Rows computed one at a time: row(i) on first read."""

    def __init__(self, n: int, row: Callable[[int], Any]) -> None:
        self.n, self.row, self.done = n, row, {}  # type: ignore[var-annotated]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(f"row {i} of {self.n}")
        i %= self.n
        if i not in self.done:
            self.done[i] = self.row(i)
        return self.done[i]


class Dropped(Mapping[str, Any]):
    """Run.tables without the positions `drop`: each table computed when first read, by its registry entry."""

    def __init__(self, base: Base, drop: Sequence[int]) -> None:
        self.base = base
        # spectra first: most claims read K (Context.directions)
        self.context = Context(base.inputs, drop, directions=())
        self.drop = self.context.drop
        self.done: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in TABLES or name not in self.base.tables:
            raise KeyError(name)
        if name not in self.done:
            self.done[name] = self._build(name)
        return self.done[name]

    def _build(self, name: str) -> Any:
        entry, c = TABLES[name], self.context
        if not entry.reads:  # no position changes it
            return self.base.tables[name]
        if entry.row is not None:  # row by row, as claims read them
            return LazyRows(c.n_layers, lambda i: entry.row(c, i))  # type: ignore[misc]
        if entry.passes:  # the K column without the passes, the rest on the first other read
            return [
                LazyRow({K_COLUMN: row[K_COLUMN]}, lambda i=i: table(c, name)[i])
                for i, row in enumerate(self.base.tables[name])
            ]
        # whichever claim reads it first computes it for every claim that drops the same positions
        return table(c, name)

    def __iter__(self) -> Iterator[str]:
        return (k for k in self.base.tables if k in TABLES)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def stats_of(self, n_keys: int) -> Stats:
        return self.context.stats_of(n_keys)
