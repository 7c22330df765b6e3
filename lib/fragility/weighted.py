"""Tables 7A-7E and the causes with some positions left out, through the tables' own functions.

"Leaving a position out" (DESIGN.md, "Fragility") removes it from every statistic computed from
the capture: its vectors from the moments (downdated: the float64 sums minus its contributions,
lib/tables/followups.py `without`), its norms from 7A, its rows from the 7C sample, its next-token NLL
from the perplexity averages. It stays in the context of the forward passes, so no other
position's Δφ changes and 7D's projected passes differ only by their bases.

`Dropped` is a read-only mapping with the keys of Run.tables; each table, and each layer's row of
the per-layer K tables, is computed when first read, so a claim that reads layer 2's K90 costs one
eigvalsh. 7D (lowrank_ppl's perplexities, baseline_ppl) needs new projected passes and is computed
only when a perplexity is read; its K column is known without them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from lib.measure.capture import KEYS, Stats, sample_positions, token_nll
from lib.measure.lowrank import Projection, _group_tensors, _hooks
from lib.measure.models import attention_kernel
from lib.measure.spectra import Moments, Pca, pca
from lib.tables.causes import (
    balanced_reconstruction,
    norm_concentration,
    own_reconstruction,
    pc1_origin,
    shared_balanced,
    shared_overlap,
    shared_pca_normalised,
    unembedding_directions,
    unembedding_overlap,
    write_sources,
)
from lib.tables.core import (
    attn_ffn_table,
    lowrank_table,
    norms_table,
    ppl_rows,
    projections,
    reconstruction_tables,
    shared_basis,
)
from lib.tables.followups import (
    layer_pca_without_outliers,
    shared_ablation_projections,
    shared_ablation_table,
    site_only_projections,
    subspace_overlap,
    without,
)

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.measure.capture import Capture
    from lib.setup.corpus import Selection


@dataclass(frozen=True)
class Where:
    """(chunk, position) of counted positions, as lib/tables/causes.py's `locate` reads a Selection."""

    where: list[tuple[int, int]]


@dataclass
class Base:
    """What every drop set shares: the held capture, its statistics and the run's settings."""

    capture: Capture
    stats: Stats
    selection: Selection
    tables: dict[str, Any]
    """The run's own tables (Run.tables): the verdicts before any drop, and the keys to rebuild."""
    centred: bool
    bridge: TransformerBridge | None = None
    """Needed for 7D's passes and the causes' weights; None: those tables raise."""
    batch_size: int = 1
    attention: str = "sdpa"
    vectors: dict[str, torch.Tensor] = field(init=False, default_factory=dict)
    """KEYS -> the capture's (n_layers, n_positions, d_model) writes."""
    memo: dict[tuple[Any, ...], Any] = field(init=False, default_factory=dict)
    """(table, drop set) -> the table, ("spectrum", key, layer, drop set) -> the layer's spectrum: each
    computed once per drop set, whichever claim reads it first."""

    def __post_init__(self) -> None:
        self.vectors = dict(
            zip(KEYS, (self.capture.delta_phi, self.capture.delta_phi_attn, self.capture.delta_phi_ffn))
        )

    @cached_property
    def predicted(self) -> torch.Tensor:
        """(n_positions,) long: the index in stats.nll of the prediction made at each counted position
        (of the next token), -1 at a chunk's last position (it predicts nothing)."""
        lengths = [len(c) for c in self.selection.chunks]
        starts = torch.tensor([0] + [n - 1 for n in lengths]).cumsum(0).tolist()  # capture's chunk-major order
        where = self.selection.where
        return torch.tensor([starts[c] + p if p < lengths[c] - 1 else -1 for c, p in where], dtype=torch.long)

    @cached_property
    def readout(self) -> torch.Tensor:
        """The readout's left singular vectors (lib/tables/causes.py unembedding_directions): the model's, once per run."""
        if self.bridge is None:
            raise KeyError("unembedding_overlap needs the model")
        return unembedding_directions(self.bridge)

    @cached_property
    def b_out(self) -> torch.Tensor:
        bridge = self.bridge
        if bridge is not None and getattr(bridge, "b_out", None) is not None:
            return bridge.b_out.detach().to("cpu")
        return torch.zeros_like(self.stats.total[0])


def downdate(base: Base, drop: Sequence[int]) -> Stats:
    """Stats without the positions `drop` (flat indices): moments downdated, norms, sample and NLL filtered."""
    return Dropped(base, drop).stats_of(len(KEYS))


LAZY = ("layer_pca", "layer_spectra", "attn_ffn", "lowrank_ppl")
"""Tables computed row by row (or, for 7D, on the first perplexity read); each other table is computed
whole, once per drop set and run (Base.memo)."""


