"""The attention kernel of the forward passes, and the load-time probe that decides it.

TransformerBridge reconstructs attention eagerly (scores, mask, softmax) so that patterns
can be hooked. Δφ needs no pattern, and one fused causal SDPA call halves the cost of a
GPT-2 forward on CPU. A speed option must never change a number (DESIGN.md), so the fused
kernel is used only where it computes what the bridge's own attention computes:

1. statically, on attention layers whose reconstruction is one the fused kernel re-implements
   (`FUSED`: the plain joint-QKV attention of GPT-2, and the joint-QKV rotary attention of
   GPT-NeoX / Pythia, full or partial rotary, with rotary applied exactly as the bridge does);
   everything else (ALiBi, Llama-style attention with grouped KV, sliding windows,
   soft-capping or its own score scale, custom subclasses) keeps the bridge's own kernel;
2. numerically, per loaded model: `probe` runs one short batch through both kernels and
   refuses the fused one when Δφ or the logits differ by more than float rounding.

The decision is stored on the bridge; `attention_kernel` applies it and the run prints one
line saying which kernel runs and why.
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

PROBE_TOLERANCE = 1e-5
"""Largest per-position relative difference ||a - b|| / ||b|| of Δφ(l) (every layer) and of the
logits allowed between the fused and the eager kernel. Float32 rounding of the two summation
orders gives ~1e-7 to 1e-6 on every family where the maths agree (measured: see README,
"Model families"); a kernel that drops rotary or ALiBi gives 1e-3 and more on a trained (or
sharpened) model. 1e-5 is also the suite's own tolerance on norms and perplexity across
kernels, so a model that passes the probe gives the eager numbers to that tolerance."""
PROBE_LENGTH = 64
"""Tokens per probe sequence (fewer when the context is shorter): long enough for rotary and
ALiBi to move far-apart positions, short enough to cost two small forward passes."""
PROBE_BATCH = 2
"""Sequences in the probe batch: the fused kernel must also be right across a batch."""


@dataclass(frozen=True)
class Decision:
    """Which kernel a loaded model's forward passes use, and why (one line)."""

    kernel: str
    """'sdpa' (fused on the layers in `fused`) or 'eager' (the bridge's own everywhere)."""
    fused: tuple[int, ...]
    """Layers whose attention runs fused (empty for eager)."""
    reason: str
    """Why, for the run's log line."""

    def line(self) -> str:
        return f"dphi: attention kernel {self.kernel}: {self.reason}"


def _fused_classes() -> dict[Any, bool]:
    """Bridge attention classes whose `_reconstruct_attention` the fused kernel re-implements -> rotary."""
    from transformer_lens.model_bridge.generalized_components.joint_qkv_attention import JointQKVAttentionBridge
    from transformer_lens.model_bridge.generalized_components.joint_qkv_position_embeddings_attention import (
        JointQKVPositionEmbeddingsAttentionBridge,
    )

    return {
        JointQKVAttentionBridge._reconstruct_attention: False,
        JointQKVPositionEmbeddingsAttentionBridge._reconstruct_attention: True,
    }


