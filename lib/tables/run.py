"""One run config's tables (lib/tables/registry.py), each a pure function of the captured Δφ, cached on disk."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from lib.measure.capture import capture_stats, capture_tensors, check_capture_memory, check_memory
from lib.measure.stats import Capture, Stats
from lib.measure.store import Store
from lib.setup.config import CAPTURE_INDEPENDENT
from lib.setup.corpus import Selection, check_text_size, load_text, select_tokens, tokenize
from lib.setup.model_source import model_shape
from lib.setup.progress import progress
from lib.tables import registry
from lib.tables.context import Context, Inputs
from lib.tables.core import lowrank_ks
from lib.tables.followups import FOLLOWUPS_VERSION

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.setup.config import RunConfig

TABLES_VERSION = 7
"""Bump when a table's computation changes, so cached tables are recomputed (what each bump changed:
CHANGELOG.md)."""
CAPTURE_VERSION = 2
"""Bump when what a capture holds changes. 2: the fused kernel no longer drops rotary/ALiBi
(GPT-NeoX and Bloom entries written by version 1 with --attention sdpa were wrong), and the
streamed moments are per-batch float32 Grams merged in float64."""
STREAM_ABOVE = 20_000
"""Above this many positions Δφ is not held in memory: Stats are accumulated while capturing."""
HOLD_BYTES = 4 * 2**30
"""Nor when Δφ, Δφ_attn and Δφ_ffn of every layer (float32) would take more than this: larger
models stream sooner (GPT-2 small holds up to 20,000 positions, GPT-2 XL up to ~4,600)."""


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

    def text_ids(self, config: RunConfig, tokenizer: Any, store: Store | None = None) -> list[int]:
        """One tokenization per text and model (tokenizers belong to models), kept in `store` too."""
        key = (config.dataset, config.dataset_revision, config.model, config.model_revision)
        if key not in self._tokens:
            self._tokens[key] = token_ids(tokenizer, config, store)
        return self._tokens[key]


def token_ids(tokenizer: Any, config: RunConfig, store: Store | None) -> list[int]:
    """The text's token ids, read from `store` when this text went through this tokenizer before.

    Keyed by the text's content hash and a sha256 of the fast tokenizer's whole serialization (its
    vocabulary, merges, normalizer and pre-tokenizer), with the `tokenizers` version beside the
    store's own library versions. A tokenizer without a serialization is not cached.
    """
    from importlib import metadata

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if store is None or backend is None:
        return tokenize(tokenizer, load_text(config.dataset))
    serialized = hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest()[:16]
    meta = {"text": config.dataset_revision, "tokenizer": serialized, "tokenizers": metadata.version("tokenizers")}
    name = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]

    def compute() -> dict[str, torch.Tensor]:
        return {"ids": torch.tensor(tokenize(tokenizer, load_text(config.dataset)), dtype=torch.int64)}

    return store.get_or_compute("tokens", name, meta, compute)["ids"].tolist()


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

    def held(self, n_layers: int, d_model: int) -> bool:
        """Whether the capture holds every Δφ vector (else it streams Stats): STREAM_ABOVE, HOLD_BYTES."""
        held_bytes = 3 * n_layers * self.config.n_tokens * d_model * 4
        return self.config.n_tokens <= self.stream_above and held_bytes <= self.hold_bytes

    def cached(self, follow_ups: bool = False) -> bool:
        """Whether the tables (and the follow-ups) are in the store for this config: reading them loads no model."""
        stages = ["tables", "followups"] if follow_ups else ["tables"]
        key = self.config.key()
        return all(self.store.load_json(s, key, self._stage_meta(s), quiet=True) is not None for s in stages)

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
            held=self.held(shape.n_layers, shape.d_model),
            device=c.device,
            dtype=c.dtype,
            weights=shape.weights_in(itemsize),
        )

    @cached_property
    def bridge(self) -> TransformerBridge:
        return self.shared.bridge(self.config)

    def check_selection(self) -> Selection:
        """The run's tokens, selected: ConfigError where its window does not fit its text (counted exactly)."""
        return self.selection

    @cached_property
    def selection(self) -> Selection:
        tokenizer = self.bridge.tokenizer
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return select_tokens(
            self.shared.text_ids(self.config, tokenizer, self.store),
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
                self.bridge, self.selection, self.batch_size, progress("capture Δφ"), self.config.attention
            ).tensors()

        t = self.store.get_or_compute("capture", self.config.capture_key, meta, compute)
        return Capture(t["delta_phi"], t["delta_phi_attn"], t["delta_phi_ffn"], t["nll"])

    @cached_property
    def stats(self) -> Stats:
        """What the tables need: from the held Δφ, or streamed past `stream_above` positions / `hold_bytes`."""
        cfg = self.bridge.cfg  # loaded anyway: the tables' 7D passes need it
        if self.held(cfg.n_layers, cfg.d_model):
            return Stats.of_capture(self.capture)
        meta = self._meta("stats", CAPTURE_VERSION, CAPTURE_INDEPENDENT)

        def compute() -> dict[str, torch.Tensor]:
            check_memory(self.bridge, self.selection, self.batch_size, held=False)
            return capture_stats(
                self.bridge, self.selection, self.batch_size, progress("capture Δφ statistics"), self.config.attention
            ).tensors()

        return Stats.from_tensors(self.store.get_or_compute("stats", self.config.capture_key, meta, compute))

    @cached_property
    def context(self) -> Context:
        """What the tables are built from (lib/tables/context.py): the statistics, the bases fitted once,
        shared by Run.tables and Run.followups."""
        stats = self.stats  # loads the held capture where the tables use it; the outliers' vectors come from it
        inputs = Inputs(
            stats,
            self.selection,
            self.config.pca == "centred",
            self.config.to_json(),
            ks=lowrank_ks(stats.total.shape[-1], self.config.ks),
            bridge=self.bridge,
            capture=vars(self).get("capture"),
            batch_size=self.batch_size,
            attention=self.config.attention,
            progress=progress,
        )
        return Context(inputs)

    def _stage(self, stage: str) -> dict[str, Any]:
        """One stage's tables (lib/tables/registry.py), cached; an entry lacking a table registered since is recomputed.
        The "config" table is this run's: an entry another checkout wrote names that checkout's model path."""
        tables = self.store.get_or_compute_json(
            stage, self.config.key(), self._stage_meta(stage), lambda: self.compute_tables(stage)
        )
        return {**tables, "config": {**tables["config"], **self.config.to_json()}} if "config" in tables else tables

    def _stage_meta(self, stage: str) -> dict[str, Any]:
        version = TABLES_VERSION if stage == "tables" else FOLLOWUPS_VERSION
        return {**self._meta(stage, version), "tables": list(registry.names(stage))}

    @cached_property
    def tables(self) -> dict[str, Any]:
        """Tables 7A-7E and the causes (registry stage "tables"), JSON-shaped."""
        return self._stage("tables")

    def compute_tables(self, stage: str = "tables") -> dict[str, Any]:
        """One stage's tables computed (registry.build), not read from the cache."""
        return registry.build(self.context, stage)

    @cached_property
    def followups(self) -> dict[str, Any]:
        """Follow-up tables 7F-7H (lib/tables/followups.py): computed only when accessed, cached beside the tables."""
        return self._stage("followups")
