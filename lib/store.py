"""On-disk cache keyed by the run config: safetensors + the config as JSON beside it.

An entry is `<root>/<name>-<key>.safetensors`; its header carries the config and a
sha256 of the tensor bytes, so an entry answers only for the config that wrote it and a
corrupt one is detected. Writes go to a temp file that is renamed into place (a reader
never sees half an entry), under a file lock (two pytest-xdist workers compute it once).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from lib.options import CACHE_ENV


class CacheWarning(UserWarning):
    """A cache entry was unusable and is being recomputed."""


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_cache_dir(root: str | Path) -> Path:
    """The cache directory, created if needed; ConfigError when it cannot be created or written."""
    from lib.errors import ConfigError

    path = Path(root).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"--cache-dir {str(root)!r} cannot be created ({e.strerror or e}); expected a directory that "
            f"exists or can be created, and is writable (or set ${CACHE_ENV})"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(
            f"--cache-dir {str(root)!r} is not writable; expected a directory this user can write to "
            f"(or set ${CACHE_ENV})"
        )
    return path


class Store:
    """A directory of cache entries; `get_or_compute` is the one way in."""

    def __init__(self, root: str | Path) -> None:
        self.root = check_cache_dir(root)

    def path(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key}.safetensors"

    def load(self, name: str, key: str, meta: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """The entry's tensors, or None when absent, written for another config, or corrupt."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = self.path(name, key)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
            if json.loads(header.get("meta", "null")) != meta:
                warnings.warn(
                    f"cache entry {path} was written for another config; recomputing", CacheWarning, stacklevel=2
                )
                return None
            tensors = load_file(str(path))
            if _digest(tensors) != header.get("sha256"):
                raise ValueError("checksum mismatch")
        except Exception as e:  # noqa: BLE001 - any unreadable entry is recomputed
            warnings.warn(f"cache entry {path} is corrupt ({e}); recomputing", CacheWarning, stacklevel=2)
            return None
        return tensors

    def save(self, name: str, key: str, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
        from safetensors.torch import save_file

        path = self.path(name, key)
        tensors = {k: v.contiguous().cpu() for k, v in tensors.items()}
        header = {"meta": json.dumps(meta, sort_keys=True), "sha256": _digest(tensors)}
        _atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))
        _atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(meta, indent=2, sort_keys=True)))
        return path

    def get_or_compute(
        self, name: str, key: str, meta: dict[str, Any], compute: Callable[[], dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """The cached tensors for (name, key), computing and saving them once if needed.

        The lock makes a second pytest-xdist worker wait and then read the first one's entry.
        """
        with FileLock(str(self.path(name, key)) + ".lock"):
            cached = self.load(name, key, meta)
            if cached is not None:
                return cached
            tensors = compute()
            self.save(name, key, meta, tensors)
            return tensors

    def get_or_compute_json(
        self, name: str, key: str, meta: dict[str, Any], compute: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """As get_or_compute, for a JSON document (the tables)."""
        path = self.root / f"{name}-{key}.json"
        with FileLock(str(path) + ".lock"):
            if path.exists():
                try:
                    entry = json.loads(path.read_text())
                    if entry["meta"] == meta:
                        return entry["data"]
                    reason = "was written for another config"
                except (ValueError, KeyError, TypeError) as e:
                    reason = f"is corrupt ({e})"
                warnings.warn(f"cache entry {path} {reason}; recomputing", CacheWarning, stacklevel=2)
            data = compute()
            _atomic_write(path, lambda tmp: tmp.write_text(json.dumps({"meta": meta, "data": data})))
            return data
