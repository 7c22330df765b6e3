"""Load the model through TransformerLens 4 (`TransformerBridge.boot_transformers`).

The write-up used GPT-2 small through the legacy HookedTransformer, which folded
LayerNorm and centred the writing weights at load time; `numerics=compat` reproduces
that with `enable_compatibility_mode()`, `numerics=raw` keeps Hugging Face numerics.
"""

from __future__ import annotations

import hashlib
import os
import socket
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch

from lib.errors import ConfigError, ResourceUnavailable

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
EMBEDDED = {"tiny-wikitext": ROOT / "models" / "tiny-wikitext"}
"""Models shipped in the project, loadable by name (see models/*/README.md)."""
HUB_ALIASES = {"gpt2": "openai-community/gpt2"}
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")
FINGERPRINT_FILES = ("config.json", "tokenizer.json", "vocab.json", "merges.txt", *WEIGHT_FILES)


def _is_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or Path(name).expanduser().exists()


def _fingerprint(directory: Path) -> str:
    """sha256 over the files that define the model's numbers, in a fixed order."""
    digest = hashlib.sha256()
    for pattern in FINGERPRINT_FILES:
        for path in sorted(directory.glob(pattern)):
            digest.update(path.name.encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]


def check_model_dir(directory: Path, shown: str) -> None:
    """A local model directory must hold a config, weights and a tokenizer."""
    if not directory.is_dir():
        raise ConfigError(
            f"--model {shown!r}: no such directory; expected a Hub name (e.g. gpt2), an embedded "
            f"model ({', '.join(EMBEDDED)}) or a local directory in Hugging Face format"
        )
    missing = []
    if not (directory / "config.json").is_file():
        missing.append("config.json")
    if not any(any(directory.glob(p)) for p in WEIGHT_FILES):
        missing.append("weights (*.safetensors or pytorch_model.bin)")
    if not ((directory / "tokenizer.json").is_file() or (directory / "vocab.json").is_file()):
        missing.append("a tokenizer (tokenizer.json, or vocab.json + merges.txt)")
    if missing:
        raise ConfigError(
            f"--model {shown!r} is not a model directory: it lacks {', '.join(missing)}; expected a "
            "directory saved with save_pretrained (model and tokenizer)"
        )


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connect; False at once under HF_HUB_OFFLINE."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def resolve_model(name: str) -> tuple[str, str]:
    """(location, revision) for --model, without loading it.

    location is an absolute directory for embedded and local models, the Hub name for Hub
    models. revision fingerprints the weights: sha256 of local files, 'hub:<commit>' of a
    Hub model in the Hugging Face cache, 'hub:latest' of one still to download, or
    'unavailable: <reason>' when the model cannot be had here.
    """
    if name in EMBEDDED:
        directory = EMBEDDED[name]
        check_model_dir(directory, name)
        return str(directory), _fingerprint(directory)
    if _is_path(name):
        directory = Path(name).expanduser().resolve()
        check_model_dir(directory, name)
        return str(directory), _fingerprint(directory)
    repo = HUB_ALIASES.get(name, name)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(repo, local_files_only=True))
    except LocalEntryNotFoundError:
        if not hub_reachable():
            return repo, (
                f"unavailable: model {repo!r} is not in the Hugging Face cache and the Hub cannot be "
                "reached from here. Run once with network access to download it, or pass a local "
                "model with --model <dir in Hugging Face format> (the embedded one: --model tiny-wikitext)"
            )
        # Downloaded when first loaded; until then the entry is keyed by the name alone.
        return repo, "hub:latest"
    return repo, "hub:" + snapshot.name


def load_model(config: RunConfig) -> TransformerBridge:
    """Boot the bridge on the config's device, in eval mode, with the config's numerics."""
    import transformers
    from transformer_lens.model_bridge import TransformerBridge

    if config.unavailable:
        raise ResourceUnavailable(config.unavailable)
    transformers.logging.disable_progress_bar()
    location = config.model
    if config.model_revision.startswith("hub:") and config.model_revision != "hub:latest":
        from huggingface_hub import snapshot_download

        # the cached snapshot the config was resolved to: no network, no newer revision
        location = snapshot_download(config.model, revision=config.model_revision[4:], local_files_only=True)
    bridge = TransformerBridge.boot_transformers(location, device=config.device, dtype=getattr(torch, config.dtype))
    bridge.eval()
    if config.numerics == "compat":
        bridge.enable_compatibility_mode(disable_warnings=True)
    return bridge


def _sdpa_reconstruct(self: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> tuple:
    """The bridge's attention with one fused causal SDPA kernel instead of scores + mask + softmax.

    Same maths as `_reconstruct_attention` for inputs without padding or KV cache; it skips
    hook_attn_scores / hook_pattern, so it is installed only where nothing hooks them.
    """
    n_heads = self.config.n_heads
    q, k, v, batch, seq, d_head = self._reshape_qkv_to_heads(q, k, v, n_heads, n_heads)  # (B, H, T, d_head)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    out = self._reshape_attn_output(out, batch, seq, n_heads, d_head)  # (B, T, H * d_head)
    return (self._apply_output_projection(out), None)


def _sdpa_ok(attn: Any) -> bool:
    cfg = attn.config
    plain = all(
        not getattr(cfg, flag, False)
        for flag in ("scale_attn_by_inverse_layer_idx", "use_attn_result", "use_split_qkv_input", "use_attn_in")
    )
    heads = getattr(cfg, "n_key_value_heads", None) in (None, cfg.n_heads)
    unhooked = not any(getattr(attn, h)._forward_hooks for h in ("hook_attn_scores", "hook_pattern") if hasattr(attn, h))
    return (
        hasattr(attn, "_reconstruct_attention") and hasattr(attn, "_reshape_qkv_to_heads")
        and plain and heads and unhooked and not getattr(attn, "_reorder_and_upcast_attn", False)
    )


@contextmanager
def attention_kernel(bridge: TransformerBridge, kernel: str) -> Iterator[None]:
    """Run the bridge's attention as `kernel` ('sdpa' or 'eager', the bridge's own) inside the block.

    The bridge reconstructs attention eagerly (scores, mask, softmax) so that patterns can be
    hooked; Δφ needs no pattern, and fused SDPA halves the cost of a GPT-2 forward on CPU.
    Inputs must have no padding (the suite's chunks never do). Layers whose attention does
    not fit the fused kernel keep the eager path.
    """
    patched = []
    if kernel == "sdpa":
        for block in bridge.blocks:
            attn = getattr(block, "attn", None)
            if attn is not None and _sdpa_ok(attn):
                attn._reconstruct_attention = types.MethodType(_sdpa_reconstruct, attn)
                patched.append(attn)
    try:
        yield
    finally:
        for attn in patched:
            del attn._reconstruct_attention
