"""Low-rank inference (7D): project every layer's Δφ onto K components during the pass.

At every layer at once (DESIGN.md):
    resid_post(l) := resid_pre(l) + mu_l + P_l (Δφ(l) - mu_l),   P_l = U_K U_K^T
with the layer's own basis (individual) or the shared one. Several projections run in
one batched pass: row g of the batch is the chunk under projection g.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from lib.capture import token_nll
from lib.models import attention_kernel

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.corpus import Selection


@dataclass(frozen=True)
class Projection:
    """One low-rank variant: what replaces Δφ at each layer."""

    mean: torch.Tensor
    """(n_layers, d_model) mu_l."""
    components: torch.Tensor
    """(n_layers, d_model, K) U_K: layer l's top-K principal directions."""


def _hooks(means: torch.Tensor, components: torch.Tensor) -> list[tuple[str, Callable[..., torch.Tensor]]]:
    """means (G, L, d), components (G, L, d, K): row g of the batch uses variant g.

    Variants with fewer than K components are padded with zero columns, which leaves
    U U^T unchanged.
    """
    saved: dict[int, torch.Tensor] = {}
    hooks = []
    for layer in range(means.shape[1]):

        def pre(x: torch.Tensor, hook: object, layer: int = layer) -> torch.Tensor:
            saved[layer] = x  # (G, T, d)
            return x

        def post(x: torch.Tensor, hook: object, layer: int = layer) -> torch.Tensor:
            resid_pre = saved.pop(layer)
            mu = means[:, layer, None, :]  # (G, 1, d)
            centred = x - resid_pre - mu  # (G, T, d)
            u = components[:, layer]  # (G, d, K)
            return resid_pre + mu + (centred @ u) @ u.transpose(1, 2)

        hooks += [(f"blocks.{layer}.hook_resid_pre", pre), (f"blocks.{layer}.hook_resid_post", post)]
    return hooks


def _padded(components: list[torch.Tensor]) -> torch.Tensor:
    """Stack (L, d, K_g) tensors into (G, L, d, max K_g) float32, zero-padded."""
    k_max = max(c.shape[-1] for c in components)
    out = torch.zeros(len(components), *components[0].shape[:-1], k_max)
    for g, c in enumerate(components):
        out[g, ..., : c.shape[-1]] = c
    return out


def lowrank_nll(
    bridge: TransformerBridge,
    selection: Selection,
    variants: Sequence[Projection],
    batch_size: int = 8,
    progress: Callable[[list], Iterable] = iter,
    attention: str = "sdpa",
) -> list[float]:
    """Mean next-token NLL on the selection's text tokens under each variant.

    Runs ceil(len(variants) / batch_size) * n_chunks forward passes.
    """
    device = bridge.cfg.device
    totals = torch.zeros(len(variants), dtype=torch.float64)
    count = sum(len(chunk) - 1 for chunk in selection.chunks)  # predicted tokens
    # Group variants of similar K, so that zero-padding to the group's largest K costs little.
    order = sorted(range(len(variants)), key=lambda i: variants[i].components.shape[-1])
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    steps = [(g, chunk) for g in range(len(groups)) for chunk in selection.chunks]
    with torch.inference_mode(), attention_kernel(bridge, attention), ExitStack() as hooked:
        current = None
        for g, chunk in progress(steps):
            group = groups[g]
            if g != current:  # the group's projections, hooked once for all its chunks
                hooked.close()
                means = torch.stack([variants[i].mean for i in group]).to(device, torch.float32)  # (G, L, d)
                components = _padded([variants[i].components for i in group]).to(device)  # (G, L, d, K)
                hooked.enter_context(bridge.hooks(fwd_hooks=_hooks(means, components)))
                current = g
            tokens = chunk.to(device).expand(len(group), -1)  # (G, T)
            totals[group] += token_nll(bridge(tokens), tokens).sum(-1)
    return (totals / count).tolist()
