"""Tables 7A-7E for one run config, each a pure function of the captured Δφ, cached on disk."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from lib.measure.capture import Capture, Stats, capture_stats, capture_tensors, check_capture_memory, check_memory
from lib.measure.lowrank import lowrank_nll
from lib.measure.spectra import pca
from lib.measure.store import Store
from lib.setup.config import CAPTURE_INDEPENDENT
from lib.setup.corpus import Selection, check_text_size, load_text, select_tokens, tokenize
from lib.setup.model_source import model_shape
from lib.tables.causes import cause_tables
from lib.tables.core import (
    attn_ffn_table,
    layer_bases,
    layer_pca_table,
    lowrank_ks,
    lowrank_table,
    norms_table,
    projections,
    reconstruction_tables,
    shared_basis,
)
from lib.tables.followups import FOLLOWUPS_VERSION, followup_tables

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.setup.config import RunConfig

TABLES_VERSION = 5
"""Bump when a table's computation changes. 4: 7C leaves positions whose write is exactly zero out
of its means (they were averaged in as ~1e306). 5: the causes gain the norm-balanced shared basis,
the centred share of the norms, PC1's top position and every layer's attention-unembedding overlap."""
CAPTURE_VERSION = 2
"""Bump when what a capture holds changes. 2: the fused kernel no longer drops rotary/ALiBi
(GPT-NeoX and Bloom entries written by version 1 with --attention sdpa were wrong), and the
streamed moments are per-batch float32 Grams merged in float64."""
STREAM_ABOVE = 20_000
"""Above this many positions Δφ is not held in memory: Stats are accumulated while capturing."""
HOLD_BYTES = 4 * 2**30
"""Nor when Δφ, Δφ_attn and Δφ_ffn of every layer (float32) would take more than this: larger
models stream sooner (GPT-2 small holds up to 20,000 positions, GPT-2 XL up to ~4,600)."""


def _tqdm(desc: str) -> Callable[[list], Iterable]:
    from tqdm.auto import tqdm

    return lambda it: tqdm(it, desc=desc, file=sys.stderr, leave=False, disable=None)


class Shared:
    """What the runs of one session share: loaded models and tokenized texts."""

    def __init__(self) -> None:
        self._bridges: dict[tuple, TransformerBridge] = {}
        self._tokens: dict[tuple, list[int]] = {}

    def bridge(self, config: RunConfig) -> TransformerBridge:
        """One load per model, device, dtype and numerics (compat processes the weights)."""
        from lib.measure.models import load_model

        key = (config.model, config.model_revision, config.device, config.dtype, config.numerics)
        if key not in self._bridges:
            self._bridges[key] = load_model(config)
        return self._bridges[key]

    def text_ids(self, config: RunConfig, tokenizer: Any) -> list[int]:
        """One tokenization per text and model (tokenizers belong to models)."""
        key = (config.dataset, config.dataset_revision, config.model, config.model_revision)
        if key not in self._tokens:
            self._tokens[key] = tokenize(tokenizer, load_text(config.dataset))
        return self._tokens[key]


class Run:
    """One run config's data: model, tokens and Δφ loaded lazily, results cached in `store`."""

    def __init__(
        self,
        config: RunConfig,
        store: Store,
        batch_size: int = 8,
        stream_above: int = STREAM_ABOVE,
        hold_bytes: int = HOLD_BYTES,
        shared: Shared | None = None,
    ) -> None:

        self.config, self.store, self.batch_size = config, store, batch_size
        self.stream_above, self.hold_bytes = stream_above, hold_bytes
        self.shared = shared or Shared()
        """Models and tokenized texts shared with the session's other runs."""

    def _meta(self, stage: str, version: int, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
        return {"stage": stage, "version": version, **self.config.identity(exclude=exclude)}

    def _held(self, n_layers: int, d_model: int) -> bool:
        """Whether the capture holds every Δφ vector (else it streams Stats): STREAM_ABOVE, HOLD_BYTES."""
        held_bytes = 3 * n_layers * self.config.n_tokens * d_model * 4
        return self.config.n_tokens <= self.stream_above and held_bytes <= self.hold_bytes

    def cached(self, follow_ups: bool = False) -> bool:
        """Whether the tables (and the follow-ups) are in the store for this config: reading them loads no model."""
        stages = [("tables", TABLES_VERSION)] + ([("followups", FOLLOWUPS_VERSION)] if follow_ups else [])
        key = self.config.key()
        return all(self.store.load_json(s, key, self._meta(s, v), quiet=True) is not None for s, v in stages)

    def check_sizes(self, windows: int = 1) -> None:
        """ConfigError, before any tokenisation or model work, when `windows` windows of the
        positions asked for cannot fit the text (decided from its bytes) or the capture cannot fit
        in memory (decided from the model's config.json). select_tokens and check_memory check the
        exact counts later."""
        c = self.config
        shape = model_shape(c.model, c.model_revision)
        n_ctx = shape.n_ctx if shape else None
        check_text_size(load_text(c.dataset), c.n_tokens, n_ctx, c.positions, windows - 1)
        if shape is None:
            return
        itemsize = 2 if c.dtype in ("bfloat16", "float16") else 4
        check_capture_memory(
            n_layers=shape.n_layers,
            d_model=shape.d_model,
            d_vocab=shape.d_vocab,
            n=c.n_tokens,
            longest=min(c.n_tokens, shape.n_ctx),
            batch_size=self.batch_size,
            held=self._held(shape.n_layers, shape.d_model),
            device=c.device,
            dtype=c.dtype,
            weights=shape.weights_in(itemsize),
        )

    @cached_property
    def bridge(self) -> TransformerBridge:
        return self.shared.bridge(self.config)

    @cached_property
    def selection(self) -> Selection:
        tokenizer = self.bridge.tokenizer
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return select_tokens(
            self.shared.text_ids(self.config, tokenizer),
            bos,
            self.config.n_tokens,
            self.bridge.cfg.n_ctx,
            self.config.positions,
            self.config.window,
        )

    @cached_property
    def capture(self) -> Capture:
        meta = self._meta("capture", CAPTURE_VERSION, CAPTURE_INDEPENDENT)

        def compute() -> dict[str, torch.Tensor]:
            check_memory(self.bridge, self.selection, self.batch_size, held=True)
            return capture_tensors(
                self.bridge, self.selection, self.batch_size, _tqdm("capture Δφ"), self.config.attention
            ).tensors()

        t = self.store.get_or_compute("capture", self.config.capture_key, meta, compute)
        return Capture(t["delta_phi"], t["delta_phi_attn"], t["delta_phi_ffn"], t["nll"])

    @cached_property
    def stats(self) -> Stats:
        """What the tables need: from the held Δφ, or streamed past `stream_above` positions / `hold_bytes`."""
        cfg = self.bridge.cfg  # loaded anyway: the tables' 7D passes need it
        if self._held(cfg.n_layers, cfg.d_model):
            return Stats.of_capture(self.capture)
        meta = self._meta("stats", CAPTURE_VERSION, CAPTURE_INDEPENDENT)

        def compute() -> dict[str, torch.Tensor]:
            check_memory(self.bridge, self.selection, self.batch_size, held=False)
            return capture_stats(
                self.bridge, self.selection, self.batch_size, _tqdm("capture Δφ statistics"), self.config.attention
            ).tensors()

        return Stats.from_tensors(self.store.get_or_compute("stats", self.config.capture_key, meta, compute))

    @cached_property
    def tables(self) -> dict[str, Any]:
        return self.store.get_or_compute_json(
            "tables", self.config.key(), self._meta("tables", TABLES_VERSION), self.compute_tables
        )

    def compute_tables(self) -> dict[str, Any]:
        st, centred, cfg = self.stats, self.config.pca == "centred", self.bridge.cfg
        bases = layer_bases(st, "delta_phi", centred)
        shared = shared_basis(st, centred)
        reconstruction_rows, reconstruction_per_layer = reconstruction_tables(st.sample, shared)
        ks = lowrank_ks(st.total.shape[-1], self.config.ks)
        nll = lowrank_nll(
            self.bridge,
            self.selection,
            projections(bases, shared, ks),
            self.batch_size,
            _tqdm("7D low-rank passes"),
            self.config.attention,
        )
        baseline = float(st.nll.mean())
        attn = layer_bases(st, "attn", centred, vectors=False)
        attn[-1] = pca(st.moments("attn", len(attn) - 1), centred)  # the last layer's directions (causes)
        ffn = layer_bases(st, "ffn", centred)
        layer_pca, attn_ffn = layer_pca_table(bases), attn_ffn_table(attn, ffn)
        return {
            "config": self.config.to_json(),
            "norms": norms_table(st.norms),
            "layer_pca": layer_pca,
            "shared_pca": shared.k_columns(),
            "reconstruction": reconstruction_rows,
            "baseline_ppl": math.exp(baseline),
            "lowrank_ppl": lowrank_table(baseline, nll, ks),
            "attn_ffn": attn_ffn,
            "reconstruction_per_layer": reconstruction_per_layer,
            "layer_spectra": [b.ratio.tolist() for b in bases],
            "reconstruction_sample": len(st.sample[0]),
            "model_shape": {"n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "d_model": cfg.d_model},
            **cause_tables(
                st,
                bases,
                shared,
                attn,
                ffn,
                self.bridge,
                self.selection,
                centred,
                [r["k90"] for r in layer_pca],
                [r["attn_k90"] for r in attn_ffn],
            ),
        }

    @cached_property
    def followups(self) -> dict[str, Any]:
        """Follow-up tables 7F-7H (lib/tables/followups.py): computed only when accessed, cached beside the tables."""
        meta = self._meta("followups", FOLLOWUPS_VERSION)

        def compute() -> dict[str, Any]:
            st = self.stats  # loads the held capture where the tables use it; the outliers' vectors come from it
            return followup_tables(
                self.bridge,
                self.selection,
                st,
                centred=self.config.pca == "centred",
                ks=self.config.ks,
                batch_size=self.batch_size,
                progress=_tqdm("7F-7H low-rank passes"),
                attention=self.config.attention,
                capture=vars(self).get("capture"),
            )

        return self.store.get_or_compute_json("followups", self.config.key(), meta, compute)
