"""The session's figure: measured (and, as an option, the write-up's own numbers) for every run, on axes
that compare models of different sizes.

Four panels (7A norms, 7B K90, 7D perplexity ratios, 7E attention and FFN K90), each with its own legend:
a colour per model and text, a line style per quantity of the panel. The windows of one model and text
(labels `<group>-w<n>`) draw as one line, their mean, with their min-max spread as a band; a run's 95%
bootstrap intervals (its tables' "intervals", --bootstrap) as error bars. The write-up's own numbers are
an overlay (`overlay`), labelled with its set-up, drawn only where the write-up has that table.

The title names the models, texts and positions; the provenance (commit, and "modified" only where a
tracked file differs) is a caption line under the panels and in the file's metadata. The format is the
one the file's extension names (FORMATS); the figure is drawn into memory and then written atomically
(lib/setup/outputs.py), so a reader never sees half a figure.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib.errors import ConfigError
from lib.report.rows import Row
from lib.report.text import relative
from lib.setup.outputs import write_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from lib.writeup.write_up import WriteUp

Tables = Mapping[str, Any]
FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
"""The figure's formats, by the file's extension (a path without one is a PNG)."""


def figure_format(path: str | Path, option: str = "--plot") -> str:
    """The format a figure's path names (png, pdf, svg); ConfigError naming the path and what is allowed."""
    suffix = Path(path).suffix.lower()
    if not suffix:
        return "png"
    if suffix not in FORMATS:
        allowed = ", ".join(FORMATS)
        raise ConfigError(f"{option} {str(path)!r}: a figure is written as {allowed} (by its extension), not {suffix}")
    return FORMATS[suffix]


def group_of(label: str) -> str:
    """A run's label without its window: the windows of one model and text share it (lib/setup/matrix.py)."""
    head, _, window = label.rpartition("-w")
    return head if head and window.isdigit() else label


