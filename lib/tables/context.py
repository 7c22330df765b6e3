"""What a table's builder reads (lib/tables/registry.py): one run's statistics under a weight per
position, and the bases fitted from them, each fitted once.

`Inputs` is what every context of one run shares: the statistics, the held capture (if any), the
model and the selection, and a memo of small results. `Context(inputs, counts=w)` is the run with
position i counted w_i times (flat indices; every position once for Run.tables). One weighting
serves both uses (DESIGN.md, "Fragility" and "Uncertainty"): a drop set is a 0/1 weight
(`Context(inputs, drop)`, the fragility search), a bootstrap replicate a count per position
(lib/robustness/bootstrap.py). A weight reaches every statistic computed from the capture:

- the moments: sum_i w_i x_i and sum_i w_i x_i x_i^T, count sum_i w_i, computed as the run's sums
  plus (w_i - 1) x_i's contributions at the positions whose weight is not 1 (spectra.reweighted:
  for a drop set, the float64 sums minus the dropped vectors' contributions, as before);
- 7A's norms, the 7C sample and the NLL averages: each position's entry repeated w_i times, so every
  mean and std a table takes is the frequency-weighted one (std: sum w (n - mean)^2 / (sum w - 1),
  ddof=1's analogue), through the tables' own code; a drop set filters them, as before.

A position stays in the context of the forward passes, so no other position's Δφ changes. The
projected passes (7D, 7F, 7H) are run again with the bases of the weighted statistics (`refit`, the
fragility search: a reported flip is exact), or their per-prediction NLL of the full fit is
reweighted (the bootstrap: bases held at the full-data fit).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from lib.measure.lowrank import Projection, lowrank_nll, mean_nll
from lib.measure.spectra import Moments, Pca, pca, reweighted, spectra
from lib.measure.stats import KEYS, Stats, sample_positions
from lib.tables.causes import sample_where, unembedding_directions
from lib.tables.followups import recapture

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.measure.stats import Capture
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
    """Small results keyed with their weights (Context.key: tables, spectra), computed once whichever
    reads them first; ("nll", desc): the full fit's per-prediction NLL of each projected pass."""

    @cached_property
    def vectors(self) -> dict[str, torch.Tensor]:
        """KEYS -> the capture's (n_layers, n_positions, d_model) writes."""
        if self.capture is None:
            raise KeyError("leaving positions out needs the held capture")
        return {key: self.capture.write(key) for key in KEYS}

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


def counts_key(counts: torch.Tensor | None) -> tuple[Any, ...]:
    """The memo key of a weighting: () for every position once, the sorted dropped positions for 0/1
    weights (the fragility search's drop sets), ("counts", digest) for counts."""
    if counts is None:
        return ()
    if bool(((counts == 0) | (counts == 1)).all()):
        return tuple((counts == 0).nonzero().flatten().tolist())
    return ("counts", hashlib.sha256(counts.numpy().tobytes()).hexdigest()[:16])


