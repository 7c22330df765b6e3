"""The write-up's tables and their cells (`../shared/seed/exp7.ja.md`, English: exp7.en.md).

DOCUMENT_TABLES holds every number of tables 7A-7E in the shape of the measured tables
(lib/tables/run.py), so a sentence's predicate runs on either. CELLS are the table cells,
each with its tolerance and the reason for its size. What changes here: the write-up's
numbers and how closely a reproduction must match them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Tables = dict[str, Any]
"""A tables dict: the measured tables (lib/tables/run.py, lib/tables/followups.py) or DOCUMENT_TABLES."""

# ---------------------------------------------------------------- the document's tables
_NORMS = [
    (50.4, 4.8),
    (16.3, 15.6),
    (18.0, 73.1),
    (17.6, 6.2),
    (18.3, 5.1),
    (23.6, 5.8),
    (26.0, 5.1),
    (36.9, 8.4),
    (36.5, 5.3),
    (52.4, 9.1),
    (97.9, 12.9),
    (354.1, 118.0),
]
_LAYER_K = [
    (4, 41, 85, 132),
    (1, 29, 88, 155),
    (1, 1, 1, 1),
    (26, 116, 198, 281),
    (32, 132, 220, 306),
    (31, 133, 226, 317),
    (34, 141, 235, 326),
    (33, 130, 221, 312),
    (32, 132, 222, 312),
    (23, 110, 198, 286),
    (12, 85, 169, 258),
    (1, 3, 3, 11),
]
_SHARED_K = (1, 3, 6, 75)
_RECON = [
    (8, 0.503, 0.782),
    (16, 0.548, 0.749),
    (32, 0.604, 0.710),
    (64, 0.669, 0.660),
    (128, 0.750, 0.585),
    (256, 0.845, 0.470),
]
_LOWRANK = [
    (8, 4315, 144.9, 4052, 136.0),
    (16, 3627, 121.8, 11420, 383.4),
    (32, 2143, 71.9, 13796, 463.2),
    (64, 1612, 54.1, 12860, 431.7),
    (128, 873, 29.3, 9511, 319.3),
    (256, 248, 8.3, 5322, 178.7),
    (512, 44.5, 1.49, 208, 7.0),
    (768, 29.8, 1.00, 29.8, 1.00),
]
_ATTN_FFN = [
    (29, 127, 0.23),
    (63, 92, 0.68),
    (97, 1, 97.0),
    (123, 194, 0.63),
    (118, 217, 0.54),
    (108, 245, 0.44),
    (108, 242, 0.45),
    (108, 240, 0.45),
    (102, 227, 0.45),
    (85, 202, 0.42),
    (70, 151, 0.46),
    (3, 36, 0.08),
]
THRESHOLDS = (50, 80, 90, 95)


@dataclass(frozen=True)
class Setup:
    """What the write-up's numbers were measured on: its cells are judged only on a run of this set-up.

    `differs` reads a run's config as JSON (RunConfig.to_json, the tables' "config"), so the write-up
    needs nothing of the run's code.
    """

    model: str = "openai-community/gpt2"
    """The Hub name (the option `gpt2` resolves to it)."""
    model_name: str = "GPT-2 small"
    dataset: str = "wikitext-2-raw-v1"
    """The option's name of the text; a local copy is recognised by `dataset_revision`."""
    dataset_revision: str = "sha256:bbf94c53a05abe9e"
    """The content hash of WikiText-2 raw test (../shared/data/wikitext-2-raw/wiki.test.raw)."""
    text_name: str = "WikiText-2 test"
    n_tokens: int = 1000
    numerics: str = "compat"
    positions: str = "all"
    pca: str = "centred"

    def is_model(self, config: Mapping[str, Any]) -> bool:
        return config.get("model") == self.model

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


SETUP = Setup()

DOCUMENT_TABLES: Tables = {
    "config": {"model": SETUP.model, "dataset": SETUP.dataset, "n_tokens": SETUP.n_tokens, "d_model": 768},
    "model_shape": {"n_layers": 12, "n_heads": 12, "d_model": 768},
    "norms": [{"layer": i, "mean_norm": m, "std_norm": s} for i, (m, s) in enumerate(_NORMS)],
    "layer_pca": [{"layer": i, **{f"k{t}": k for t, k in zip(THRESHOLDS, ks)}} for i, ks in enumerate(_LAYER_K)],
    "shared_pca": {f"k{t}": k for t, k in zip(THRESHOLDS, _SHARED_K)},
    "reconstruction": [{"k": k, "cos_sim": c, "relative_l2": r} for k, c, r in _RECON],
    "baseline_ppl": 29.79,
    "lowrank_ppl": [
        {"k": k, "individual_ppl": ip, "individual_ratio": ir, "shared_ppl": sp, "shared_ratio": sr}
        for k, ip, ir, sp, sr in _LOWRANK
    ],
    "attn_ffn": [{"layer": i, "attn_k90": a, "ffn_k90": f, "ratio": r} for i, (a, f, r) in enumerate(_ATTN_FFN)],
}

