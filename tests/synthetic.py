"""Synthetic captures shaped like real ones, and their tables through the suite's own table functions.

A real capture has several chunks, each starting with BOS; position 0 attends only to itself, so
its write is the same vector in every chunk. Its layers differ in K90, and the last layer is not
always the largest. `capture_of` builds such a capture from a few numbers; `tables_of` turns it
into a tables dict with the functions lib/experiment.py and lib/followups.py use (Stats.of_capture,
lib/tables.py, lib/causes.py, lib/followups.py), without a model: the tables that need forward
passes (7D, 7F, 7H perplexities) are given, not measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lib.measure.stats import Capture, Stats
from lib.setup.corpus import Selection
from lib.tables.causes import (
    balanced_reconstruction,
    norm_concentration,
    own_reconstruction,
    pc1_origin,
    sample_where,
    shared_balanced,
    shared_overlap,
    shared_pca_normalised,
    unembedding_overlap,
    write_sources,
)
from lib.tables.core import (
    attn_ffn_table,
    layer_bases,
    layer_pca_table,
    norms_table,
    reconstruction_tables,
    shared_basis,
)
from lib.tables.followups import held_vectors, layer_pca_without_outliers, subspace_overlap


@dataclass(frozen=True)
class Shape:
    """What a synthetic capture is made of (each list has one entry per layer)."""

    chunks: int
    chunk_len: int
    """Positions per chunk, BOS (position 0) included."""
    d_model: int
    attn_rank: tuple[int, ...]
    ffn_rank: tuple[int, ...]
    scale: tuple[float, ...]
    """Each layer's write scale: the last layer is not always the largest."""
    bos: tuple[float, ...]
    """Norm of each layer's BOS write (the same vector in every chunk), in units of its scale."""
    seed: int = 0


def selection_of(chunks: int, chunk_len: int, positions: str = "all") -> Selection:
    """chunks chunks of chunk_len tokens each starting with BOS (token 0); under 'text' BOS is not counted."""
    tokens = tuple(torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(1, chunk_len)]) for _ in range(chunks))
    counted = tuple(
        torch.arange(chunk_len) > 0 if positions == "text" else torch.ones(chunk_len, dtype=torch.bool)
        for _ in range(chunks)
    )
    return Selection(tokens, counted)


def _writes(g: torch.Generator, shape: Shape, rank: int, scale: float, n: int) -> torch.Tensor:
    """(n, d) writes of one kind at one layer: rank directions with slowly decaying weights (K90 grows
    with the rank), plus 2% noise."""
    d = shape.d_model
    directions = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0][:, :rank]  # (d, rank)
    weights = 0.97 ** torch.arange(rank, dtype=torch.float64)  # (rank,)
    z = torch.randn(n, rank, generator=g, dtype=torch.float64) * weights  # (n, rank)
    noise = 0.02 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return scale * (z @ directions.T + noise)  # (n, d)


def capture_of(shape: Shape) -> Capture:
    """Attention and FFN writes per layer; Δφ = attn + ffn; at every chunk's position 0 the same BOS
    write (half attention, half FFN) in every chunk. nll: one per predicted token, fixed by the seed."""
    g = torch.Generator().manual_seed(shape.seed)
    n_layers, d, n = len(shape.scale), shape.d_model, shape.chunks * shape.chunk_len
    bos_rows = torch.arange(0, n, shape.chunk_len)  # (chunks,)
    attn = torch.zeros(n_layers, n, d, dtype=torch.float64)
    ffn = torch.zeros(n_layers, n, d, dtype=torch.float64)
    for layer in range(n_layers):
        s = shape.scale[layer]
        attn[layer] = _writes(g, shape, shape.attn_rank[layer], s, n)
        ffn[layer] = _writes(g, shape, shape.ffn_rank[layer], s, n)
        bos = torch.nn.functional.normalize(torch.randn(d, generator=g, dtype=torch.float64), dim=0)
        bos_attn, bos_ffn = attn[layer, 0].clone(), ffn[layer, 0] + shape.bos[layer] * s * bos
        attn[layer, bos_rows], ffn[layer, bos_rows] = bos_attn, bos_ffn  # the same vector in every chunk
    nll = torch.rand(shape.chunks * (shape.chunk_len - 1), generator=g, dtype=torch.float64)
    return Capture((attn + ffn).float(), attn.float(), ffn.float(), nll)


