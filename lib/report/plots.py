"""The session's figure: document vs measured for every run, on axes that compare models of different sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_runs(tables_by_run: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Document vs measured, one PNG for a session's runs, on axes that compare models of
    different sizes: relative depth l / (L - 1) and K / d_model.

    Panels: 7A mean norm per layer; 7B K90 per layer; 7D perplexity ratio against K / d_model
    (individual solid, shared dashed); 7E attention (solid) and FFN (dashed) K90 per layer.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lib.writeup.claims import DOCUMENT_TABLES

    fig, ((norms, k90), (sweep, attn_ffn)) = plt.subplots(2, 2, figsize=(12, 8.5))
    series = {"document (GPT-2 small)": DOCUMENT_TABLES, **tables_by_run}
    for i, (name, t) in enumerate(series.items()):
        colour, style = f"C{i}", {"lw": 2.5 if i == 0 else 1.2}
        n_layers, d_model = len(t["norms"]), t["lowrank_ppl"][-1]["k"]
        depth = [layer / max(n_layers - 1, 1) for layer in range(n_layers)]
        norms.plot(depth, [r["mean_norm"] for r in t["norms"]], "o-", color=colour, label=name, **style)
        k90.plot(depth, [r["k90"] / d_model for r in t["layer_pca"]], "o-", color=colour, **style)
        ks = [r["k"] / d_model for r in t["lowrank_ppl"]]
        sweep.plot(ks, [r["individual_ratio"] for r in t["lowrank_ppl"]], "o-", color=colour, **style)
        sweep.plot(ks, [r["shared_ratio"] for r in t["lowrank_ppl"]], "s--", color=colour, **style)
        attn_ffn.plot(depth, [r["attn_k90"] / d_model for r in t["attn_ffn"]], "o-", color=colour, **style)
        attn_ffn.plot(depth, [r["ffn_k90"] / d_model for r in t["attn_ffn"]], "s--", color=colour, **style)
    norms.set(
        yscale="log", xlabel="relative depth l / (L-1)", ylabel="mean ||Δφ(l)||", title="7A: norm of Δφ per layer"
    )
    k90.set(xlabel="relative depth l / (L-1)", ylabel="K90 / d_model", title="7B: components for 90% of the variance")
    sweep.axhline(1, color="grey", lw=0.5)
    sweep.set(
        xscale="log",
        yscale="log",
        xlabel="K / d_model",
        ylabel="PPL / baseline",
        title="7D: low-rank inference (solid individual, dashed shared)",
    )
    attn_ffn.set(
        xlabel="relative depth l / (L-1)", ylabel="K90 / d_model", title="7E: attention (solid) and FFN (dashed)"
    )
    norms.legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