class Context:
    """One run under a weight per position: its statistics and bases, each computed when first read.

    drop: positions weighted 0 (the others 1); counts: (n_positions,) integer weights (a bootstrap
    replicate); neither: every position once. All-ones weights are the run itself (one memo key).
    directions: the writes whose per-layer PCA is fitted with directions (eigh) whenever it is read;
    the others give their spectrum alone (eigvalsh, ~3x faster) until a table asks for directions.
    Run.tables fits Δφ's and the FFN's with directions (the causes read them all, and 7B and its
    spectra have always come from those fits); a drop set fits spectra first, since most claims read K.
    refit: the projected passes run with this context's bases (True), or the full fit's per-prediction
    NLL is reweighted (False: the bootstrap), or a tuple of K values: those K's passes run with this
    context's bases, the others' reweighted (the bootstrap's refit of the small K, `--bootstrap-refit`).
    """

    def __init__(
        self,
        inputs: Inputs,
        drop: Sequence[int] = (),
        directions: tuple[str, ...] = ("delta_phi", "ffn"),
        counts: torch.Tensor | None = None,
        refit: bool | tuple[int, ...] = True,
    ) -> None:
        n = inputs.stats.norms.shape[1]
        if counts is None and drop:
            counts = torch.ones(n, dtype=torch.long)
            counts[list(drop)] = 0
        if counts is not None:
            counts = torch.as_tensor(counts, dtype=torch.long)
            if counts.shape != (n,) or bool((counts < 0).any()):
                raise ValueError(f"weights must be {n} non-negative counts, got shape {tuple(counts.shape)}")
            if bool((counts == 1).all()):
                counts = None
        self.inputs, self.counts, self.directions, self.refit = inputs, counts, directions, refit
        self.key = counts_key(counts)
        self.drop: tuple[int, ...] = self.key if counts is None or self.key[:1] != ("counts",) else ()
        """The positions weighted 0 where every other is weighted 1 (a drop set); () otherwise."""
        self.centred = inputs.centred
        self.n_layers = inputs.stats.total.shape[1]
        self._own: dict[tuple[Any, ...], Any] = {}  # large results (directions, reweighted moments): this context's

    def once(self, key: tuple[Any, ...], compute: Callable[[], Any], shared: bool = False) -> Any:
        """compute() once per context (shared: once per run and weighting, in Inputs.memo)."""
        memo, key = (self.inputs.memo, (*key, self.key)) if shared else (self._own, key)
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    # the statistics
    def moments(self, key: str, layer: int) -> Moments:
        """One layer's moments of one write under the weights: the run's sums plus (w_i - 1) x_i's
        contributions where w_i != 1 (spectra.reweighted)."""
        full = self.inputs.stats.moments(key, layer)
        if self.counts is None:
            return full

        def compute() -> Moments:
            changed = (self.counts != 1).nonzero().flatten()  # (m,)
            delta = (self.counts[changed] - 1).double()  # (m,)
            return reweighted(full, self.inputs.vectors[key][layer, changed], delta)  # x: (m, d_model)

        return self.once(("moments", key, layer), compute)

    def stats_of(self, n_keys: int) -> Stats:
        """Stats under the weights, holding the moments of KEYS[:n_keys] only: 1 (Δφ) for the shared
        basis, 3 where a table reads the attention's and the FFN's (moments(key) of a key left out
        raises an IndexError, never a wrong value)."""
        if self.counts is None:
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
        """Stats without moments (empty: reading them raises) under weights: norms, the 7C sample and
        the NLL with each position's entry repeated w_i times, for the tables that read nothing else."""
        if self.counts is None:
            return self.inputs.stats
        return self.once(("light",), self._light)

    def _light(self) -> Stats:
        st = self.inputs.stats
        empty = st.total[:, :, :0]  # (3, n_layers, 0)
        return Stats(
            len(self.index),
            empty,
            empty[..., None],
            st.norms[:, self.index],  # (n_layers, sum w)
            st.sample[:, self.sample_index],  # (n_layers, sum of the sampled positions' w, d_model)
            st.nll[self.prediction_index],
        )

    @cached_property
    def index(self) -> torch.Tensor:
        """(sum w,) long: position i repeated w_i times, in position order (a drop set: the kept positions)."""
        n = self.inputs.stats.norms.shape[1]
        if self.counts is None:
            return torch.arange(n)
        return torch.arange(n).repeat_interleave(self.counts)

    @cached_property
    def sample_index(self) -> torch.Tensor:
        """Stats.sample's rows, row j repeated as often as its position (sample_positions) is counted."""
        st = self.inputs.stats
        positions = sample_positions(st.norms.shape[1], st.sample.shape[1])
        rows = torch.arange(len(positions))
        return rows if self.counts is None else rows.repeat_interleave(self.counts[positions])

    @cached_property
    def prediction_index(self) -> torch.Tensor:
        """Stats.nll's predictions, each repeated as often as the position that makes it is counted (a
        prediction made at no counted position, BOS's where it is not counted, once)."""
        n_predicted = len(self.inputs.stats.nll)
        if self.counts is None:
            return torch.arange(n_predicted)
        weight = torch.ones(n_predicted, dtype=torch.long)
        predicted = self.inputs.predicted  # (n_positions,)
        made = predicted >= 0
        weight[predicted[made]] = self.counts[made]
        return torch.arange(n_predicted).repeat_interleave(weight)

    @property
    def kept(self) -> list[int]:
        """The counted positions, position i w_i times."""
        return self.index.tolist()

    @property
    def baseline_nll(self) -> float:
        return float(self.light.nll.mean())

    @property
    def where(self) -> Selection | Where:
        """(chunk, position) of each counted position (`.where`, position i w_i times), as causes.locate reads it."""
        if self.counts is None:
            return self.inputs.selection
        where = self.inputs.selection.where
        return Where([where[i] for i in self.kept])

    @property
    def sample_where(self) -> list[tuple[int, int]]:
        """(chunk, position) of each row of light.sample."""
        run = sample_where(self.inputs.stats, self.inputs.selection)
        if self.counts is None:
            return run
        return [run[j] for j in self.sample_index.tolist()]

    def vectors_at(self, wanted: dict[int, list[int]]) -> dict[tuple[int, int], torch.Tensor]:
        """Δφ at a few positions {layer: [positions]} (indices into `kept`), keyed (layer, position):
        from the held capture, else recaptured (followups.recapture)."""
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
        spectrum alone. Spectra are kept per weighting for the run (small: two (d,) tensors), directions
        for this context only."""
        vectors = vectors or key in self.directions
        if ("pca", key, layer) in self._own:
            return self._own[("pca", key, layer)]
        spectrum = ("spectrum", key, layer, self.key)
        if not vectors and spectrum in self.inputs.memo:
            return self.inputs.memo[spectrum]
        fitted = pca(self.moments(key, layer), self.centred, vectors)
        if vectors:
            self._own[("pca", key, layer)] = fitted
        self.inputs.memo.setdefault(spectrum, Pca(fitted.mean, None, fitted.variance))
        return fitted

    def spectra(self, key: str) -> None:
        """Every layer's spectrum of one write in one call (spectra.spectra), kept as `pca`
        keeps a spectrum: the bootstrap's K values, batched on a GPU."""
        layers = [i for i in range(self.n_layers) if ("spectrum", key, i, self.key) not in self.inputs.memo]
        if not layers:
            return
        moments = [self.moments(key, i) for i in layers]
        for i, m, variance in zip(layers, moments, spectra(moments, self.centred)):
            mean = m.total / m.count if self.centred else torch.zeros_like(m.total)
            self.inputs.memo[("spectrum", key, i, self.key)] = Pca(mean, None, variance)

    @property
    def with_directions(self) -> tuple[str, ...]:
        """The writes some layer's PCA of which was fitted with directions in this context."""
        return tuple(k for k in KEYS if any(("pca", k, i) in self._own for i in range(self.n_layers)))

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

    def nll_means(self, variants: Callable[[Context], Sequence[Projection]], desc: str) -> list[float]:
        """Each variant's mean next-token NLL over the counted predictions (each w_i times).

        variants(c): the projections built from a context's bases: this one's (the run; `refit`), or
        the run's own (the full fit, whose per-prediction NLL is kept in Inputs.memo and reweighted).
        """
        i = self.inputs
        if i.bridge is None:
            raise KeyError("the projected passes (7D, 7F, 7H) need the model")
        if self.counts is None:
            return mean_nll(self.per_prediction(variants, desc), i.selection)
        if self.refit is True:
            nll = lowrank_nll(
                i.bridge, i.selection, variants(self), i.batch_size, i.progress(desc), i.attention, i.stats.nll
            )
        else:
            nll = Context(i).per_prediction(variants, desc)
            own = variants(self) if self.refit else []
            rows = [n for n, p in enumerate(own) if p.k in self.refit]  # type: ignore[operator]
            if rows:  # (len(rows), n_predicted) with this context's bases
                nll = nll.clone()
                nll[rows] = lowrank_nll(
                    i.bridge,
                    i.selection,
                    [own[n] for n in rows],
                    i.batch_size,
                    i.progress(desc),
                    i.attention,
                    i.stats.nll,
                )
        return nll[:, self.prediction_index].mean(1).tolist()

    def per_prediction(self, variants: Callable[[Context], Sequence[Projection]], desc: str) -> torch.Tensor:
        """(n_variants, n_predicted) the run's per-prediction NLL of one set of projected passes, kept
        in Inputs.memo (the bootstrap reweights it)."""
        assert self.counts is None, "the full fit's passes only"
        i = self.inputs

        def compute() -> torch.Tensor:
            return lowrank_nll(
                i.bridge, i.selection, variants(self), i.batch_size, i.progress(desc), i.attention, i.stats.nll
            )

        return self.once(("nll", desc), compute, shared=True)
