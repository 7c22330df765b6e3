"""Load the model through TransformerLens 4 (`TransformerBridge.boot_transformers`).

The write-up used GPT-2 small through the legacy HookedTransformer, which folded
LayerNorm and centred the writing weights at load time; `numerics=compat` reproduces
that with `enable_compatibility_mode()`, `numerics=raw` keeps Hugging Face numerics.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lib.errors import ConfigError, ResourceUnavailable
from lib.measure.kernels import attention_kernel as attention_kernel  # re-exported: capture and 7D use it
from lib.measure.kernels import decide
from lib.setup.model_source import check_architecture

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from lib.setup.config import RunConfig


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [""])[0]


def load_model(config: RunConfig) -> TransformerBridge:
    """Boot the bridge on the config's device, in eval mode, with the config's numerics.

    Then decides the attention kernel for `config.attention` (lib/measure/kernels.py: 'sdpa' is
    probed against the bridge's own attention on this model) and prints one line saying
    which kernel runs and why.
    """
    import transformers
    from safetensors import SafetensorError
    from transformer_lens.model_bridge import TransformerBridge

    if config.unavailable:
        raise ResourceUnavailable(config.unavailable)
    transformers.logging.disable_progress_bar()
    location = config.model
    if config.model_revision.startswith("hub:") and config.model_revision != "hub:latest":
        from huggingface_hub import snapshot_download

        # the cached snapshot the config was resolved to: no network, no newer revision
        location = snapshot_download(config.model, revision=config.model_revision[4:], local_files_only=True)
    model_type = "?"
    if Path(location).is_dir():
        model_type = check_architecture(Path(location) / "config.json", config.model)
    try:
        bridge = TransformerBridge.boot_transformers(location, device=config.device, dtype=getattr(torch, config.dtype))
    except (SafetensorError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "PytorchStreamReader" not in str(e):  # torch.load of a broken .bin
            raise
        raise ConfigError(
            f"--model {config.model!r}: a weights file cannot be read ({_first_line(e)}); expected the files "
            "save_pretrained writes: download or save the model again"
        ) from None
    except (ValueError, KeyError, NotImplementedError, AttributeError) as e:
        raise ConfigError(
            f"--model {config.model!r}: TransformerLens cannot load model type {model_type!r} "
            f"({type(e).__name__}: {_first_line(e)}); expected an architecture "
            "TransformerBridge supports (GPT-2, GPT-NeoX, Llama, Mistral, Qwen2, Gemma 2, Phi, OPT, GPT-J, "
            "GPT-Neo, Bloom, ...)"
        ) from None
    if not hasattr(bridge, "blocks"):
        raise ConfigError(
            f"--model {config.model!r}: model type {model_type!r} has no stack of transformer blocks the "
            "suite can hook; expected a decoder-only causal language model"
        )
    bridge.eval()
    if config.numerics == "compat":
        bridge.enable_compatibility_mode(disable_warnings=True)
    decide(bridge, config.attention)
    return bridge
