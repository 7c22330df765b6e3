"""The session's figure: document vs measured for every run, on axes that compare models of different sizes.

One figure, four panels (7A norms, 7B K90, 7D perplexity ratios, 7E attention and FFN K90), one legend
for all of them: a colour per model and text, a line style per quantity. The windows of one model and
text (labels `<group>-w<n>`) draw as one line, their mean, with their min-max spread as a band. The
title names the models, texts, positions and the commit. The PNG is drawn into memory and then written
atomically (lib/setup/outputs.py), so a reader never sees half a figure.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib.report.text import relative
from lib.setup.outputs import write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Tables = Mapping[str, Any]


def group_of(label: str) -> str:
    """A run's label without its window: the windows of one model and text share it (lib/setup/runs.py)."""
    head, _, window = label.rpartition("-w")
    return head if head and window.isdigit() else label


def title(runs: Sequence[str], configs: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """'<model> on <text>, <n> positions (<w> windows); commit <c>': what the figure shows, from the runs'
    configs (RunConfig.to_json) where given, else their labels."""
    from lib.setup.provenance import git_state

    parts: dict[str, int] = {}
    for label in runs:
        c = (configs or {}).get(label)
        what = (
            f"{relative(c['model'])} on {relative(c['dataset'])}, {c['n_tokens']} positions" if c else group_of(label)
        )
        parts[what] = parts.get(what, 0) + 1
    shown = "; ".join(what + (f" ({n} windows)" if n > 1 else "") for what, n in parts.items())
    state = git_state()
    commit = f"commit {str(state['commit'])[:8]}" + (", modified" if state["dirty"] else "")
    return f"Experiment 7, document vs measured: {shown}; {commit}"


def _series(tables: Sequence[Tables]) -> dict[str, tuple[list[float], list[float], list[float], list[float]]]:
    """Each plotted quantity of one group of runs: (x, mean, min, max) over its windows, on shared axes."""
    first = tables[0]
    n_layers, d_model = len(first["norms"]), first["lowrank_ppl"][-1]["k"]
    depth = [layer / max(n_layers - 1, 1) for layer in range(n_layers)]
    ks = [r["k"] / d_model for r in first["lowrank_ppl"]]
    quantities = {
        "norm": (depth, lambda t: [r["mean_norm"] for r in t["norms"]]),
        "k90": (depth, lambda t: [r["k90"] / d_model for r in t["layer_pca"]]),
        "individual": (ks, lambda t: [r["individual_ratio"] for r in t["lowrank_ppl"]]),
        "shared": (ks, lambda t: [r["shared_ratio"] for r in t["lowrank_ppl"]]),
        "attention": (depth, lambda t: [r["attn_k90"] / d_model for r in t["attn_ffn"]]),
        "ffn": (depth, lambda t: [r["ffn_k90"] / d_model for r in t["attn_ffn"]]),
    }
    out = {}
    for name, (x, read) in quantities.items():
        columns = list(zip(*(read(t) for t in tables)))  # (len(x), windows)
        out[name] = (x, [sum(c) / len(c) for c in columns], [min(c) for c in columns], [max(c) for c in columns])
    return out


def figure(tables_by_run: Mapping[str, Tables], configs: Mapping[str, Mapping[str, Any]] | None = None) -> Figure:
    """Document vs measured for a session's runs, on axes that compare models of different sizes:
    relative depth l / (L - 1) and K / d_model.

    configs: label -> the run's config (RunConfig.to_json), for the title; without, the labels name the runs.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from lib.writeup.claims import DOCUMENT_TABLES

    groups: dict[str, list[Tables]] = {"document (GPT-2 small, WikiText-2)": [DOCUMENT_TABLES]}
    for label, tables in tables_by_run.items():
        groups.setdefault(group_of(label), []).append(tables)
    fig, ((norms, k90), (sweep, attn_ffn)) = plt.subplots(2, 2, figsize=(12, 9))
    panels = {
        "norm": (norms, "o-"),
        "k90": (k90, "o-"),
        "individual": (sweep, "o-"),
        "shared": (sweep, "s--"),
        "attention": (attn_ffn, "o-"),
        "ffn": (attn_ffn, "s--"),
    }
    handles = []
    for i, (name, tables) in enumerate(groups.items()):
        colour, lw = f"C{i}", 2.5 if i == 0 else 1.2
        for quantity, (x, mean, low, high) in _series(tables).items():
            axes, style = panels[quantity]
            axes.plot(x, mean, style, color=colour, lw=lw)
            if len(tables) > 1:  # several windows: their spread as a band around the mean
                axes.fill_between(x, low, high, color=colour, alpha=0.2, lw=0)
        windows = f" (mean of {len(tables)} windows, band: min-max)" if len(tables) > 1 else ""
        handles.append(Line2D([], [], color=colour, lw=lw, marker="o", label=name + windows))
    handles += [
        Line2D([], [], color="black", ls="-", marker="o", label="7D individual, 7E attention"),
        Line2D([], [], color="black", ls="--", marker="s", label="7D shared, 7E FFN"),
    ]
    depth = "relative depth l / (L-1)"
    norms.set(yscale="log", xlabel=depth, ylabel="mean ||Δφ(l)||", title="7A: norm of Δφ per layer")
    k90.set(xlabel=depth, ylabel="K90 / d_model", title="7B: components for 90% of the variance")
    sweep.axhline(1, color="grey", lw=0.5)
    sweep.set(xscale="log", yscale="log", xlabel="K / d_model", ylabel="PPL / baseline", title="7D: low-rank inference")
    attn_ffn.set(xlabel=depth, ylabel="K90 / d_model", title="7E: attention and FFN")
    fig.suptitle(title(list(tables_by_run), configs), fontsize=10, wrap=True)
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.02 * ((len(handles) + 1) // 2), 1, 0.96))
    return fig


def plot_runs(
    tables_by_run: Mapping[str, Tables], path: str | Path, configs: Mapping[str, Mapping[str, Any]] | None = None
) -> Path:
    """The figure as a PNG at `path`, exactly (the caller prints it); returns it."""
    import matplotlib.pyplot as plt

    fig = figure(tables_by_run, configs)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return write_atomic(path, buffer.getvalue())
