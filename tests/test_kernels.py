"""The private names of TransformerLens (and of transformers and torch beneath it) that the fused
attention kernel, lib/measure/kernels.py, reads or patches.

Where one of them disappears in an upgrade, the kernel does not crash: its static check
(`fusable`) or its probe falls back to the bridge's own attention, with the right numbers
and up to ~2x slower, and nothing says why. These tests fail instead, naming the name.
"""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import pytest
from torch import nn
from transformer_lens.hook_points import HookPoint
from transformer_lens.model_bridge.generalized_components.joint_qkv_attention import JointQKVAttentionBridge
from transformer_lens.model_bridge.generalized_components.joint_qkv_position_embeddings_attention import (
    JointQKVPositionEmbeddingsAttentionBridge,
)
from transformers import LlamaPreTrainedModel, PretrainedConfig

import lib.measure.kernels

JOINT, ROTARY = JointQKVAttentionBridge, JointQKVPositionEmbeddingsAttentionBridge

PRIVATE_NAMES: dict[str, tuple[type, ...]] = {
    # the method _fused replaces per layer, and the key of _joint_qkv_rotary
    "_reconstruct_attention": (JOINT, ROTARY),
    # what _sdpa_reconstruct calls on the bridge's attention in its place
    "_reshape_qkv_to_heads": (JOINT, ROTARY),
    "_reshape_attn_output": (JOINT, ROTARY),
    "_apply_output_projection": (JOINT, ROTARY),
    "_apply_position_embedding_hooks": (ROTARY,),
    "_apply_rotary_pos_emb": (ROTARY,),
    # _skipped: whether a hook sits on a site the kernel skips (torch's, on TransformerLens's HookPoint)
    "_forward_hooks": (HookPoint,),
    "_backward_hooks": (HookPoint,),
    # _how and _fused: Hugging Face's SDPA attention, for the layers the 'hf' way runs
    "_supports_sdpa": (LlamaPreTrainedModel,),
    "_attn_implementation": (PretrainedConfig,),
}
"""Private name -> the installed classes kernels.py expects it on (an inherited one counts)."""


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def touched_private_names(source: str) -> set[str]:
    """Private attribute names in `source`: `x._name` (read, set or deleted) and the string
    `"_name"` passed to getattr, hasattr, setattr or delattr."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            names.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            names.add(node.args[1].value)
    return names


def missing() -> list[str]:
    """'Class.name' for each name of PRIVATE_NAMES its class lacks in the installed libraries.

    torch sets _forward_hooks and _backward_hooks in Module.__init__, so those are looked up on an
    instance (a HookPoint is one with no arguments); the others are class attributes or properties.
    """
    out = []
    for name, owners in PRIVATE_NAMES.items():
        for owner in owners:
            probe = owner() if issubclass(owner, nn.Module) and name in ("_forward_hooks", "_backward_hooks") else owner
            if not hasattr(probe, name):
                out.append(f"{owner.__name__}.{name}")
    return out


def test_the_list_names_every_private_name_kernels_touches():
    """A private name added to kernels.py must be listed here (and one it dropped, removed)."""
    touched = touched_private_names(Path(lib.measure.kernels.__file__).read_text())
    assert touched - set(PRIVATE_NAMES) == set(), "kernels.py touches private names PRIVATE_NAMES does not list"
    assert set(PRIVATE_NAMES) - touched == set(), "PRIVATE_NAMES lists names kernels.py no longer touches"


def test_every_private_name_kernels_touches_is_in_the_installed_libraries():
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("transformer-lens", "transformers", "torch"))
    assert missing() == [], (
        f"with {versions}, lib/measure/kernels.py relies on names that are gone: the fused kernel would "
        "fall back to the bridge's own attention; adapt kernels.py to the new names"
    )


def test_a_name_removed_by_an_upgrade_is_named(monkeypatch: pytest.MonkeyPatch):
    """What an upgrade that drops a private method looks like to the check above."""
    monkeypatch.delattr(ROTARY, "_apply_rotary_pos_emb")
    assert missing() == ["JointQKVPositionEmbeddingsAttentionBridge._apply_rotary_pos_emb"]


def test_the_scan_finds_reads_patches_and_getattr_strings():
    source = 'a._read\nb._set = 1\ndel c._gone\ngetattr(d, "_by_name", None)\nx.__dict__\nf(e, "_not_an_attribute")'
    assert touched_private_names(source) == {"_read", "_set", "_gone", "_by_name"}
