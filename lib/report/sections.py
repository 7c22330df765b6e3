"""The report in the write-up's layout: one section per write-up section, the write-up's numbers beside the
measured.

A section (the write-up's, in its order and under its titles: write-up.toml's [sections]; then follow-ups
and causes) shows, for each run, the write-up's tables of that section: per column the write-up's value,
the measured value and, on a run of the write-up's own set-up, their difference, marked ✗ where the cell
is outside its tolerance (write-up.toml states each with its reason). On another model, text or
convention there is no difference column: the cells are shown, not judged. Then the section's sentences
with their verdicts, what each measured, and the original phrase they test.

Sentences go to the section of the write-up they come from, except two groups the write-up does not
measure (lib/report/rows.py report_section): the follow-ups (computed on request) and the causes
(sentences that need the suite's own measurements: directions, per-position norms, norm-scaled PCA).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lib.report.rows import CAUSES, FOLLOW_UPS
from lib.report.text import markdown_table, num

if TYPE_CHECKING:
    from lib.writeup.document import Cell
    from lib.writeup.write_up import WriteUp

EXTRA = {
    FOLLOW_UPS: "Follow-ups (the suite's experiments for sentences the write-up did not test)",
    CAUSES: "Causes (sentences that need the suite's own measurements)",
}
"""The report sections after the write-up's own, with their titles."""
OUTSIDE = "✗"


def titles(write_up: WriteUp | None) -> dict[str, str]:
    """Report sections in the report's order: the write-up's, then follow-ups and causes."""
    return {**(write_up.section_titles if write_up is not None else {}), **EXTRA}


SCALAR_COLUMNS = {"shared_pca": "Shared K", "baseline_ppl": "perplexity"}
"""The column of a table without rows (7C's shared K per threshold, 7D's baseline), as the write-up heads it."""


def difference(value: float) -> str:
    """measured − write-up, signed, in the report's one number format (lib/report/text.py num)."""
    return num(value, 3, sign=True, whole=False)


def _row_label(cell: Cell, write_up: WriteUp) -> tuple[str, str]:
    """(first column's header, this cell's row label) in the write-up's table."""
    if cell.row is None:
        return ("Threshold", cell.column.removeprefix("k") + "%") if cell.column else ("", "baseline")
    doc_row = write_up.tables[cell.table][cell.row]
    return ("K", str(doc_row["k"])) if "k" in doc_row else ("Layer", str(doc_row["layer"]))


def grid(
    table: str,
    values: dict[str, float],
    judged: set[str],
    write_up: WriteUp,
    intervals: dict[str, list[float]] | None = None,
    same_set_up: bool = True,
) -> list[str]:
    """One write-up table as Markdown: per write-up column, write-up | measured | Δ (✗ outside the tolerance).

    values: cell id -> measured value of one run (absent: not measured, shown as —; a row with no
    measured value, a layer or K a smaller model lacks, is left out: the write-up has it).
    intervals: cell id -> its 95% interval (--bootstrap), shown beside the measured value.
    judged: the cells the run judged (✗ only on those).
    same_set_up: whether the run is the write-up's set-up; on another model or text there is no Δ column
    (a difference across models means nothing).
    """
    cells = [c for c in write_up.cells if c.table == table]
    first, _ = _row_label(cells[0], write_up)
    column = lambda c: SCALAR_COLUMNS.get(c.table, c.table) if c.row is None else c.column  # noqa: E731
    columns = list(dict.fromkeys(column(c) for c in cells))
    rows: dict[str, dict[str, Cell]] = {}
    for c in cells:
        rows.setdefault(_row_label(c, write_up)[1], {})[column(c)] = c
    per_column = ["write-up", "measured", *(["Δ"] if same_set_up else [])]
    header = [first or "quantity"]
    for col in columns:
        header += [f"{col}: {per_column[0]}", *per_column[1:]]
    body = []
    for label, by_column in rows.items():
        if all(values.get(c.id) is None for c in by_column.values()):
            continue
        out = [label]
        for col in columns:
            cell = by_column.get(col)
            value = values.get(cell.id) if cell is not None else None
            if cell is None or value is None:
                out += [num(cell.value) if cell is not None else "", "—" if cell is not None else ""]
                out += [""] if same_set_up else []
                continue
            band = (intervals or {}).get(cell.id)  # --bootstrap: the 95% interval beside the value
            out += [num(cell.value), num(value) + (f" [{num(band[0])}, {num(band[1])}]" if band else "")]
            if same_set_up:
                mark = f" {OUTSIDE}" if cell.id in judged and not cell.within(value) else ""
                out.append(difference(value - cell.value) + mark)
        body.append(out)
    return markdown_table(header, body)


def tables_of(section: str, write_up: WriteUp) -> list[str]:
    """The write-up's tables shown in a section, in their order."""
    return list(dict.fromkeys(c.table for c in write_up.cells if c.section == section))


LEGEND = (
    f"{OUTSIDE}: outside the cell's tolerance (write-up.toml gives each with its reason); "
    "Δ = measured − write-up, on a run of the write-up's own set-up only. On another model, text or convention "
    "the cells are shown, not judged (no Δ, no ✗); rows it lacks (layers, K) are left out."
)
