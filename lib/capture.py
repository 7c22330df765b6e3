"""Record Δφ(l) = resid_post(l) - resid_pre(l), Δφ_attn(l) and Δφ_ffn(l) at every layer.

Only the four sites per layer are hooked (a full `run_with_cache` stores every
activation and is about 2x slower). The same forward pass gives the baseline
next-token NLL that 7D compares against, so no pass is run twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import torch

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.corpus import Selection

Hook = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Capture:
    """What one clean pass over the selection records (CPU tensors)."""

    delta_phi: torch.Tensor
    """(n_layers, n_positions, d_model) float32: resid_post - resid_pre."""
    delta_phi_attn: torch.Tensor
    """(n_layers, n_positions, d_model) float32: hook_attn_out."""
    delta_phi_ffn: torch.Tensor
    """(n_layers, n_positions, d_model) float32: hook_mlp_out."""
    nll: torch.Tensor
    """(n_predicted,) float64: next-token NLL of the clean model on every text token."""

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "delta_phi": self.delta_phi,
            "delta_phi_attn": self.delta_phi_attn,
            "delta_phi_ffn": self.delta_phi_ffn,
            "nll": self.nll,
        }


def batches(selection: Selection, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(tokens (B, T), counted (B, T)) of up to batch_size chunks of equal length, in order."""
    i = 0
    chunks, counted = selection.chunks, selection.counted
    while i < len(chunks):
        j = i + 1
        while j < len(chunks) and j - i < batch_size and len(chunks[j]) == len(chunks[i]):
            j += 1
        yield torch.stack(chunks[i:j]), torch.stack(counted[i:j])
        i = j


def token_nll(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(B, T-1) float64 NLL of tokens[:, 1:] under logits[:, :-1]; logits (B, T, vocab)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, vocab)
    return -logp.gather(-1, tokens[:, 1:, None]).squeeze(-1).double().cpu()


def capture(
    bridge: TransformerBridge,
    selection: Selection,
    batch_size: int = 8,
    progress: Callable[[Iterator], Iterator] = iter,
) -> Capture:
    """One clean forward pass per batch of chunks; hooks copy the counted positions to CPU."""
    n_layers, d_model = bridge.cfg.n_layers, bridge.cfg.d_model
    n = selection.n_positions
    out = {k: torch.empty(n_layers, n, d_model) for k in ("delta_phi", "attn", "ffn")}
    state: dict[str, object] = {}

    def recorder(key: str, layer: int) -> Hook:
        def hook(x: torch.Tensor, hook: object) -> torch.Tensor:  # x: (B, T, d_model)
            mask, off = state["mask"], state["offset"]
            if key == "pre":
                state[f"pre{layer}"] = x
                return x
            value = x - state.pop(f"pre{layer}") if key == "delta_phi" else x
            picked = value[mask]  # (n_counted, d_model)
            out[key][layer, off : off + len(picked)] = picked.float().cpu()
            return x

        return hook

    fwd_hooks = []
    for layer in range(n_layers):
        fwd_hooks += [
            (f"blocks.{layer}.hook_resid_pre", recorder("pre", layer)),
            (f"blocks.{layer}.hook_resid_post", recorder("delta_phi", layer)),
            (f"blocks.{layer}.hook_attn_out", recorder("attn", layer)),
            (f"blocks.{layer}.hook_mlp_out", recorder("ffn", layer)),
        ]
    nll, offset = [], 0
    device = bridge.cfg.device
    with torch.inference_mode(), bridge.hooks(fwd_hooks=fwd_hooks):
        for tokens, counted in progress(batches(selection, batch_size)):
            state.update(mask=counted.to(device), offset=offset)
            logits = bridge(tokens.to(device))  # (B, T, vocab)
            nll.append(token_nll(logits, tokens.to(device)).reshape(-1))
            offset += int(counted.sum())
    assert offset == n, (offset, n)
    return Capture(out["delta_phi"], out["attn"], out["ffn"], torch.cat(nll))