# ---------------------------------------------------------------- table cells
K_TOL = (
    "K at a threshold moves where the cumulative variance curve is flat: +-10% (at least 2) covers device "
    "and library differences in a faithful reproduction; another model or a bug moves it further"
)
NORM_TOL = (
    "the same 1000 positions and weights give the same norms up to float rounding; 5% covers the "
    "document's rounding and device/library differences, a changed convention (BOS, centring) exceeds it"
)
STD_TOL = "std is carried by a few outlier positions (BOS), so it is more sensitive than the mean: 10%"
RECON_TOL = (
    "mean cosine / relative L2 over 12000 vectors; 0.02 absolute is ~7x the document's rounding (0.0005) "
    "plus device differences, far below the gaps between rows"
)
PPL_TOL = "a deterministic forward pass on the same tokens: 2% covers float differences between devices"
LOWRANK_TOL = (
    "perplexity under a destructive projection amplifies small differences exponentially; 15% keeps "
    "the catastrophe scale (x10 between rows) distinguishable"
)
RATIO_TOL = "ratio of two K values, each within +-10%: 20%"
K_RTOL, K_ATOL, LOWRANK_RTOL, RATIO_RTOL = 0.10, 2, 0.15, 0.20
"""The cells' tolerances; a sentence that restates cells accepts at least what they accept."""


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

    def measured(self, tables: Tables) -> float | None:
        """The same cell of a measured table; None when that table has no such row (smaller model)."""
        table = tables[self.table]
        if self.row is None:
            return float(table if self.column == "" else table[self.column])
        key = "k" if "k" in table[0] else "layer"
        want = DOCUMENT_TABLES[self.table][self.row][key]
        rows = [r for r in table if r[key] == want]
        return float(rows[0][self.column]) if rows else None

    def within(self, measured: float) -> bool:
        return math.isclose(measured, self.value, rel_tol=self.rtol, abs_tol=self.atol)


def _cells() -> list[Cell]:
    cells: list[Cell] = []
    for r in DOCUMENT_TABLES["norms"]:
        for col, rtol, why in (("mean_norm", 0.05, NORM_TOL), ("std_norm", 0.10, STD_TOL)):
            cells.append(Cell(f"7A-{col}-layer-{r['layer']}", "7A", "norms", r["layer"], col, r[col], rtol, 0.0, why))
    for r in DOCUMENT_TABLES["layer_pca"]:
        for t in THRESHOLDS:
            cells.append(
                Cell(
                    f"7B-k{t}-layer-{r['layer']}",
                    "7B",
                    "layer_pca",
                    r["layer"],
                    f"k{t}",
                    r[f"k{t}"],
                    K_RTOL,
                    K_ATOL,
                    K_TOL,
                )
            )
    for t in THRESHOLDS:
        v = DOCUMENT_TABLES["shared_pca"][f"k{t}"]
        cells.append(Cell(f"7C-shared-k{t}", "7C", "shared_pca", None, f"k{t}", v, 0.10, 2, K_TOL))
    for i, r in enumerate(DOCUMENT_TABLES["reconstruction"]):
        for col in ("cos_sim", "relative_l2"):
            cells.append(Cell(f"7C-{col}-k-{r['k']}", "7C", "reconstruction", i, col, r[col], 0.0, 0.02, RECON_TOL))
    cells.append(Cell("7D-baseline-ppl", "7D", "baseline_ppl", None, "", 29.79, 0.02, 0.0, PPL_TOL))
    for i, r in enumerate(DOCUMENT_TABLES["lowrank_ppl"]):
        for col in ("individual_ppl", "individual_ratio", "shared_ppl", "shared_ratio"):
            cells.append(
                Cell(f"7D-{col}-k-{r['k']}", "7D", "lowrank_ppl", i, col, r[col], LOWRANK_RTOL, 0.0, LOWRANK_TOL)
            )
    for r in DOCUMENT_TABLES["attn_ffn"]:
        for col, rtol, atol, why in (
            ("attn_k90", 0.10, 2, K_TOL),
            ("ffn_k90", 0.10, 2, K_TOL),
            ("ratio", 0.20, 0.0, RATIO_TOL),
        ):
            cells.append(
                Cell(f"7E-{col}-layer-{r['layer']}", "7E", "attn_ffn", r["layer"], col, r[col], rtol, atol, why)
            )
    return cells


CELLS: tuple[Cell, ...] = tuple(_cells())


def cells_in(*sections: str) -> list[Cell]:
    return [c for c in CELLS if c.section in sections]
