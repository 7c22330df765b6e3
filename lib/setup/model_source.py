"""Where a run's model comes from and what identifies it, without loading it.

An embedded model (by name), a local directory in Hugging Face format or a Hub name, each
resolved to a location and a revision that fingerprints its weights: the run config
(lib/setup/config.py) keys the cache by it, lib/measure/models.py loads from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from lib.errors import ConfigError
from lib.setup.options import ROOT, cache_dir
from lib.setup.outputs import write_atomic

EMBEDDED = {"tiny-wikitext": ROOT / "models" / "tiny-wikitext"}
"""Models shipped in the project, loadable by name (see models/*/README.md)."""
HUB_ALIASES = {"gpt2": "openai-community/gpt2"}
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")
FINGERPRINTS = "fingerprints.json"
"""The local models' fingerprints, by path, size and modification time, in the default cache
directory ($DPHI_CACHE_DIR or the user cache dir; docs/cache.md)."""
FINGERPRINT_FILES = ("config.json", "tokenizer.json", "vocab.json", "merges.txt", *WEIGHT_FILES)


def _is_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or Path(name).expanduser().exists()


def _fingerprint_files(directory: Path) -> list[Path]:
    return [path for pattern in FINGERPRINT_FILES for path in sorted(directory.glob(pattern))]


def _fingerprint(directory: Path) -> str:
    """sha256 over the files that define the model's numbers, in a fixed order.

    Remembered in FINGERPRINTS by the directory's path and each file's size, modification time
    and inode: hashing GPT-2 small's 500 MB of weights takes about a second, on every run.
    """
    files = _fingerprint_files(directory)
    stamp = [[p.name, st.st_size, st.st_mtime_ns, st.st_ino] for p in files for st in (p.stat(),)]
    known = _read_fingerprints()
    entry = known.get(str(directory))
    if isinstance(entry, dict) and entry.get("files") == stamp:
        return str(entry["fingerprint"])
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    fingerprint = "sha256:" + digest.hexdigest()[:16]
    _write_fingerprints({**known, str(directory): {"files": stamp, "fingerprint": fingerprint}})
    return fingerprint


def _fingerprints_path() -> Path:
    return Path(cache_dir(None)) / FINGERPRINTS


def _read_fingerprints() -> dict[str, object]:
    try:
        known = json.loads(_fingerprints_path().read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _write_fingerprints(known: dict[str, object]) -> None:
    """Replace the file at once (a reader never sees half of it); a cache that cannot be written is no error."""
    with contextlib.suppress(OSError):
        write_atomic(_fingerprints_path(), json.dumps(known))


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
    check_architecture(directory / "config.json", shown)
    check_weights(directory, shown)


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


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be read (truncated, bad header), or None; reads the header only.

    Layout: 8 bytes little-endian header length n, n bytes of JSON, then the tensor data,
    which must end where the header's last data offset says.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than the 8-byte header length"
        n = int.from_bytes(head, "little")
        if n > size - 8:
            return f"its header claims {n} bytes but the file has {size}"
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            return "its header is not valid JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    try:
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (KeyError, TypeError, ValueError, IndexError):
        return "its header lacks data offsets"
    if 8 + n + end != size:
        return f"its tensors need {8 + n + end} bytes but the file has {size} (truncated or padded)"
    return None


def _bin_problem(path: Path) -> str | None:
    """Why a pytorch_model*.bin cannot be read, or None: a zip archive (torch.save's format since
    torch 1.6) must end in its central directory; older pickle files are not checked."""
    with path.open("rb") as f:
        zipped = f.read(2) == b"PK"
    if zipped and not zipfile.is_zipfile(path):
        return "a zip archive without its central directory: truncated"
    return None


def check_weights(directory: Path, shown: str) -> None:
    """Every weights file of a model directory must be whole (header and size agree; zip complete)."""
    for path in (p for pattern in WEIGHT_FILES for p in sorted(directory.glob(pattern))):
        problem = _safetensors_problem(path) if path.suffix == ".safetensors" else _bin_problem(path)
        if problem:
            raise ConfigError(
                f"--model {shown!r}: weights file {path.name} is corrupt ({problem}); expected the "
                "files save_pretrained writes: download or save the model again"
            )


def check_architecture(config_json: Path, shown: str) -> str:
    """The model type of a Hugging Face config, which must be a decoder-only causal language model.

    Δφ is the write of each block of one causal stack; encoder-only (BERT) and
    encoder-decoder (T5) models have no such stack and no next-token perplexity.
    """
    try:
        hf = json.loads(config_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"--model {shown!r}: config.json cannot be read ({e}); expected a Hugging Face config"
        ) from None
    model_type = str(hf.get("model_type", "?"))
    architectures = [str(a) for a in hf.get("architectures") or []]
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
    if not architectures:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        causal = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if hf.get("is_encoder_decoder") or not causal:
        kind = "an encoder-decoder" if hf.get("is_encoder_decoder") else "not a decoder-only causal language"
        raise ConfigError(
            f"--model {shown!r}: model type {model_type!r} ({', '.join(architectures) or 'no architectures'}) is "
            f"{kind} model; expected a decoder-only causal language model (GPT-2, GPT-NeoX, Llama, ...)"
        )
    return model_type


@dataclass(frozen=True)
class Shape:
    """What the size checks need of a model, read from its config.json before it is loaded."""

    n_layers: int
    d_model: int
    d_vocab: int
    n_ctx: int
    weight_bytes: int
    """Bytes of the weight files as stored (safetensors or .bin); 0 where unknown."""
    stored_itemsize: int
    """Bytes per weight as stored (config.json's dtype, float32 where it says none)."""

    def weights_in(self, itemsize: int) -> int:
        """Bytes of the weights loaded at `itemsize` bytes each (0 where the files' size is unknown)."""
        return self.weight_bytes * itemsize // self.stored_itemsize


_SHAPE_KEYS = {
    "n_layers": ("n_layer", "num_hidden_layers", "n_layers", "num_layers"),
    "d_model": ("n_embd", "hidden_size", "d_model"),
    "d_vocab": ("vocab_size",),
    "n_ctx": ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"),
}
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def model_directory(location: str, revision: str) -> Path | None:
    """The local directory holding a resolved model's files (a Hub model: its cached snapshot), or None."""
    if revision.startswith("sha256:"):
        return Path(location)
    if revision.startswith("hub:") and revision != "hub:latest":
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(location, revision=revision[4:], local_files_only=True))
    return None


def model_shape(location: str, revision: str) -> Shape | None:
    """The model's Shape from its config.json, without loading it; None where it cannot be read."""
    directory = model_directory(location, revision)
    if directory is None or not (directory / "config.json").is_file():
        return None
    hf = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    hf = {**hf.get("text_config", {}), **hf}  # multimodal configs keep the language model's sizes there
    values = {
        name: next((hf[k] for k in keys if isinstance(hf.get(k), int)), None) for name, keys in _SHAPE_KEYS.items()
    }
    if any(v is None for v in values.values()):
        return None
    weights = sum(p.stat().st_size for pattern in WEIGHT_FILES for p in directory.glob(pattern))
    stored = _ITEMSIZE.get(str(hf.get("dtype") or hf.get("torch_dtype") or "float32"), 4)
    return Shape(**values, weight_bytes=weights, stored_itemsize=stored)  # type: ignore[arg-type]