def title(runs: Sequence[str], configs: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """'<model> on <text>, <n> positions (<w> windows)': what the figure shows, from the runs' configs
    (RunConfig.to_json) where given, else their labels."""
    parts: dict[str, int] = {}
    for label in runs:
        c = (configs or {}).get(label)
        what = (
            f"{relative(c['model'])} on {relative(c['dataset'])}, {c['n_tokens']} positions" if c else group_of(label)
        )
        parts[what] = parts.get(what, 0) + 1
    return "; ".join(what + (f" ({n} windows)" if n > 1 else "") for what, n in parts.items())


def caption() -> str:
    """The provenance line: the project's version and commit ("modified" where a tracked file differs), the date."""
    import datetime

    from lib.setup.provenance import version_line

    return f"{version_line()}; drawn {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"


QUANTITIES = {
    "norm": ("norms", "mean_norm", False),
    "k90": ("layer_pca", "k90", True),
    "individual": ("lowrank_ppl", "individual_ratio", False),
    "shared": ("lowrank_ppl", "shared_ratio", False),
    "attention": ("attn_ffn", "attn_k90", True),
    "ffn": ("attn_ffn", "ffn_k90", True),
}
"""Each plotted quantity: (table, column, divided by d_model)."""
Series = tuple[list[float], list[float], list[float], list[float], list[list[float]] | None]


def _d_model(tables: Tables) -> float | None:
    shape, config = tables.get("model_shape") or {}, tables.get("config") or {}
    if shape.get("d_model") or config.get("d_model"):
        return float(shape.get("d_model") or config["d_model"])
    rows = tables.get("lowrank_ppl")
    return float(rows[-1]["k"]) if rows else None


def _series(tables: Sequence[Tables]) -> dict[str, Series]:
    """Each quantity the tables have: (x, mean, min, max, 95% interval per point or None) over the windows,
    on shared axes (relative depth, K / d_model)."""
    first = tables[0]
    d_model = _d_model(first)
    out: dict[str, Series] = {}
    for name, (table, column, scaled) in QUANTITIES.items():
        rows = first.get(table)
        if not rows or column not in rows[0] or (scaled and d_model is None) or any(not t.get(table) for t in tables):
            continue
        scale = 1 / d_model if scaled and d_model else 1.0
        if table == "lowrank_ppl":
            if d_model is None:
                continue
            x = [r["k"] / d_model for r in rows]
        else:
            x = [r["layer"] / max(len(rows) - 1, 1) for r in rows]
        columns = list(zip(*([r[column] * scale for r in t[table]] for t in tables)))  # (len(x), windows)
        bands = (first.get("intervals") or {}).get(table) if len(tables) == 1 else None
        errors = None  # a point without an interval: none drawn (its error is 0)
        if bands and len(bands) == len(rows) and any(column in (b or {}) for b in bands):
            errors = [
                [v * scale for v in (b or {}).get(column) or [mean, mean]]
                for b, mean in zip(bands, (r[column] for r in rows))
            ]
        out[name] = (
            x,
            [sum(c) / len(c) for c in columns],
            [min(c) for c in columns],
            [max(c) for c in columns],
            errors,
        )
    return out


PANELS = {
    "norm": (0, "o-", "mean norm"),
    "k90": (1, "o-", "K90"),
    "individual": (2, "o-", "individual basis"),
    "shared": (2, "s--", "shared basis"),
    "attention": (3, "o-", "attention"),
    "ffn": (3, "s--", "FFN"),
}
"""quantity -> (panel, line style, its name in the panel's legend where the panel has two)."""


def with_intervals(tables_by_run: Mapping[str, Tables], rows: Sequence[Row], write_up: WriteUp) -> dict[str, Tables]:
    """Each run's tables with the 95% intervals its cell rows carry (--bootstrap), in the shape of the
    bootstrap's own: intervals[table][row][column] = [lo, hi], by the measured table's rows."""
    cells = {c.id: c for c in write_up.cells}
    out: dict[str, Tables] = {}
    for label, tables in tables_by_run.items():
        bands: dict[str, list[dict[str, list[float]]]] = {}
        for r in rows:
            cell = cells.get(r.id)
            if r.kind != "cell" or r.run != label or not r.interval or cell is None or cell.match is None:
                continue
            key, want = cell.match
            table = tables.get(cell.table) or []
            at = next((i for i, row in enumerate(table) if row.get(key) == want), None)
            if at is not None:
                bands.setdefault(cell.table, [{} for _ in table])[at][cell.column] = list(r.interval)
        out[label] = {**tables, "intervals": bands} if bands else tables
    return out


def figure(
    tables_by_run: Mapping[str, Tables],
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    write_up: WriteUp | None = None,
    overlay: bool = True,
) -> Figure:
    """Measured for a session's runs, on axes that compare models of different sizes: relative depth
    l / (L - 1) and K / d_model; with `overlay`, the write-up's own numbers where it has them.

    configs: label -> the run's config (RunConfig.to_json), for the title; without, the labels name the runs.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[Tables]] = {}
    if overlay and write_up is not None:
        setup = write_up.document.setup
        groups[f"write-up ({setup.model_name}, {setup.text_name})"] = [write_up.tables]
    first_measured = len(groups)
    for label, tables in tables_by_run.items():
        groups.setdefault(group_of(label), []).append(tables)
    fig, grid = plt.subplots(2, 2, figsize=(12, 9))
    axes: list[Axes] = list(grid.flat)
    for i, (name, tables) in enumerate(groups.items()):
        colour, lw = f"C{i}", 2.5 if i < first_measured else 1.2
        windows = f" (mean of {len(tables)} windows, band: min-max)" if len(tables) > 1 else ""
        series = _series(tables)
        for quantity, (x, mean, low, high, errors) in series.items():
            panel, style, what = PANELS[quantity]
            two = sum(PANELS[q][0] == panel for q in PANELS) > 1
            label = name + windows + (f": {what}" if two else "")
            axes[panel].plot(x, mean, style, color=colour, lw=lw, label=label)
            if len(tables) > 1:  # several windows: their spread as a band around the mean
                axes[panel].fill_between(x, low, high, color=colour, alpha=0.2, lw=0)
            if errors:  # --bootstrap: each point's 95% interval
                below = [max(m - lo, 0.0) for m, (lo, _) in zip(mean, errors)]  # an interval beside its estimate
                above = [max(hi - m, 0.0) for m, (_, hi) in zip(mean, errors)]
                axes[panel].errorbar(x, mean, yerr=[below, above], fmt="none", ecolor=colour, capsize=2, lw=0.8)
    norms, k90, sweep, attn_ffn = axes
    depth = "relative depth l / (L-1)"
    norms.set(yscale="log", xlabel=depth, ylabel="mean ||Δφ(l)||", title="7A: norm of Δφ per layer")
    k90.set(xlabel=depth, ylabel="K90 / d_model", title="7B: components for 90% of the variance")
    sweep.axhline(1, color="grey", lw=0.5)
    sweep.set(xscale="log", yscale="log", xlabel="K / d_model", ylabel="PPL / baseline", title="7D: low-rank inference")
    attn_ffn.set(xlabel=depth, ylabel="K90 / d_model", title="7E: attention and FFN")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title(list(tables_by_run), configs), fontsize=10, wrap=True)
    fig.text(0.01, 0.005, caption(), fontsize=7, color="grey", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    return fig


def plot_runs(
    tables_by_run: Mapping[str, Tables],
    path: str | Path,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    write_up: WriteUp | None = None,
    overlay: bool = True,
) -> Path:
    """The figure at `path`, exactly, in the format its extension names (FORMATS), with its title and the
    provenance in the file's metadata; returns the path (the caller prints it)."""
    import matplotlib.pyplot as plt

    kind = figure_format(path)
    fig = figure(tables_by_run, configs, write_up, overlay)
    described = fig._suptitle.get_text() if fig._suptitle else ""
    fields = {"png": "Description", "pdf": "Subject", "svg": "Description"}
    metadata = {"Title": described, fields[kind]: caption()}
    buffer = io.BytesIO()
    fig.savefig(buffer, format=kind, dpi=110, metadata=metadata)
    plt.close(fig)
    return write_atomic(path, buffer.getvalue())
