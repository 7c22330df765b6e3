"""A write-up's numbers as data: its set-up, its tables and their cells (`exp7/write-up.toml`).

The default write-up is exp7 (`../shared/seed/exp7.ja.md`, English: exp7.en.md): its
DOCUMENT_TABLES hold every number of tables 7A-7E in the shape of the measured tables
(lib/tables/), so a sentence's predicate runs on either; its CELLS are the table cells, each
with its tolerance and the reason for its size; its SETUP is what its numbers were measured on.
Another write-up is a directory with a `write-up.toml` and a `claims.toml` of the same shape
(`--write-up DIR`; docs/adding-a-claim.md).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Tables = dict[str, Any]
"""A tables dict: the measured tables (lib/tables/) or a write-up's own (Document.tables)."""
EXP7 = Path(__file__).parent / "exp7"
"""The default write-up's directory: Experiment 7 (write-up.toml, claims.toml)."""
THRESHOLDS = (0.50, 0.80, 0.90, 0.95)
"""The variance thresholds of the K columns (k50 ... k95), as fractions."""


@dataclass(frozen=True)
class Setup:
    """What the write-up's numbers were measured on: its cells are judged only on a run of this set-up.

    `differs` reads a run's config as JSON (RunConfig.to_json, the tables' "config"), so the write-up
    needs nothing of the run's code.
    """

    model: str
    """The Hub name (the option `gpt2` resolves to it), or a local model's content hash (`sha256:...`)."""
    model_name: str
    dataset: str
    """The option's name of the text; a local copy is recognised by `dataset_revision`."""
    dataset_revision: str
    """The text's content hash (exp7: WikiText-2 raw test, ../shared/data/wikitext-2-raw/wiki.test.raw)."""
    text_name: str
    n_tokens: int
    numerics: str
    positions: str
    pca: str

    def is_model(self, config: Mapping[str, Any]) -> bool:
        return self.model in (config.get("model"), config.get("model_revision"))

    def is_text(self, config: Mapping[str, Any]) -> bool:
        return config.get("dataset") == self.dataset or config.get("dataset_revision") == self.dataset_revision

    def differs(self, config: Mapping[str, Any]) -> list[str]:
        """The fields of the run's config that differ from the write-up's set-up (empty: its cells apply)."""
        same = {
            "model": self.is_model(config),
            "dataset": self.is_text(config),
            **{k: config.get(k) == getattr(self, k) for k in ("n_tokens", "numerics", "positions", "pca")},
        }
        return [k for k, ok in same.items() if not ok]

    def describe(self) -> str:
        return f"{self.model_name} on {self.text_name} at {self.n_tokens} positions with the default conventions"


@dataclass(frozen=True)
class Cell:
    """One number of the write-up's tables."""

    id: str
    section: str
    table: str
    row: int | None
    """Index into the table's rows (None for a scalar or the shared_pca dict)."""
    column: str
    value: float
    rtol: float
    atol: float
    reason: str
    match: tuple[str, Any] | None = None
    """The document's row as (key, value), key `layer` or `k`: the measured row with the same value is
    this cell's (None for a scalar or the shared_pca dict)."""

    def measured(self, tables: Tables) -> float | None:
        """The same cell of a measured table; None when that table has no such row (smaller model)."""
        table = tables[self.table]
        if self.match is None:
            return float(table if self.column == "" else table[self.column])
        key, want = self.match
        rows = [r for r in table if r[key] == want]
        return float(rows[0][self.column]) if rows else None

    def within(self, measured: float) -> bool:
        return math.isclose(measured, self.value, rel_tol=self.rtol, abs_tol=self.atol)


@dataclass(frozen=True)
class Document:
    """A write-up's set-up, tables and cells, loaded from its `write-up.toml`."""

    setup: Setup
    tables: Tables
    cells: tuple[Cell, ...]
    tolerances: dict[str, dict[str, Any]]
    """name -> {rtol, atol, reason}: how closely a reproduction must match, by kind of cell."""
    title: str = ""
    """What the report calls the write-up (write-up.toml's `title`)."""
    original: str = ""
    """The original document's file, where the sentences quote it (`ja`): exp7.ja.md."""
    sections: tuple[tuple[str, str], ...] = ()
    """(id, title) of each section, in the write-up's order ([sections]; empty where it names none)."""

    @property
    def section_ids(self) -> tuple[str, ...]:
        return tuple(s for s, _ in self.sections)

    def cells_in(self, *sections: str) -> list[Cell]:
        return [c for c in self.cells if c.section in sections]


CELL_KEYS = ("section", "table", "id", "columns")


