"""Load the model through TransformerLens 4 (`TransformerBridge.boot_transformers`).

The write-up used GPT-2 small through the legacy HookedTransformer, which folded
LayerNorm and centred the writing weights at load time; `numerics=compat` reproduces
that with `enable_compatibility_mode()`, `numerics=raw` keeps Hugging Face numerics.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

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

    location is an absolute directory for embedded and local models and for Hub models
    already in the Hugging Face cache; the Hub name otherwise. revision fingerprints the
    weights, or reads 'unavailable: <reason>' when the model cannot be had here.
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
    return str(snapshot), "hub:" + snapshot.name


def load_model(config: RunConfig) -> TransformerBridge:
    """Boot the bridge on the config's device, in eval mode, with the config's numerics."""
    import torch
    import transformers
    from transformer_lens.model_bridge import TransformerBridge

    if config.unavailable:
        raise ResourceUnavailable(config.unavailable)
    transformers.logging.disable_progress_bar()
    bridge = TransformerBridge.boot_transformers(
        config.model, device=config.device, dtype=getattr(torch, config.dtype)
    )
    bridge.eval()
    if config.numerics == "compat":
        bridge.enable_compatibility_mode(disable_warnings=True)
    return bridge
