"""The attention kernel of the forward passes, and the load-time probe that decides it.

TransformerBridge reconstructs attention eagerly (scores, mask, softmax) so that patterns
can be hooked; on Llama-style models that costs ~2x Hugging Face's forward on CPU. Δφ needs
no pattern, so the fused kernel computes attention with SDPA, in one of two ways per layer:

- joint-QKV layers (GPT-2; GPT-NeoX with its rotary): the bridge's own q, k, v (which hold
  compat's processed weights), then one fused causal SDPA call (`_sdpa_reconstruct`);
- other layers: the Hugging Face attention module the bridge wraps (it holds the processed
  weights there) with Hugging Face's SDPA implementation, where the model has one
  (`_hf_attention`); the bridge's hook_out (hook_attn_out) fires on its output.

A speed option must never change a number (DESIGN.md), so the kernel is used only where it
computes what the bridge's own attention computes: statically, where one of the two applies
to every layer and nothing hooks a site it skips; numerically, per loaded model, where
`probe` finds Δφ and the logits of both kernels equal to float rounding on a short batch.
The decision is stored on the bridge; `attention_kernel` applies it, and the run prints one
line saying which kernel runs and why.
"""

from __future__ import annotations

import functools
import logging
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from lib.measure.distributed import is_writer

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

LOG = logging.getLogger("dphi")
PROBE_TOLERANCE = 1e-5
"""Largest per-position relative difference ||a - b|| / ||b|| of Δφ(l) (every layer) and of the
logits allowed between the fused and the eager kernel. Float32 rounding of the two summation
orders gives 5e-7 to 1.4e-6 on 2-layer models of every family where the maths agree (docs/families.md); a kernel that drops rotary gives 6e-3 on a random GPT-NeoX and ~0.8 on a
sharpened one. 1e-5 is also the suite's tolerance on norms and perplexity across kernels, so
a model that passes gives the eager numbers to it; a deep model whose rounding exceeds it
keeps the bridge's own attention (slower, never wrong)."""
PROBE_LENGTH = 64
"""Tokens per probe sequence (fewer when the context is shorter): long enough for rotary and
ALiBi to move far-apart positions, short enough to cost two small forward passes."""
PROBE_BATCH = 2
"""Sequences in the probe batch: the fused kernel must also be right across a batch."""


@dataclass(frozen=True)
class Decision:
    """Which kernel a loaded model's forward passes use, and why (one line)."""

    kernel: str
    """'sdpa' (fused on every layer) or 'eager' (the bridge's own everywhere)."""
    fused: tuple[int, ...]
    """Layers whose attention runs fused: all of them, or none (eager)."""
    reason: str
    """Why, for the run's log line."""

    def line(self) -> str:
        return f"dphi: attention kernel {self.kernel}: {self.reason}"


def _joint_qkv_rotary() -> dict[Any, bool]:
    """The bridge's joint-QKV reconstructions `_sdpa_reconstruct` re-implements -> whether with rotary.

    GPT-2 and GPT-NeoX: the bridge splits the fused QKV weight into q, k, v of its own, which
    hold compat's processed weights; the Hugging Face module keeps the unprocessed ones, so
    these layers stay in the bridge and only the scores-mask-softmax step is fused.
    """
    from transformer_lens.model_bridge.generalized_components.joint_qkv_attention import JointQKVAttentionBridge
    from transformer_lens.model_bridge.generalized_components.joint_qkv_position_embeddings_attention import (
        JointQKVPositionEmbeddingsAttentionBridge,
    )

    return {
        JointQKVAttentionBridge._reconstruct_attention: False,
        JointQKVPositionEmbeddingsAttentionBridge._reconstruct_attention: True,
    }


def _skipped(attn: Any, joint: bool) -> bool:
    """Whether something hooks a site of `attn` the fused kernel skips: scores and pattern in a
    joint-QKV layer; every inner site but hook_out where Hugging Face's module runs."""
    from transformer_lens.hook_points import HookPoint

    if joint:
        sites = [getattr(attn, h) for h in ("hook_attn_scores", "hook_pattern") if hasattr(attn, h)]
    else:
        sites = [m for m in attn.modules() if isinstance(m, HookPoint) and m is not attn.hook_out]
    return any(m._forward_hooks or m._backward_hooks for m in sites)


