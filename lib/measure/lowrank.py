"""Low-rank inference (7D): project every layer's Δφ onto K components during the pass.

At every layer at once (DESIGN.md):
    resid_post(l) := resid_pre(l) + mu_l + P_l (Δφ(l) - mu_l),   P_l = U_K U_K^T
with the layer's own basis (individual) or the shared one. The follow-up experiments use
the same hooks on another write (site "attn": hook_attn_out, "ffn": hook_mlp_out, where
x := mu_l + P_l (x - mu_l)) or on some layers only (the others keep their write).
Several projections run in one batched pass: row g of the batch is the chunk under
projection g. For K > d/2 the hook applies P_l = I - U_c U_c^T with the d - K remaining
directions U_c (cheaper). A variant that is the identity (K = d_model over a complete basis, or no
layer projected) runs no pass: its NLL is the clean passes' (`Projection.identity`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from lib.measure import distributed
from lib.measure.capture import token_nll
from lib.measure.models import attention_kernel

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.setup.corpus import Selection


@dataclass(frozen=True)
class Projection:
    """One low-rank variant: what replaces Δφ at each layer."""

    mean: torch.Tensor
    """(n_layers, d_model) mu_l."""
    directions: torch.Tensor
    """(n_layers, d_model, d_model) layer l's orthonormal principal directions, largest variance first."""
    k: int
    """Components kept: P_l = U_K U_K^T with U_K = directions[l, :, :K]."""
    site: str = "resid"
    """The write projected: resid (Δφ = resid_post - resid_pre), attn (hook_attn_out) or ffn (hook_mlp_out)."""
    layers: tuple[int, ...] | None = None
    """The layers projected (None: every layer); the others keep their full write."""

    def active(self) -> torch.Tensor:
        """(n_layers,) bool: the layers this variant projects."""
        n_layers = self.mean.shape[0]
        if self.layers is None:
            return torch.ones(n_layers, dtype=torch.bool)
        return torch.isin(torch.arange(n_layers), torch.tensor(self.layers, dtype=torch.long))

    @property
    def identity(self) -> bool:
        """Whether the variant changes nothing: it projects no layer, or keeps K >= every direction of a
        complete basis (directions (L, d, d), so P_l = U U^T = I for orthonormal U, and
        mu_l + P_l (x - mu_l) = x). A basis with fewer than d directions is never the identity."""
        d_model, n_directions = self.directions.shape[-2:]
        return not bool(self.active().any()) or (n_directions == d_model and self.k >= n_directions)

    @property
    def width(self) -> int:
        """Columns the hook multiplies by: K, or d - K for the complement form when that is smaller."""
        return min(self.k, self.directions.shape[-1] - self.k)


SITES = {"attn": "hook_attn_out", "ffn": "hook_mlp_out"}
"""Hook of each write other than Δφ (which is resid_post - resid_pre)."""


def _project(x: torch.Tensor, mu: torch.Tensor, u: torch.Tensor, keep: torch.Tensor | bool) -> torch.Tensor:
    """mu + P (x - mu) per row g; x (G, T, d), mu (G, 1, d), u (G, d, W), keep (G, 1, 1) complement rows,
    or one bool when every row is on the same side (the same values, without the select)."""
    centred = x - mu  # (G, T, d)
    along = (centred @ u) @ u.transpose(1, 2)  # (G, T, d)
    if isinstance(keep, bool):
        return mu + (centred - along if keep else along)
    return mu + torch.where(keep, centred - along, along)


def _uniform(mask: torch.Tensor) -> bool | None:
    """The one value of a bool mask whose entries are all equal, else None: a hook then skips torch.where,
    which would select every element from one side (bitwise the same result, one pass over (G, T, d) less)."""
    if bool(mask.all()):
        return True
    return False if not bool(mask.any()) else None


def _hooks(
    means: torch.Tensor,
    w: torch.Tensor,
    complement: torch.Tensor,
    active: torch.Tensor,
    site: str = "resid",
) -> list[tuple[str, Callable[..., torch.Tensor]]]:
    """means (G, L, d), w (G, L, d, W), complement (G,) bool, active (G, L) bool: row g of the batch
    uses variant g, at the layers where active[g].

    P = W W^T where W = U_K, or P = I - W W^T where W = U[:, K:] (complement[g]): the same
    projector for orthonormal U, at the cost of min(K, d - K) columns. Variants with fewer
    columns than W are padded with zero columns, which leaves W W^T unchanged. Layers no
    variant projects get no hook.
    """
    saved: dict[int, torch.Tensor] = {}
    side = _uniform(complement)
    keep = complement[:, None, None] if side is None else side  # (G, 1, 1) or one bool
    hooks: list[tuple[str, Callable[..., torch.Tensor]]] = []
    for layer in range(means.shape[1]):
        if not bool(active[:, layer].any()):
            continue
        on = None if _uniform(active[:, layer]) is True else active[:, layer, None, None]  # (G, 1, 1); None: every row
        mu, u = means[:, layer, None, :], w[:, layer]  # (G, 1, d), (G, d, W)

        def pre(x: torch.Tensor, hook: object, layer: int = layer) -> torch.Tensor:
            saved[layer] = x  # (G, T, d)
            return x

        def post(
            x: torch.Tensor,
            hook: object,
            layer: int = layer,
            mu: torch.Tensor = mu,
            u: torch.Tensor = u,
            on: torch.Tensor | None = on,
        ) -> torch.Tensor:
            resid_pre = saved.pop(layer)
            projected = resid_pre + _project(x - resid_pre, mu, u, keep)
            return projected if on is None else torch.where(on, projected, x)

        def write(
            x: torch.Tensor, hook: object, mu: torch.Tensor = mu, u: torch.Tensor = u, on: torch.Tensor | None = on
        ) -> torch.Tensor:
            projected = _project(x, mu, u, keep)
            return projected if on is None else torch.where(on, projected, x)

        if site == "resid":
            hooks += [(f"blocks.{layer}.hook_resid_pre", pre), (f"blocks.{layer}.hook_resid_post", post)]
        else:
            hooks.append((f"blocks.{layer}.{SITES[site]}", write))
    return hooks