def readout_of(d_model: int, seed: int = 1) -> torch.Tensor:
    """A fixed orthonormal (d, d) readout standing in for the unembedding's left singular vectors."""
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d_model, d_model, generator=g, dtype=torch.float64))[0]


def given_tables(d_model: int) -> dict[str, Any]:
    """The forward passes' tables, which a synthetic capture cannot produce: fixed 7D, 7F, 7H rows."""
    ks = [k for k in (8, 16, 32, 64) if k < d_model] + [d_model]
    ratio = {k: 400.0 / k if k < d_model else 1.0 for k in ks}
    return {
        "baseline_ppl": 30.0,
        "lowrank_ppl": [
            {
                "k": k,
                "individual_ppl": 30 * ratio[k],
                "individual_ratio": ratio[k],
                "shared_ppl": 60 * ratio[k] if k < d_model else 30.0,
                "shared_ratio": 2 * ratio[k] if k < d_model else 1.0,
            }
            for k in ks
        ],
        "attn_only_ppl": [{"k": k, "ppl": 30 * ratio[k] ** 0.5, "ratio": ratio[k] ** 0.5} for k in ks],
        "ffn_only_ppl": [{"k": k, "ppl": 30 * ratio[k], "ratio": ratio[k]} for k in ks],
        "shared_ablation": [
            {"k": k, "all_but_last_ratio": 2 * ratio[k], "last_only_ratio": 1.0 + (k < d_model) * 0.1} for k in ks
        ],
    }


def tables_of(capture: Capture, selection: Selection, positions: str = "all", readout_seed: int = 1) -> dict[str, Any]:
    """Every table a claim reads, from the capture through the suite's own functions (centred PCA);
    the perplexity tables from given_tables."""
    st = Stats.of_capture(capture)
    n_layers, d = st.total.shape[1:]
    bases = layer_bases(st, "delta_phi", True)
    shared = shared_basis(st, True)
    rows, per_layer = reconstruction_tables(st.sample, shared)
    attn, ffn = layer_bases(st, "attn", True), layer_bases(st, "ffn", True)
    layer_pca, attn_ffn = layer_pca_table(bases), attn_ffn_table(attn, ffn)
    balanced = shared_balanced(st, True)
    return {
        "config": {"n_tokens": st.count, "positions": positions, "dataset": "synthetic"},
        "model_shape": {"n_layers": n_layers, "n_heads": 1, "d_model": d},
        "norms": norms_table(st.norms),
        "layer_pca": layer_pca,
        "shared_pca": shared.k_columns(),
        "reconstruction": rows,
        "attn_ffn": attn_ffn,
        "reconstruction_per_layer": per_layer,
        "layer_spectra": [b.ratio.tolist() for b in bases],
        "reconstruction_sample": len(st.sample[0]),
        "shared_pca_normalised": shared_pca_normalised(st, True),
        "shared_pca_balanced": balanced.k_columns(),
        "reconstruction_balanced_per_layer": balanced_reconstruction(st.sample, balanced, shared),
        "shared_overlap": shared_overlap(shared, bases),
        "reconstruction_own_per_layer": own_reconstruction(st.sample, bases),
        "write_sources": write_sources(st, bases, ffn, True),
        "unembedding_overlap": unembedding_overlap(
            readout_of(d, readout_seed), bases, attn, [r["k90"] for r in layer_pca], [r["attn_k90"] for r in attn_ffn]
        ),
        "norm_concentration": norm_concentration(st, selection),
        "pc1_origin": pc1_origin(st, bases, torch.zeros(n_layers, d), sample_where(st, selection)),
        "subspace_overlap": subspace_overlap(attn, ffn),
        "layer_pca_without_outliers": layer_pca_without_outliers(st, selection, True, held_vectors(capture.delta_phi)),
        **given_tables(d),
    }
