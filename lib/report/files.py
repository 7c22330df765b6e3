"""The claims files a session writes (--claims-json, --claims-csv, --claims-report and its figure): each
on its own and atomically (lib/setup/outputs.py), so one that fails is one line and loses no other."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib.report.markdown import markdown
from lib.report.rows import Row
from lib.report.summary import json_document
from lib.setup.outputs import write_atomic
from lib.setup.provenance import describe

if TYPE_CHECKING:
    from lib.writeup.write_up import WriteUp


def claims_csv(rows: list[Row]) -> str:
    """The rows for a spreadsheet or pandas: the JSON's columns, fragility as JSON text."""
    out = io.StringIO()
    table = [{**r.to_json(), "fragility": json.dumps(r.fragility) if r.fragility else ""} for r in rows]
    columns = list(dict.fromkeys(k for row in table for k in row)) or ["claim"]  # --bootstrap: some rows more
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return out.getvalue()


def write_claims_files(
    paths: dict[str, str | None],
    rows: list[Row],
    runs: dict[str, dict[str, Any]],
    provenance: dict[str, Any],
    tables: dict[str, dict[str, Any]],
    write_up: WriteUp,
) -> list[str]:
    """Write each file asked for (paths: option -> path or None), the JSON first; one line per file. The
    report and its figure speak of `write_up`, the session's."""

    def claims_json(path: Path) -> str:
        write_atomic(path, json.dumps(json_document(rows, runs, provenance), indent=1, ensure_ascii=False) + "\n")
        return f"claims JSON written to {path}"

    def csv_file(path: Path) -> str:
        write_atomic(path, claims_csv(rows))
        return f"claims CSV written to {path}"

    def claims_report(path: Path) -> str:
        figure = None
        if tables:
            from lib.report.plots import plot_runs, with_intervals

            measured = with_intervals({n: tables[n] for n in runs if n in tables}, rows, write_up)
            figure = plot_runs(measured, path.with_suffix(".png"), runs, write_up).name
        write_atomic(path, markdown(rows, runs, write_up, figure, describe(provenance)))
        return f"claims report written to {path}" + (f" (figure: {figure})" if figure else "")

    writers: dict[str, Callable[[Path], str]] = {
        "--claims-json": claims_json,
        "--claims-csv": csv_file,
        "--claims-report": claims_report,
    }
    lines = []
    for option, write in writers.items():
        if paths.get(option):
            try:
                lines.append(write(Path(str(paths[option]))))
            except OSError as e:
                lines.append(f"error: {option} {paths[option]!r} could not be written: {e}")
    return lines
