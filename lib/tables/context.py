"""What a table's builder reads (lib/tables/registry.py): one run's statistics, with some positions
left out or none, and the bases fitted from them, each fitted once.

`Inputs` is what every context of one run shares: the statistics, the held capture (if any), the
model and the selection, and a memo of small results. `Context(inputs, drop)` is the run without the
positions `drop` (flat indices; none for Run.tables). Leaving a position out (DESIGN.md, "Fragility")
removes it from every statistic computed from the capture: its vectors from the moments (downdated:
the float64 sums minus its contributions, followups.without), its norms from 7A, its rows from the 7C sample,
its next-token NLL from the perplexity averages. It stays in the context of the forward passes, so
no other position's Δφ changes and the projected passes differ only by their bases. A drop set is a
0/1 weight per position; issue 28 generalises it to counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from lib.measure.capture import KEYS, Stats, sample_positions
from lib.measure.lowrank import Projection, lowrank_nll, mean_nll
from lib.measure.spectra import Moments, Pca, pca
from lib.tables.causes import sample_where, unembedding_directions
from lib.tables.followups import recapture, without

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.measure.capture import Capture
    from lib.setup.corpus import Selection

Progress = Callable[[str], Callable[[list], Iterable]]
"""desc -> a progress wrapper of a list of steps (Run: a tqdm bar; fragility: none)."""


def no_progress(desc: str) -> Callable[[list], Iterable]:
    return iter


@dataclass(frozen=True)
class Where:
    """(chunk, position) of counted positions, as lib/tables/causes.py's `locate` reads a Selection."""

    where: list[tuple[int, int]]


@dataclass(eq=False)
class Inputs:
    """What every context of one run shares."""

    stats: Stats
    selection: Selection
    centred: bool
    config: dict[str, Any]
    """The run config's JSON (RunConfig.to_json): the `config` table."""
    ks: Sequence[int] | None = None
    """7D's K list, completed to d_model (core.lowrank_ks); None: the projected passes raise."""
    bridge: TransformerBridge | None = None
    """Needed for the projected passes and the weights the causes read; None: those tables raise KeyError."""
    capture: Capture | None = None
    """The held Δφ: needed to leave positions out; without it (a streamed run) the outliers are recaptured."""
    batch_size: int = 8
    attention: str = "sdpa"
    progress: Progress = no_progress
    memo: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    """Small results keyed with their drop set (tables, spectra), computed once whichever reads them first."""

    @cached_property
    def vectors(self) -> dict[str, torch.Tensor]:
        """KEYS -> the capture's (n_layers, n_positions, d_model) writes."""
        if self.capture is None:
            raise KeyError("leaving positions out needs the held capture")
        c = self.capture
        return dict(zip(KEYS, (c.delta_phi, c.delta_phi_attn, c.delta_phi_ffn)))

    @cached_property
    def predicted(self) -> torch.Tensor:
        """(n_positions,) long: the index in stats.nll of the prediction made at each counted position
        (of the next token), -1 at a chunk's last position (it predicts nothing)."""
        lengths = [len(c) for c in self.selection.chunks]
        starts = torch.tensor([0] + [n - 1 for n in lengths]).cumsum(0).tolist()  # capture's chunk-major order
        return torch.tensor(
            [starts[c] + p if p < lengths[c] - 1 else -1 for c, p in self.selection.where], dtype=torch.long
        )

    @cached_property
    def readout(self) -> torch.Tensor:
        """The readout's left singular vectors (causes.unembedding_directions), once per run: an eigh of
        W_U W_U^T would otherwise be most of a recomputation's cost."""
        if self.bridge is None:
            raise KeyError("unembedding_overlap needs the model")
        return unembedding_directions(self.bridge)

    @cached_property
    def b_out(self) -> torch.Tensor:
        """(n_layers, d_model) the FFNs' output biases; zeros for a model without them."""
        if self.bridge is not None and getattr(self.bridge, "b_out", None) is not None:
            return self.bridge.b_out.detach().to("cpu")
        return torch.zeros_like(self.stats.total[0])