def _refuse_hooks_added_inside(attn: Any, joint: bool) -> None:
    if _skipped(attn, joint):
        raise RuntimeError(
            f"a hook on an inner site of {str(attn.hook_out.name).removesuffix('.hook_out')} (pattern, q, k, v, z "
            "...) was added while the fused attention kernel runs, which would skip it: add it before entering "
            "attention_kernel, or use the 'eager' kernel (--attention eager)"
        )


def _sdpa_reconstruct(
    self: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, rotary: bool, **kwargs: Any
) -> tuple:
    """The bridge's joint-QKV attention with one fused causal SDPA call instead of scores + mask + softmax.

    The maths of JointQKVAttentionBridge._reconstruct_attention (and, for rotary layers, of
    JointQKVPositionEmbeddingsAttentionBridge's: the same rotary, full or partial, applied to
    q and k first) for inputs without padding or KV cache; hook_attn_scores and hook_pattern
    do not fire.
    """
    _refuse_hooks_added_inside(self, joint=True)
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


def _hf_attention(self: Any, *args: Any, **kwargs: Any) -> Any:
    """Forward of an attention bridge through the Hugging Face module it wraps, then hook_out.

    The module holds the bridge's processed weights (compat) and receives what the Hugging
    Face decoder layer passes (hidden states, rotary embeddings, the mask); it computes with
    the model's attention implementation, set to SDPA while the kernel runs.
    """
    _refuse_hooks_added_inside(self, joint=False)
    out = self.original_component(*args, **kwargs)
    attn_out = self.hook_out(out[0] if isinstance(out, tuple) else out)  # (B, T, d_model)
    return (attn_out, *out[1:]) if isinstance(out, tuple) else attn_out


def _how(attn: Any, hf: Any) -> str | None:
    """How the fused kernel runs this layer: 'joint' (_sdpa_reconstruct), 'hf' (_hf_attention) or None."""
    if getattr(type(attn), "_reconstruct_attention", None) in _joint_qkv_rotary():
        return "joint"
    if getattr(attn, "original_component", None) is not None and getattr(hf, "_supports_sdpa", False):
        return "hf"
    return None


def fusable(bridge: TransformerBridge) -> bool:
    """Whether the fused kernel can run every layer of this model (static check; the probe decides)."""
    hf = getattr(bridge, "original_model", None)
    cfg = bridge.cfg
    plain = not any(getattr(cfg, flag, False) for flag in ("use_attn_result", "use_split_qkv_input", "use_attn_in"))
    attns = [getattr(block, "attn", None) for block in bridge.blocks]
    return plain and hasattr(hf, "config") and len(attns) > 0 and all(_how(a, hf) for a in attns)


@contextmanager
def _fused(bridge: TransformerBridge, layers: tuple[int, ...]) -> Iterator[None]:
    """Run every layer's attention fused inside the block, when `layers` is every layer and
    nothing hooks a site the kernel skips; else leave the bridge's own everywhere."""
    hf = bridge.original_model
    attns = [bridge.blocks[layer].attn for layer in layers]
    how = [_how(a, hf) for a in attns]
    if (
        not attns
        or len(attns) != len(bridge.blocks)
        or any(h is None or _skipped(a, h == "joint") for a, h in zip(attns, how))
    ):
        yield
        return
    rotary = _joint_qkv_rotary()
    config: Any = hf.config  # shared by the layers; also decides the mask the model builds
    saved = config._attn_implementation
    for attn, h in zip(attns, how):
        if h == "joint":
            kernel = functools.partial(_sdpa_reconstruct, rotary=rotary[type(attn)._reconstruct_attention])
            attn._reconstruct_attention = types.MethodType(kernel, attn)
        else:  # an instance attribute, past the bridge's __setattr__
            attn.__dict__["forward"] = types.MethodType(_hf_attention, attn)
    if "hf" in how:
        config._attn_implementation = "sdpa"
    try:
        yield
    finally:
        config._attn_implementation = saved
        for attn, h in zip(attns, how):
            if h == "joint":
                del attn._reconstruct_attention
            else:
                del attn.__dict__["forward"]


