"""The report in the write-up's layout: one section per table, the document's numbers beside the measured.

A section (7A-7E; background and set-up before them; conclusions, follow-ups and causes
after) shows, for each run, the write-up's tables with three columns per document column:
the document's value, the measured value and their difference, marked ✗ where the cell is
outside its tolerance (lib/writeup/claims.py states each with its reason). Then the section's
sentences with their verdicts and the Japanese phrase they test, then its totals.

Sentences go to the section of the write-up they come from, except two groups the write-up
does not measure: the follow-ups (7F-7H, computed on request) and the causes (sentences
that need the suite's own measurements of lib/tables/causes.py: directions, per-position norms,
norm-scaled PCA).
"""

from __future__ import annotations

from lib.report.text import markdown_table, num
from lib.writeup.claims import CELLS, CLAIMS, DOCUMENT_TABLES, Cell

TITLES = {
    "background": "Background",
    "setup": "Set-up",
    "7A": "7A: norms of Δφ(l)",
    "7B": "7B: per-layer PCA, K for the cumulative explained variance",
    "7C": "7C: shared basis and reconstruction",
    "7D": "7D: low-rank inference",
    "7E": "7E: attention vs FFN",
    "conclusions": "Conclusions",
    "follow-ups": "Follow-ups (7F-7H: the suite's experiments for sentences the write-up did not test)",
    "causes": "Causes (sentences that need the suite's own measurements, lib/tables/causes.py)",
}
"""Report sections in the report's order."""
OUTSIDE = "✗"

_CLAIMS = {c.id: c for c in CLAIMS}


def section_of(claim_id: str, section: str) -> str:
    """The report section of a claim or cell: its write-up section, or follow-ups, or causes."""
    claim = _CLAIMS.get(claim_id)
    if claim is not None and claim.followup:
        return "follow-ups"
    if claim is not None and claim.document_untestable:
        return "causes"
    return section if section in TITLES else "conclusions"


SCALAR_COLUMNS = {"shared_pca": "Shared K", "baseline_ppl": "perplexity"}
"""The column of a table without rows (7C's shared K per threshold, 7D's baseline), as the write-up heads it."""


def difference(value: float) -> str:
    """measured − document, signed: whole numbers past 100, else 3 significant digits."""
    return f"{value:+,.0f}" if abs(value) >= 100 else num(value, 3, sign=True, whole=False)


def _row_label(cell: Cell) -> tuple[str, str]:
    """(first column's header, this cell's row label) in the write-up's table."""
    if cell.row is None:
        return ("Threshold", cell.column.removeprefix("k") + "%") if cell.column else ("", "baseline")
    doc_row = DOCUMENT_TABLES[cell.table][cell.row]
    return ("K", str(doc_row["k"])) if "k" in doc_row else ("Layer", str(doc_row["layer"]))


def grid(
    table: str, values: dict[str, float], judged: set[str], intervals: dict[str, list[float]] | None = None
) -> list[str]:
    """One write-up table as Markdown: per document column, document | measured | Δ (✗ outside the tolerance).

    values: cell id -> measured value of one run (absent: not measured, shown as —; a row with no
    measured value, a layer or K a smaller model lacks, is left out: the write-up has it).
    intervals: cell id -> its 95% interval (--bootstrap), shown beside the measured value.
    judged: the cells the run judged; a cell shown but not judged (another model, text or convention)
    gets its Δ and no ✗: the tolerance is the write-up's, for the write-up's set-up.
    """
    cells = [c for c in CELLS if c.table == table]
    first, _ = _row_label(cells[0])
    column = lambda c: SCALAR_COLUMNS[c.table] if c.row is None else c.column  # noqa: E731
    columns = list(dict.fromkeys(column(c) for c in cells))
    rows: dict[str, dict[str, Cell]] = {}
    for c in cells:
        rows.setdefault(_row_label(c)[1], {})[column(c)] = c
    header = [first or "quantity"]
    for col in columns:
        header += [f"{col}: document", "measured", "Δ"]
    body = []
    for label, by_column in rows.items():
        if all(values.get(c.id) is None for c in by_column.values()):
            continue
        out = [label]
        for col in columns:
            cell = by_column.get(col)
            if cell is None:
                out += ["", "", ""]
                continue
            value = values.get(cell.id)
            if value is None:
                out += [num(cell.value), "—", ""]
                continue
            mark = f" {OUTSIDE}" if cell.id in judged and not cell.within(value) else ""
            band = (intervals or {}).get(cell.id)  # --bootstrap: the 95% interval beside the value
            shown = num(value) + (f" [{num(band[0])}, {num(band[1])}]" if band else "")
            out += [num(cell.value), shown, difference(value - cell.value) + mark]
        body.append(out)
    return markdown_table(header, body)


def tables_of(section: str) -> list[str]:
    """The write-up's tables shown in a section, in their order."""
    return list(dict.fromkeys(c.table for c in CELLS if c.section == section))


LEGEND = (
    f"{OUTSIDE}: outside the cell's tolerance (lib/writeup/claims.py gives each with its reason); "
    "Δ = measured − document. For another model, text or convention the cells are shown, not judged (no ✗); "
    "rows it lacks (layers, K) are left out."
)
