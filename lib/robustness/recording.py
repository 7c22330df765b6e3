"""What a claim reads: its predicate run on the tables through a wrapper that logs each table, row and
field it touches (lib/robustness/dropk.py ranks positions by their influence on what a claim reads)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lib.tables.registry import K_COLUMN, TABLES, names


@dataclass
class Reads:
    rows: dict[str, set[int | None]] = field(default_factory=dict)
    """table -> row indices read (None: every row, or a table without rows)."""
    fields: dict[str, set[str]] = field(default_factory=dict)

    def row(self, table: str, i: int | None) -> None:
        self.rows.setdefault(table, set()).add(i)

    @property
    def passes(self) -> bool:
        """Whether it reads a perplexity (7D, 7F, 7H, the baseline; registry's `perplexity`) beyond the K
        column of a table of projected passes: each recomputation then runs the passes."""
        return any(
            bool(self.fields.get(name, set()) - {K_COLUMN}) if TABLES[name].passes else name in self.rows
            for name in names(perplexity=True)
        )


class _Row(Mapping[str, Any]):
    def __init__(self, data: Mapping[str, Any], table: str, reads: Reads) -> None:
        self.data, self.table, self.reads = data, table, reads

    def __getitem__(self, key: str) -> Any:
        self.reads.fields.setdefault(self.table, set()).add(key)
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class _Rows(Sequence[Any]):
    def __init__(self, data: Sequence[Any], table: str, reads: Reads) -> None:
        self.data, self.table, self.reads = data, table, reads

    def _wrap(self, item: Any) -> Any:
        return _Row(item, self.table, self.reads) if isinstance(item, Mapping) else item

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            for j in range(*i.indices(len(self.data))):
                self.reads.row(self.table, j)
            return [self._wrap(x) for x in self.data[i]]
        self.reads.row(self.table, i % len(self.data))
        return self._wrap(self.data[i])

    def __iter__(self) -> Iterator[Any]:
        self.reads.row(self.table, None)
        return (self._wrap(x) for x in self.data)

    def __len__(self) -> int:
        return len(self.data)


class Recorder(Mapping[str, Any]):
    """The tables, logging what a predicate reads."""

    def __init__(self, tables: Mapping[str, Any]) -> None:
        self.tables, self.reads = tables, Reads()

    def __getitem__(self, name: str) -> Any:
        value = self.tables[name]
        if isinstance(value, list):
            return _Rows(value, name, self.reads)
        self.reads.row(name, None)
        return _Row(value, name, self.reads) if isinstance(value, Mapping) else value

    def __contains__(self, name: object) -> bool:
        return name in self.tables

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables)

    def __len__(self) -> int:
        return len(self.tables)


def static_reads(claim: Any, tables: Mapping[str, Any]) -> Reads | None:
    """What a `check` expression reads, known from its syntax (lib/writeup/expression.py Check.reads); None
    for a Python predicate or a cell, whose reads the Recorder logs."""
    reads_of = getattr(getattr(claim, "predicate", None), "reads", None)
    if reads_of is None:
        return None
    reads = Reads()
    for table, (columns, rows) in reads_of(tables).items():
        reads.fields.setdefault(table, set()).update(columns)
        reads.rows.setdefault(table, set()).update(rows)
    return reads