def _check_cells(path: Path, tables: Tables, spec: dict[str, Any], sections: tuple[str, ...]) -> None:
    """A [[cells]] entry names a table of [tables] and columns its rows have: one line where it does not."""
    where = f"{path.name}: [[cells]] {spec.get('id', '(without an id)')}"
    missing = [k for k in CELL_KEYS if k not in spec]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}; every [[cells]] has {', '.join(CELL_KEYS)}")
    name = spec["table"]
    if name not in tables or name == "config":
        given = ", ".join(t for t in tables if t != "config")
        raise ValueError(f"{where}: table {name!r} is not in [tables]; its tables: {given}")
    if sections and spec["section"] not in sections:
        raise ValueError(f"{where}: section {spec['section']!r} is not one of [sections]: {', '.join(sections)}")
    table = tables[name]
    rows = table if isinstance(table, list) else [table]
    have = sorted({k for row in rows if isinstance(row, Mapping) for k in row}) if rows else []
    for column in spec["columns"]:
        if column == "" and not isinstance(table, (list, Mapping)):
            continue
        if not all(isinstance(row, Mapping) and column in row for row in rows):
            raise ValueError(
                f"{where}: column {column!r} is not in every row of table {name}; its columns: {', '.join(have)}"
            )


def _cells(tables: Tables, specs: list[dict[str, Any]], tolerances: dict[str, dict[str, Any]]) -> list[Cell]:
    """Each [[cells]] entry: every row of its table (or the scalar / dict; `rows`: the rows of those indices)
    times its columns, in row order."""
    cells: list[Cell] = []
    for spec in specs:
        table = tables[spec["table"]]
        rows = list(enumerate(table)) if isinstance(table, list) else [(None, table)]
        if "rows" in spec:  # some rows only (their indices); default: every row
            rows = [(i, row) for i, row in rows if i in spec["rows"]]
        for i, row in rows:
            for column, tol in spec["columns"].items():
                t = tolerances[tol]
                value = row if column == "" else row[column]
                match = None if i is None else (("k", row["k"]) if "k" in row else ("layer", row["layer"]))
                fields = dict(row) if isinstance(row, Mapping) else {}
                cell_id = spec["id"].format(column=column, **fields)
                cells.append(
                    Cell(
                        cell_id,
                        spec["section"],
                        spec["table"],
                        i,
                        column,
                        value,
                        t["rtol"],
                        t["atol"],
                        t["reason"],
                        match,
                    )
                )
    return cells


def load_document(directory: Path) -> Document:
    """The write-up in `directory` (its write-up.toml); ValueError naming the file and what is wrong."""
    path = Path(directory) / "write-up.toml"
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ValueError(f"write-up {str(directory)!r}: {path.name} cannot be read ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"write-up {str(directory)!r}: {path.name} is not TOML ({e})") from None
    missing = {"setup", "tables"} - data.keys()
    if missing:
        raise ValueError(
            f"{path}: missing sections {sorted(missing)}; expected [setup], [tables], [tolerances], [[cells]]"
        )
    fields = [f.name for f in dataclasses.fields(Setup)]
    missing = [f for f in fields if f not in data["setup"]]
    unknown = sorted(set(data["setup"]) - set(fields))
    if missing or unknown:
        what = f"lacks {', '.join(missing)}" if missing else f"has unknown keys {', '.join(unknown)}"
        raise ValueError(f"{path}: [setup] {what}; [setup] has {', '.join(fields)}")
    setup = Setup(**data["setup"])
    sections = tuple((str(k), str(v)) for k, v in data.get("sections", {}).items())
    tables: Tables = dict(data["tables"])
    tables["config"] = {"model": setup.model, "dataset": setup.dataset, "n_tokens": setup.n_tokens}
    if "model_shape" in tables:
        tables["config"]["d_model"] = tables["model_shape"]["d_model"]
    tolerances = data.get("tolerances", {})
    for spec in data.get("cells", []):
        _check_cells(path, tables, spec, tuple(k for k, _ in sections))
    unknown = {c for spec in data.get("cells", []) for c in spec["columns"].values()} - tolerances.keys()
    if unknown:
        raise ValueError(f"{path}: cells name tolerances {sorted(unknown)} that [tolerances] does not define")
    cells = tuple(_cells(tables, data.get("cells", []), tolerances))
    named = {k: str(data[k]) for k in ("title", "original") if k in data}
    return Document(setup, tables, cells, tolerances, sections=sections, **named)


DOCUMENT = load_document(EXP7)
"""The default write-up, exp7."""
SETUP, DOCUMENT_TABLES, CELLS = DOCUMENT.setup, DOCUMENT.tables, DOCUMENT.cells
_TOL = DOCUMENT.tolerances
K_RTOL, K_ATOL = _TOL["k"]["rtol"], _TOL["k"]["atol"]
LOWRANK_RTOL, RATIO_RTOL = _TOL["lowrank"]["rtol"], _TOL["ratio"]["rtol"]
"""exp7's cells' tolerances; a sentence that restates cells accepts at least what they accept."""


def cells_in(*sections: str) -> list[Cell]:
    return DOCUMENT.cells_in(*sections)