def _group_tensors(variants: Sequence[Projection]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(means (G, L, d), W (G, L, d, max width) zero-padded, complement (G,), active (G, L)) float32 for _hooks."""
    out = torch.zeros(len(variants), *variants[0].directions.shape[:-1], max(v.width for v in variants))
    complement = torch.tensor([v.width < v.k for v in variants])
    for g, v in enumerate(variants):
        cols = v.directions[..., v.k :] if complement[g] else v.directions[..., : v.k]
        out[g, ..., : cols.shape[-1]] = cols
    active = torch.stack([v.active() for v in variants])
    return torch.stack([v.mean for v in variants]).float(), out, complement, active


def lowrank_nll(
    bridge: TransformerBridge,
    selection: Selection,
    variants: Sequence[Projection],
    batch_size: int = 8,
    progress: Callable[[list], Iterable] = iter,
    attention: str = "sdpa",
    baseline: torch.Tensor | None = None,
) -> torch.Tensor:
    """(n_variants, n_predicted) float64 next-token NLL of every prediction under each variant, in
    the capture's chunk-major order (mean_nll: the perplexity's mean; a caller that leaves positions
    out filters the columns first).

    baseline: (n_predicted,) the clean passes' NLL (the capture's, Stats.nll). Given, every identity
    variant (`Projection.identity`) gets it as its row and runs no pass: a pass would only add the
    float32 rounding of x - mu + mu to it (~1e-7 relative, tests/test_lowrank.py). None: every
    variant runs.

    Runs ceil(len(variants) / batch_size) * n_chunks forward passes: steps (group of variants,
    chunk). Under torchrun each rank runs a contiguous share of the steps and writes their columns
    into a zero tensor; the tensors are summed over ranks (exact: one rank wrote each element), so
    the result is bitwise that of one process.
    """
    device, dtype = bridge.cfg.device, bridge.cfg.dtype
    starts = [0]
    for chunk in selection.chunks:
        starts.append(starts[-1] + len(chunk) - 1)  # predictions of each chunk: columns starts[c]:starts[c+1]
    # Group variants of one site and similar width, so that zero-padding to the group's largest costs little.
    if baseline is not None and tuple(baseline.shape) != (starts[-1],):
        raise ValueError(f"baseline NLL of shape {tuple(baseline.shape)}: expected ({starts[-1]},), one per prediction")
    run = [i for i, v in enumerate(variants) if baseline is None or not v.identity]
    groups: list[list[int]] = []
    for site in sorted({variants[i].site for i in run}):
        order = sorted((i for i in run if variants[i].site == site), key=lambda i: variants[i].width)
        groups += [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    steps = [(g, c) for g in range(len(groups)) for c in range(len(selection.chunks))]
    nll = torch.zeros(len(variants), starts[-1], dtype=torch.float64)  # zeros where another rank computes
    mine = list(distributed.shard(len(steps)))
    with torch.inference_mode(), attention_kernel(bridge, attention), ExitStack() as hooked:
        current = None
        for s in progress(mine) if distributed.is_writer() else mine:
            g, c = steps[s]
            group = groups[g]
            if g != current:  # the group's projections, hooked once for all its chunks
                hooked.close()
                means, w, complement, active = _group_tensors([variants[i] for i in group])
                # the projection runs in the model's dtype, so resid_post keeps the dtype the next layer expects
                means, w = means.to(device, dtype), w.to(device, dtype)
                complement, active = complement.to(device), active.to(device)
                hooks = _hooks(means, w, complement, active, site=variants[group[0]].site)
                hooked.enter_context(bridge.hooks(fwd_hooks=hooks))
                current = g
            tokens = selection.chunks[c].to(device).expand(len(group), -1)  # (G, T)
            nll[group, starts[c] : starts[c + 1]] = token_nll(bridge(tokens), tokens)  # (G, T-1)
    distributed.sum_(nll)
    if baseline is not None:  # after the sum over ranks: every rank holds the baseline whole
        nll[[i for i, v in enumerate(variants) if v.identity]] = baseline.to(nll)
    return nll


def mean_nll(nll: torch.Tensor, selection: Selection) -> list[float]:
    """Each variant's mean NLL over every prediction: nll (n_variants, n_predicted) from lowrank_nll.

    Summed chunk by chunk, then over the chunks in order, then divided: the order the perplexities
    were always summed in, so that they stay the same to the last bit.
    """
    totals = torch.zeros(len(nll), dtype=torch.float64)
    start = 0
    for chunk in selection.chunks:
        n = len(chunk) - 1
        totals += nll[:, start : start + n].sum(-1)
        start += n
    return (totals / start).tolist()