class Context:
    """One run without the positions `drop`: its statistics and bases, each computed when first read.

    directions: the writes whose per-layer PCA is fitted with directions (eigh) whenever it is read;
    the others give their spectrum alone (eigvalsh, ~3x faster) until a table asks for directions.
    Run.tables fits Δφ's and the FFN's with directions (the causes read them all, and 7B and its
    spectra have always come from those fits); a drop set fits spectra first, since most claims read K.
    """

    def __init__(
        self, inputs: Inputs, drop: Sequence[int] = (), directions: tuple[str, ...] = ("delta_phi", "ffn")
    ) -> None:
        self.inputs, self.drop, self.directions = inputs, tuple(sorted(drop)), directions
        self.centred = inputs.centred
        self.n_layers = inputs.stats.total.shape[1]
        self._own: dict[tuple[Any, ...], Any] = {}  # large results (directions, downdated moments): this context's

    def once(self, key: tuple[Any, ...], compute: Callable[[], Any], shared: bool = False) -> Any:
        """compute() once per context (shared: once per run and drop set, in Inputs.memo)."""
        memo, key = (self.inputs.memo, (*key, self.drop)) if shared else (self._own, key)
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    # the statistics
    def moments(self, key: str, layer: int) -> Moments:
        """One layer's moments of one write, downdated without the dropped positions (followups.without)."""
        if not self.drop:
            return self.inputs.stats.moments(key, layer)
        x = lambda: self.inputs.vectors[key][layer, list(self.drop)]  # noqa: E731  (k, d_model)
        return self.once(("moments", key, layer), lambda: without(self.inputs.stats.moments(key, layer), x()))

    def stats_of(self, n_keys: int) -> Stats:
        """Stats without the dropped positions, holding the moments of KEYS[:n_keys] only: 1 (Δφ) for the
        shared basis, 3 where a table reads the attention's and the FFN's (moments(key) of a key left
        out raises an IndexError, never a wrong value)."""
        if not self.drop:
            return self.inputs.stats

        def compute() -> Stats:
            light, layers = self.light, range(self.n_layers)
            total = torch.stack([torch.stack([self.moments(k, i).total for i in layers]) for k in KEYS[:n_keys]])
            outer = torch.stack([torch.stack([self.moments(k, i).outer for i in layers]) for k in KEYS[:n_keys]])
            return Stats(light.count, total, outer, light.norms, light.sample, light.nll)

        return self.once(("stats", n_keys), compute)

    @property
    def stats(self) -> Stats:
        """Δφ's moments only (what the shared basis and most causes read)."""
        return self.stats_of(1)

    @property
    def light(self) -> Stats:
        """Stats without moments (empty: reading them raises) where positions are dropped: norms, the 7C
        sample and the NLL filtered, for the tables that read nothing else."""
        if not self.drop:
            return self.inputs.stats
        return self.once(("light",), self._light)

    def _light(self) -> Stats:
        st, drop = self.inputs.stats, torch.tensor(self.drop, dtype=torch.long)
        empty = st.total[:, :, :0]  # (3, n_layers, 0)
        return Stats(
            st.count - len(drop),
            empty,
            empty[..., None],
            st.norms[:, self.keep],
            st.sample[:, self.keep[sample_positions(st.norms.shape[1], st.sample.shape[1])]],
            st.nll[self.kept_predictions],
        )

    @cached_property
    def keep(self) -> torch.Tensor:
        """(n_positions,) bool: the positions not dropped."""
        keep = torch.ones(self.inputs.stats.norms.shape[1], dtype=torch.bool)
        keep[list(self.drop)] = False
        return keep

    @cached_property
    def kept_predictions(self) -> torch.Tensor:
        """(n_predicted,) bool: the predictions made at positions not dropped."""
        keep = torch.ones(len(self.inputs.stats.nll), dtype=torch.bool)
        predicted = self.inputs.predicted[list(self.drop)]
        keep[predicted[predicted >= 0]] = False
        return keep

    @property
    def kept(self) -> list[int]:
        return self.keep.nonzero().flatten().tolist()

    @property
    def baseline_nll(self) -> float:
        return float(self.light.nll.mean())

    @property
    def where(self) -> Selection | Where:
        """(chunk, position) of each kept position (`.where`), as causes.locate reads it."""
        if not self.drop:
            return self.inputs.selection
        where = self.inputs.selection.where
        return Where([where[i] for i in self.kept])

    @property
    def sample_where(self) -> list[tuple[int, int]]:
        """(chunk, position) of each row of light.sample: the run's sample rows of the kept positions."""
        if not self.drop:
            return sample_where(self.inputs.stats, self.inputs.selection)
        where, st = self.inputs.selection.where, self.inputs.stats
        sampled = set(sample_positions(len(where), st.sample.shape[1]).tolist())
        return [where[i] for i in self.kept if i in sampled]

    def vectors_at(self, wanted: dict[int, list[int]]) -> dict[tuple[int, int], torch.Tensor]:
        """Δφ at a few positions {layer: [positions]} (indices among the kept positions), keyed (layer,
        position): from the held capture, else recaptured (followups.recapture)."""
        if self.inputs.capture is None:
            i = self.inputs
            if i.bridge is None:
                raise KeyError("the outliers' vectors need the held capture or the model")
            return recapture(i.bridge, i.selection, wanted, i.batch_size, i.attention)
        kept, delta_phi = self.kept, self.inputs.vectors["delta_phi"]
        return {(layer, p): delta_phi[layer, kept[p]] for layer, ps in wanted.items() for p in ps}

    # the bases
    def pca(self, key: str, layer: int, vectors: bool = False) -> Pca:
        """The layer's PCA of one write: with directions where asked or where `directions` says, else its
        spectrum alone. Spectra are kept per drop set for the run (small: two (d,) tensors), directions
        for this context only."""
        vectors = vectors or key in self.directions
        if ("pca", key, layer) in self._own:
            return self._own[("pca", key, layer)]
        spectrum = ("spectrum", key, layer, self.drop)
        if not vectors and spectrum in self.inputs.memo:
            return self.inputs.memo[spectrum]
        fitted = pca(self.moments(key, layer), self.centred, vectors)
        if vectors:
            self._own[("pca", key, layer)] = fitted
        self.inputs.memo.setdefault(spectrum, Pca(fitted.mean, None, fitted.variance))
        return fitted

    def bases(self, key: str) -> list[Pca]:
        """Every layer's PCA of one write, with directions."""
        return [self.pca(key, layer, vectors=True) for layer in range(self.n_layers)]

    @property
    def shared(self) -> Pca:
        """7C's shared basis: PCA of every layer's Δφ stacked."""
        return self.once(("shared",), lambda: pca(self.stats.shared_moments(), self.centred))

    # the projected passes
    @property
    def ks(self) -> list[int]:
        if self.inputs.ks is None:
            raise KeyError("the projected passes need the run's K list")
        return list(self.inputs.ks)

    def nll_means(self, variants: Sequence[Projection], desc: str) -> list[float]:
        """Each variant's mean next-token NLL over the predictions made at kept positions."""
        i = self.inputs
        if i.bridge is None:
            raise KeyError("the projected passes (7D, 7F, 7H) need the model")
        nll = lowrank_nll(i.bridge, i.selection, variants, i.batch_size, i.progress(desc), i.attention)
        if not self.drop:
            return mean_nll(nll, i.selection)
        return nll[:, self.kept_predictions].mean(1).tolist()
