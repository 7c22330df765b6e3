"""Figures of one run's tables: the spectra behind 7B and the 7D perplexity sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lib.spectra import THRESHOLDS


def plot_tables(tables: dict[str, Any], path: str | Path) -> Path:
    """Two panels as PNG: cumulative explained variance of Δφ per layer (7B), and the 7D ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (spectra, sweep) = plt.subplots(1, 2, figsize=(12, 4.5))
    layers = tables["layer_spectra"]
    colours = plt.cm.viridis(np.linspace(0, 1, len(layers)))
    for layer, (ratio, colour) in enumerate(zip(layers, colours)):
        cumulative = np.cumsum(ratio)
        spectra.plot(np.arange(1, len(cumulative) + 1), cumulative, color=colour, label=f"layer {layer}")
    for t in THRESHOLDS:
        spectra.axhline(t, color="grey", lw=0.5, ls=":")
    spectra.set(xscale="log", xlabel="components K", ylabel="cumulative explained variance",
                title="7B: per-layer PCA of Δφ")
    spectra.legend(fontsize=7, ncol=2)

    rows = tables["lowrank_ppl"]
    ks = [r["k"] for r in rows]
    sweep.plot(ks, [r["individual_ratio"] for r in rows], "o-", label="individual bases")
    sweep.plot(ks, [r["shared_ratio"] for r in rows], "s-", label="shared basis")
    sweep.axhline(1, color="grey", lw=0.5)
    sweep.set(xscale="log", yscale="log", xlabel="components K", ylabel="PPL / baseline",
              title=f"7D: low-rank inference (baseline PPL {tables['baseline_ppl']:.4g})")
    sweep.legend()
    model = Path(str(tables.get("config", {}).get("model", ""))).name
    fig.suptitle(f"Experiment 7 on {model}, {tables.get('config', {}).get('n_tokens', '?')} positions")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
