"""The claim language's vocabulary: every measured table a `check` expression may name, and its columns.

lib/writeup may not import the tables' code (a claim reads a tables dict), so the columns are stated here,
once, and tests/test_expression.py checks them against the registry (lib/tables/registry.py: every table
is here) and against the embedded model's committed snapshots (every snapshot's columns are these).
docs/claim-language.md's table of tables is generated from this one (`markdown_table`), and a test checks it.
"""

from __future__ import annotations

ROWS, RECORD, SCALAR = "rows", "record", "scalar"
"""A table's shape: rows (a list of records, one per layer or per K: a column is an array), one record
(a column is one number), or one number (the table's name is the number)."""

COLUMNS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # name: (shape, what it is, its columns)
    "config": (RECORD, "the run's identity (RunConfig.to_json)", ("n_tokens", "model", "dataset")),
    "model_shape": (RECORD, "the model's shape", ("n_layers", "n_heads", "d_model")),
    "norms": (ROWS, "7A: ‖Δφ(l)‖ over the positions, per layer", ("layer", "mean_norm", "std_norm")),
    "layer_pca": (ROWS, "7B: K for 50/80/90/95% of Δφ(l)'s variance, per layer", ("layer", "k50", "k80", "k90", "k95")),
    "shared_pca": (RECORD, "7C: K of the basis shared by all layers", ("k50", "k80", "k90", "k95")),
    "reconstruction": (ROWS, "7C: reconstruction with K shared components", ("k", "cos_sim", "relative_l2")),
    "baseline_ppl": (SCALAR, "7D: perplexity without projection", ()),
    "lowrank_ppl": (
        ROWS,
        "7D: perplexity with every layer's Δφ projected onto K components, per K",
        ("k", "individual_ppl", "individual_ratio", "shared_ppl", "shared_ratio"),
    ),
    "attn_ffn": (ROWS, "7E: K90 of the attention and FFN writes, per layer", ("layer", "attn_k90", "ffn_k90", "ratio")),
    "layer_spectra": (ROWS, "7B: each layer's explained-variance ratios (a list per layer, no columns)", ()),
    "reconstruction_sample": (SCALAR, "7C: how many positions the reconstruction is measured on", ()),
    "reconstruction_per_layer": (
        ROWS,
        "7C: shared-basis reconstruction per layer and K",
        ("layer", "k", "cos_sim", "relative_l2"),
    ),
    "reconstruction_own_per_layer": (
        ROWS,
        "causes: each layer's own-basis reconstruction per K",
        ("layer", "k", "cos_sim", "relative_l2"),
    ),
    "reconstruction_balanced_per_layer": (
        ROWS,
        "causes: reconstruction with the norm-balanced shared basis",
        ("layer", "k", "cos_sim", "relative_l2"),
    ),
    "shared_pca_normalised": (RECORD, "causes: shared K with every Δφ normalised", ("k50", "k80", "k90", "k95")),
    "shared_pca_balanced": (RECORD, "causes: shared K with every layer's norm balanced", ("k50", "k80", "k90", "k95")),
    "shared_overlap": (RECORD, "causes: the shared basis's overlap with each layer's", ("k", "per_layer")),
    "norm_concentration": (
        ROWS,
        "causes: the share of ‖Δφ‖² in the top positions, per layer",
        ("layer", "n_top", "top_share", "top_centred_share"),
    ),
    "pc1_origin": (
        ROWS,
        "causes: where each layer's first component comes from",
        ("layer", "top1_share", "top_share", "top_at_bos", "n_bos", "bos_share", "bias_cos", "bias_norm"),
    ),
    "write_sources": (
        ROWS,
        "causes: attention's and the FFN's share of each write",
        ("layer", "attn_share", "ffn_share", "ffn_pc1_cos"),
    ),
    "unembedding_overlap": (
        RECORD,
        "causes: overlap of the last layer's writes with the unembedding",
        ("k_unembedding", "k_same", "delta_phi", "delta_phi_same_k", "attn", "attn_same_k", "attn_last", "chance"),
    ),
    "attn_only_ppl": (ROWS, "7F: perplexity with only attention's writes projected, per K", ("k", "ppl", "ratio")),
    "ffn_only_ppl": (ROWS, "7F: perplexity with only the FFN's writes projected, per K", ("k", "ppl", "ratio")),
    "subspace_overlap": (RECORD, "7G: overlap of the layers' top-k subspaces", ("k", "attn", "ffn", "chance")),
    "shared_ablation": (
        ROWS,
        "7H: the shared projection at every layer but the last, and at the last only",
        ("k", "all_but_last_ppl", "all_but_last_ratio", "last_only_ppl", "last_only_ratio"),
    ),
    "layer_pca_without_outliers": (
        ROWS,
        "7B without each layer's outlier positions",
        ("layer", "k50", "k80", "k90", "k95", "threshold", "n_left_out", "left_out"),
    ),
}


def markdown_table() -> str:
    """docs/claim-language.md's table of tables (tests/test_expression.py checks the page holds it)."""
    lines = ["| table | shape | what | columns |", "|---|---|---|---|"]
    for name, (shape, what, columns) in COLUMNS.items():
        shown = ", ".join(f"`{c}`" for c in columns) or "—"
        lines.append(f"| `{name}` | {shape} | {what} | {shown} |")
    return "\n".join(lines)