def _probe_pass(bridge: TransformerBridge, tokens: torch.Tensor) -> list[torch.Tensor]:
    """[Δφ(0), ..., Δφ(L-1), logits] of one clean pass; each (B, T, width)."""
    saved: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Any:
        def hook(x: torch.Tensor, hook: object) -> torch.Tensor:
            saved[name] = x.detach().clone()
            return x

        return hook

    n_layers = bridge.cfg.n_layers
    hooks = [
        (f"blocks.{layer}.hook_resid_{s}", keep(f"{s}{layer}")) for layer in range(n_layers) for s in ("pre", "post")
    ]
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
    hf_name = type(getattr(bridge, "original_model", None)).__name__
    if not fusable(bridge):
        return Decision(
            "eager",
            (),
            f"the fused kernel cannot run {hf_name}'s attention (no SDPA in Hugging Face, "
            "or the bridge's own computation); using the bridge's own",
        )
    cfg = bridge.cfg
    length = max(2, min(PROBE_LENGTH, int(cfg.n_ctx)))
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, int(cfg.d_vocab), (PROBE_BATCH, length), generator=g)  # (B, T)
    bos = getattr(bridge.tokenizer, "bos_token_id", None)
    if bos is not None:
        tokens[:, 0] = bos
    tokens = tokens.to(cfg.device)
    layers = tuple(range(len(bridge.blocks)))
    eager = _probe_pass(bridge, tokens)
    try:
        with _fused(bridge, layers):
            fused = _probe_pass(bridge, tokens)
    except Exception as e:  # noqa: BLE001 - any failure of the fused kernel means: not for this model
        message = (str(e).splitlines() or [""])[0]
        return Decision(
            "eager",
            (),
            f"the fused kernel fails on {hf_name} ({type(e).__name__}: {message}); using the bridge's own",
        )
    worst = max(_relative_difference(f, e) for f, e in zip(fused, eager))
    if not worst <= PROBE_TOLERANCE:  # NaN refuses too
        return Decision(
            "eager",
            (),
            f"the fused kernel differs from the bridge's attention by {worst:.1e} "
            f"(> {PROBE_TOLERANCE:.0e}) on a probe; using the bridge's own",
        )
    return Decision(
        "sdpa",
        layers,
        f"fused on all {len(layers)} layers, equal to the "
        f"bridge's attention on a probe (max relative difference {worst:.1e} "
        f"<= {PROBE_TOLERANCE:.0e})",
    )


def decide(bridge: TransformerBridge, kernel: str, announce: bool = True) -> Decision:
    """The kernel `kernel` ('sdpa' or 'eager') resolves to on this bridge, decided once and stored on it."""
    decisions: dict[str, Decision] = bridge.__dict__.setdefault("_dphi_kernels", {})
    if kernel not in decisions:
        dtype = getattr(bridge.cfg, "dtype", torch.float32)
        if kernel == "eager":
            decisions[kernel] = Decision("eager", (), "the bridge's own (--attention eager)")
        elif dtype != torch.float32:
            # The two kernels' rounding differs by ~1e-2 in a 2-byte dtype (2.4e-2 bfloat16, 2.9e-3 float16
            # on the embedded model): the probe's 1e-5 would always refuse, after two passes and their memory.
            decisions[kernel] = Decision(
                "eager",
                (),
                f"the bridge's own: in {str(dtype).removeprefix('torch.')} the fused kernel's "
                f"rounding differs from it by more than {PROBE_TOLERANCE:.0e}",
            )
        else:
            decisions[kernel] = probe(bridge)
        if announce and is_writer():  # under torchrun, rank 0 speaks for all
            if LOG.isEnabledFor(logging.INFO):  # a front end collects it (pytest: into the claims summary)
                LOG.info(decisions[kernel].line())
            else:
                print(decisions[kernel].line(), file=sys.stderr)
    return decisions[kernel]


@contextmanager
def attention_kernel(bridge: TransformerBridge, kernel: str) -> Iterator[None]:
    """Run the bridge's attention as `kernel` ('sdpa' or 'eager') inside the block.

    'sdpa' installs the fused kernel where the probe accepted it (`decide`), and only while
    nothing hooks the attention's inner sites (patterns, q, k, v, z); otherwise the bridge's
    own runs. Inputs must have no padding and no KV cache (the suite's chunks never do).
    """
    if kernel not in ("sdpa", "eager"):
        raise ValueError(f"attention kernel {kernel!r}: expected 'sdpa' or 'eager'")
    layers = decide(bridge, kernel).fused
    with _fused(bridge, layers):
        yield