class LazyRow(Mapping[str, Any]):
    """A row whose `known` fields are given and whose others come from `fill()` (the whole table)."""

    def __init__(self, known: dict[str, Any], fill: Callable[[], dict[str, Any]]) -> None:
        self.known, self.fill = known, fill

    def __getitem__(self, key: str) -> Any:
        return self.known[key] if key in self.known else self.fill()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fill())

    def __len__(self) -> int:
        return len(self.fill())


class LazyRows(Sequence[Any]):
    """Rows computed one at a time: row(i) on first read."""

    def __init__(self, n: int, row: Callable[[int], Any]) -> None:
        self.n, self.row, self.done = n, row, {}  # type: ignore[var-annotated]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(f"row {i} of {self.n}")
        i %= self.n
        if i not in self.done:
            self.done[i] = self.row(i)
        return self.done[i]


class Dropped(Mapping[str, Any]):
    """Run.tables without the positions `drop`: each table computed when first read."""

    def __init__(self, base: Base, drop: Sequence[int]) -> None:
        self.base, self.drop = base, tuple(sorted(drop))
        self.done: dict[str, Any] = {}
        self._pcas: dict[tuple[str, int, bool], Pca] = {}
        self._moments: dict[tuple[str, int], Moments] = {}
        self._stats: dict[int, Stats] = {}
        self.n_layers = base.stats.total.shape[1]
        self.builders: dict[str, Callable[[], Any]] = {
            "config": lambda: base.tables["config"],
            "model_shape": lambda: base.tables["model_shape"],
            "norms": lambda: norms_table(self.base.stats.norms[:, self._kept]),
            "layer_pca": lambda: LazyRows(
                self.n_layers, lambda i: {"layer": i, **self.pca("delta_phi", i).k_columns()}
            ),
            "layer_spectra": lambda: LazyRows(self.n_layers, lambda i: self.pca("delta_phi", i).ratio.tolist()),
            "attn_ffn": lambda: LazyRows(self.n_layers, self._attn_ffn_row),
            "shared_pca": lambda: pca(self.stats.shared_moments(), base.centred, vectors=False).k_columns(),
            "reconstruction": lambda: self._reconstruction[0],
            "reconstruction_per_layer": lambda: self._reconstruction[1],
            "reconstruction_sample": lambda: len(self.light.sample[0]),
            "baseline_ppl": lambda: math.exp(float(self.light.nll.mean())),
            "lowrank_ppl": self._lowrank_rows,
            "shared_pca_normalised": lambda: shared_pca_normalised(self.stats, base.centred),
            "shared_pca_balanced": lambda: self._balanced.k_columns(),
            "reconstruction_balanced_per_layer": lambda: balanced_reconstruction(
                self.light.sample, self._balanced, self.shared
            ),
            "shared_overlap": lambda: shared_overlap(self.shared, self.bases("delta_phi")),
            "reconstruction_own_per_layer": lambda: own_reconstruction(self.light.sample, self.bases("delta_phi")),
            "write_sources": lambda: write_sources(
                self.stats_of(len(KEYS)), self.bases("delta_phi"), self.bases("ffn"), base.centred
            ),
            "unembedding_overlap": self._unembedding,
            "norm_concentration": lambda: norm_concentration(self.light, self._kept_where),  # type: ignore[arg-type]
            "pc1_origin": lambda: pc1_origin(self.light, self.bases("delta_phi"), base.b_out, self._sample_where),
            # the follow-ups 7F-7H (lib/tables/followups.py), where the run has them
            "attn_only_ppl": lambda: self._followup_passes["attn_only_ppl"],
            "ffn_only_ppl": lambda: self._followup_passes["ffn_only_ppl"],
            "shared_ablation": lambda: self._followup_passes["shared_ablation"],
            "subspace_overlap": lambda: subspace_overlap(self.bases("attn"), self.bases("ffn")),
            "layer_pca_without_outliers": lambda: layer_pca_without_outliers(
                self.stats, self._kept_where, base.centred, self._kept_vectors
            ),
        }

    # the mapping
    def __getitem__(self, name: str) -> Any:
        if name not in self.builders or name not in self.base.tables:
            raise KeyError(name)
        if name not in self.done:
            if name in LAZY:
                self.done[name] = self.builders[name]()
            else:  # whichever claim reads it first computes it for every claim that drops the same positions
                key = (name, self.drop)
                if key not in self.base.memo:
                    self.base.memo[key] = self.builders[name]()
                self.done[name] = self.base.memo[key]
        return self.done[name]

    def __iter__(self) -> Iterator[str]:
        return (k for k in self.base.tables if k in self.builders)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    # the statistics
    def moments(self, key: str, layer: int) -> Moments:
        """One layer's downdated moments (lib/tables/followups.py `without`), computed once, without the other layers'."""
        if (key, layer) not in self._moments:
            x = self.base.vectors[key][layer, list(self.drop)]  # (k, d_model)
            self._moments[(key, layer)] = without(self.base.stats.moments(key, layer), x)
        return self._moments[(key, layer)]

    def stats_of(self, n_keys: int) -> Stats:
        """Stats without the dropped positions, holding the moments of KEYS[:n_keys] only: 1 (Δφ) for the
        shared basis, 3 where a table reads the attention's and the FFN's (moments(key) of a key left
        out raises an IndexError, never a wrong value)."""
        if n_keys not in self._stats:
            light = self.light
            layers = range(self.n_layers)
            total = torch.stack([torch.stack([self.moments(k, i).total for i in layers]) for k in KEYS[:n_keys]])
            outer = torch.stack([torch.stack([self.moments(k, i).outer for i in layers]) for k in KEYS[:n_keys]])
            self._stats[n_keys] = Stats(light.count, total, outer, light.norms, light.sample, light.nll)
        return self._stats[n_keys]

    @property
    def stats(self) -> Stats:
        """Δφ's moments only (what the shared basis and most causes read)."""
        return self.stats_of(1)

    @cached_property
    def light(self) -> Stats:
        """Stats without the dropped positions and without moments (empty: reading them raises): norms,
        the 7C sample and the NLL filtered, for the tables that read nothing else."""
        st, drop = self.base.stats, torch.tensor(self.drop, dtype=torch.long)
        keep = torch.ones(st.norms.shape[1], dtype=torch.bool)
        keep[drop] = False
        sampled = sample_positions(st.norms.shape[1], st.sample.shape[1])
        nll_keep = torch.ones(len(st.nll), dtype=torch.bool)
        predicted = self.base.predicted[drop]
        nll_keep[predicted[predicted >= 0]] = False
        empty = st.total[:, :, :0]  # (3, n_layers, 0)
        return Stats(
            st.count - len(drop),
            empty,
            empty[..., None],
            st.norms[:, keep],
            st.sample[:, keep[sampled]],
            st.nll[nll_keep],
        )

    def pca(self, key: str, layer: int, vectors: bool = False) -> Pca:
        """The layer's PCA; its spectrum alone (eigvalsh) unless directions were asked for. Spectra are
        kept per drop set for the run (small: two (d,) tensors), directions for this drop set only."""
        if (key, layer, True) in self._pcas:
            return self._pcas[(key, layer, True)]
        spectrum = ("spectrum", key, layer, self.drop)
        if not vectors and spectrum in self.base.memo:
            return self.base.memo[spectrum]
        fitted = pca(self.moments(key, layer), self.base.centred, vectors)
        if vectors:
            self._pcas[(key, layer, True)] = fitted
        self.base.memo.setdefault(spectrum, Pca(fitted.mean, None, fitted.variance))
        return fitted

    def bases(self, key: str) -> list[Pca]:
        return [self.pca(key, layer, vectors=True) for layer in range(self.n_layers)]

    @cached_property
    def shared(self) -> Pca:
        return shared_basis(self.stats, self.base.centred)

    @cached_property
    def _balanced(self) -> Pca:
        return shared_balanced(self.stats, self.base.centred)

    def _attn_ffn_row(self, layer: int) -> dict[str, Any]:
        row = attn_ffn_table([self.pca("attn", layer)], [self.pca("ffn", layer)])[0]
        return {**row, "layer": layer}

    @cached_property
    def _reconstruction(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return reconstruction_tables(self.light.sample, self.shared)

    @property
    def _kept(self) -> list[int]:
        dropped = set(self.drop)
        return [i for i in range(self.base.stats.norms.shape[1]) if i not in dropped]

    @property
    def _kept_where(self) -> Where:
        where = self.base.selection.where
        return Where([where[i] for i in self._kept])

    @property
    def _sample_where(self) -> list[tuple[int, int]]:
        """(chunk, position) of each row of light.sample: the run's sample rows of the kept positions."""
        where = self.base.selection.where
        sampled = set(sample_positions(len(where), self.base.stats.sample.shape[1]).tolist())
        return [where[i] for i in self._kept if i in sampled]

    def _unembedding(self) -> dict[str, Any]:
        """lib/tables/causes.py unembedding_overlap with the readout's directions computed once per run (an
        eigh of W_U W_U^T, d x vocab, would otherwise be most of a recomputation's cost)."""
        k90 = [row["k90"] for row in self["layer_pca"]]
        attn_k90 = [row["attn_k90"] for row in self["attn_ffn"]]
        return unembedding_overlap(self.base.readout, self.bases("delta_phi"), self.bases("attn"), k90, attn_k90)

    def _lowrank_rows(self) -> list[LazyRow]:
        return [
            LazyRow({"k": row["k"]}, lambda i=i: self._lowrank[i])
            for i, row in enumerate(self.base.tables["lowrank_ppl"])
        ]

    @property
    def _lowrank(self) -> list[dict[str, Any]]:
        """7D: the projected passes with this drop set's bases; NLL means over the kept predictions."""
        key = ("lowrank_ppl", self.drop)
        if key not in self.base.memo:
            self.base.memo[key] = self._lowrank_passes()
        return self.base.memo[key]

    def _kept_vectors(self, wanted: dict[int, list[int]]) -> dict[tuple[int, int], torch.Tensor]:
        """lib/tables/followups.py held_vectors, by index among the kept positions."""
        kept, delta_phi = self._kept, self.base.vectors["delta_phi"]
        return {(layer, p): delta_phi[layer, kept[p]] for layer, ps in wanted.items() for p in ps}

    @property
    def _followup_passes(self) -> dict[str, list[dict[str, Any]]]:
        """7F and 7H: lib/tables/followups.py's projected passes with this drop set's bases, NLL means over the
        kept predictions; once per drop set (Base.memo)."""
        key = ("followup_passes", self.drop)
        if key not in self.base.memo:
            ks = [row["k"] for row in self.base.tables["lowrank_ppl"]]
            variants = site_only_projections(self.bases("attn"), self.bases("ffn"), ks)
            variants += shared_ablation_projections(self.shared, self.n_layers, ks)
            nll = self._kept_nll(variants)
            baseline, n = float(self.light.nll.mean()), len(ks)
            self.base.memo[key] = {
                "attn_only_ppl": ppl_rows(baseline, nll[:n], ks),
                "ffn_only_ppl": ppl_rows(baseline, nll[n : 2 * n], ks),
                "shared_ablation": shared_ablation_table(baseline, nll[2 * n :], ks),
            }
        return self.base.memo[key]

    def _kept_nll(self, variants: Sequence[Projection]) -> list[float]:
        """Each variant's mean next-token NLL over the predictions made at kept positions."""
        if self.base.bridge is None:
            raise KeyError("the projected passes (7D, 7F, 7H) need the model")
        nll = variant_token_nll(
            self.base.bridge, self.base.selection, variants, self.base.batch_size, self.base.attention
        )
        keep = torch.ones(nll.shape[1], dtype=torch.bool)
        predicted = self.base.predicted[list(self.drop)]
        keep[predicted[predicted >= 0]] = False
        return nll[:, keep].mean(1).tolist()

    def _lowrank_passes(self) -> list[dict[str, Any]]:
        ks = [row["k"] for row in self.base.tables["lowrank_ppl"]]
        variants = projections(self.bases("delta_phi"), self.shared, ks)
        return lowrank_table(float(self.light.nll.mean()), self._kept_nll(variants), ks)


def variant_token_nll(
    bridge: TransformerBridge, selection: Selection, variants: Sequence[Projection], batch_size: int, attention: str
) -> torch.Tensor:
    """(n_variants, n_predicted) float64 next-token NLL of every prediction under each variant.

    lib/measure/lowrank.py's hooks (`_group_tensors`, `_hooks`) and `token_nll`, in lowrank_nll's groups; unlike
    lowrank_nll it keeps each prediction's NLL, so that the perplexity can leave positions out.
    """
    device = bridge.cfg.device
    rows: list[torch.Tensor] = [torch.empty(0)] * len(variants)
    # lowrank_nll's groups (one site, similar width): the same padded shapes, the same arithmetic
    groups: list[list[int]] = []
    for site in sorted({v.site for v in variants}):
        order = sorted((i for i, v in enumerate(variants) if v.site == site), key=lambda i: variants[i].width)
        groups += [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for group in groups:
        means, w, complement, active = (t.to(device) for t in _group_tensors([variants[i] for i in group]))
        hooks = _hooks(means, w, complement, active, site=variants[group[0]].site)
        per_chunk = []
        with torch.inference_mode(), attention_kernel(bridge, attention), bridge.hooks(fwd_hooks=hooks):
            for chunk in selection.chunks:
                tokens = chunk.to(device).expand(len(group), -1)  # (G, T)
                per_chunk.append(token_nll(bridge(tokens), tokens))  # (G, T-1)
        nll = torch.cat(per_chunk, dim=1)  # (G, n_predicted)
        for g, i in enumerate(group):
            rows[i] = nll[g]
    return torch.stack(rows)