def _sdpa_reconstruct(
    self: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, rotary: bool, **kwargs: Any
) -> tuple:
    """The bridge's attention with one fused causal SDPA kernel instead of scores + mask + softmax.

    The maths of JointQKVAttentionBridge._reconstruct_attention (and, for rotary layers, of
    JointQKVPositionEmbeddingsAttentionBridge's: the same rotary, full or partial, applied to
    q and k first) for inputs without padding or KV cache. It skips hook_attn_scores /
    hook_pattern, so it is installed only where nothing hooks them.
    """
    n_heads = self.config.n_heads
    n_kv = getattr(self.config, "n_key_value_heads", None) or n_heads
    q, k, v, batch, seq, d_head = self._reshape_qkv_to_heads(q, k, v, n_heads, n_kv)  # (B, H, T, d_head)
    position_embeddings = kwargs.get("position_embeddings")
    if rotary and isinstance(position_embeddings, tuple):
        cos, sin = self._apply_position_embedding_hooks(position_embeddings)
        q, k = self._apply_rotary_pos_emb(q, k, cos, sin)
    if n_kv != n_heads:  # grouped KV, expanded as the bridge does
        k = k.repeat_interleave(n_heads // n_kv, dim=1)
        v = v.repeat_interleave(n_heads // n_kv, dim=1)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=d_head**-0.5)
    out = self._reshape_attn_output(out, batch, seq, n_heads, d_head)  # (B, T, H * d_head)
    return (self._apply_output_projection(out), None)


def fusable(attn: Any) -> bool:
    """Whether the fused kernel re-implements this attention layer's reconstruction (static check)."""
    cfg = attn.config
    reconstruct = getattr(type(attn), "_reconstruct_attention", None)
    plain = all(
        not getattr(cfg, flag, False)
        for flag in ("scale_attn_by_inverse_layer_idx", "use_attn_result", "use_split_qkv_input", "use_attn_in")
    )
    return (
        reconstruct in _fused_classes() and plain and not getattr(attn, "_reorder_and_upcast_attn", False)
        and not getattr(attn, "training", False)
    )


def _unhooked(attn: Any) -> bool:
    """Nothing hooks the pattern or the scores the fused kernel does not compute."""
    return not any(getattr(attn, h)._forward_hooks for h in ("hook_attn_scores", "hook_pattern") if hasattr(attn, h))


@contextmanager
def _fused(bridge: TransformerBridge, layers: tuple[int, ...]) -> Iterator[None]:
    patched = []
    rotary = _fused_classes()
    for layer in layers:
        attn = bridge.blocks[layer].attn
        if not _unhooked(attn):
            continue
        kernel = functools.partial(_sdpa_reconstruct, rotary=rotary[type(attn)._reconstruct_attention])
        attn._reconstruct_attention = types.MethodType(kernel, attn)
        patched.append(attn)
    try:
        yield
    finally:
        for attn in patched:
            del attn._reconstruct_attention


def _probe_pass(bridge: TransformerBridge, tokens: torch.Tensor) -> list[torch.Tensor]:
    """[Δφ(0), ..., Δφ(L-1), logits] of one clean pass; each (B, T, width)."""
    saved: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Any:
        def hook(x: torch.Tensor, hook: object) -> torch.Tensor:
            saved[name] = x.detach().clone()
            return x

        return hook

    n_layers = bridge.cfg.n_layers
    hooks = [(f"blocks.{layer}.hook_resid_{s}", keep(f"{s}{layer}")) for layer in range(n_layers) for s in ("pre", "post")]
    with torch.inference_mode(), bridge.hooks(fwd_hooks=hooks):
        logits = bridge(tokens)  # (B, T, vocab)
    return [saved[f"post{layer}"] - saved[f"pre{layer}"] for layer in range(n_layers)] + [logits.detach()]


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max over positions of ||a - b|| / ||b|| (float64 on the CPU: mps has none); a, b: (B, T, width)."""
    a64, b64 = a.cpu().double(), b.cpu().double()
    return float(((a64 - b64).norm(dim=-1) / b64.norm(dim=-1).clamp_min(1e-30)).max())


def probe(bridge: TransformerBridge) -> Decision:
    """Decide the kernel for `--attention sdpa`: fused where it reproduces the bridge's attention.

    Runs PROBE_BATCH deterministic pseudo-random token sequences (BOS first) through the
    eager and the fused kernel and compares Δφ of every layer and the logits.
    """
    layers = tuple(i for i, block in enumerate(bridge.blocks) if hasattr(block, "attn") and fusable(block.attn))
    if not layers:
        kind = type(bridge.blocks[0].attn).__name__ if len(bridge.blocks) and hasattr(bridge.blocks[0], "attn") else "?"
        return Decision("eager", (), f"the fused kernel does not re-implement this model's attention ({kind}); "
                                     "using the bridge's own")
    cfg = bridge.cfg
    length = max(2, min(PROBE_LENGTH, int(cfg.n_ctx)))
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, int(cfg.d_vocab), (PROBE_BATCH, length), generator=g)  # (B, T)
    bos = getattr(bridge.tokenizer, "bos_token_id", None)
    if bos is not None:
        tokens[:, 0] = bos
    tokens = tokens.to(cfg.device)
    eager = _probe_pass(bridge, tokens)
    with _fused(bridge, layers):
        fused = _probe_pass(bridge, tokens)
    worst = max(_relative_difference(f, e) for f, e in zip(fused, eager))
    if not worst <= PROBE_TOLERANCE:  # NaN refuses too
        return Decision("eager", (), f"the fused kernel differs from the bridge's attention by {worst:.1e} "
                                     f"(> {PROBE_TOLERANCE:.0e}) on a probe; using the bridge's own")
    return Decision("sdpa", layers, f"fused on {len(layers)} of {len(bridge.blocks)} layers, equal to the "
                                    f"bridge's attention on a probe (max relative difference {worst:.1e} "
                                    f"<= {PROBE_TOLERANCE:.0e})")


def decide(bridge: TransformerBridge, kernel: str, announce: bool = True) -> Decision:
    """The kernel `kernel` ('sdpa' or 'eager') resolves to on this bridge, decided once and stored on it."""
    decisions: dict[str, Decision] = bridge.__dict__.setdefault("_dphi_kernels", {})
    if kernel not in decisions:
        if kernel == "eager":
            decisions[kernel] = Decision("eager", (), "the bridge's own (--attention eager)")
        else:
            decisions[kernel] = probe(bridge)
        if announce:
            print(decisions[kernel].line(), file=sys.stderr)
    return decisions[kernel]


@contextmanager
def attention_kernel(bridge: TransformerBridge, kernel: str) -> Iterator[None]:
    """Run the bridge's attention as `kernel` ('sdpa' or 'eager') inside the block.

    'sdpa' installs the fused kernel on the layers the probe accepted (`decide`), and only
    while nothing hooks their patterns; the rest keep the bridge's own. Inputs must have no
    padding and no KV cache (the suite's chunks never do).
    """
    if kernel not in ("sdpa", "eager"):
        raise ValueError(f"attention kernel {kernel!r}: expected 'sdpa' or 'eager'")
    layers = decide(bridge, kernel).fused
    with _fused(bridge, layers):
        yield
