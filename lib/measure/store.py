"""On-disk cache keyed by the run config: safetensors + the config as JSON beside it.

An entry is `<root>/<name>-<key>.safetensors`; its header carries the config, the library
versions that computed it and a sha256 of the tensor bytes, so an entry answers only for
the config and the libraries that wrote it and a corrupt one is detected. Writes go to a
temp file that is renamed into place (a reader never sees half an entry), under a file
lock (two pytest-xdist workers compute it once). An entry that cannot be written (full
disk, quota, read-only directory) is a one-line warning: the run goes on without it.
See docs/cache.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from lib.setup.options import CACHE_ENV
from lib.setup.outputs import write_atomic
from lib.setup.provenance import versions


class CacheWarning(UserWarning):
    """A cache entry was unusable and is being recomputed, or could not be written."""


library_versions = cache(versions)
"""{'python': '3.11.9', 'torch': '2.5.1', ...}: the versions an entry computed now is stamped with
(lib/setup/provenance.py's, once per process)."""


def _version_change(stored: object) -> str | None:
    """None when `stored` (an entry's versions) equals this process's; else what differs, e.g. 'torch 2.4.0 -> 2.5.1'."""
    now = library_versions()
    if stored == now:
        return None
    if not isinstance(stored, dict):
        return "library versions not recorded"
    changed = [f"{k} {stored.get(k, '?')} -> {v}" for k, v in now.items() if stored.get(k) != v]
    return ", ".join(changed) or "library versions differ"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


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

    def __init__(self, root: str | Path, refresh: bool = False) -> None:
        self.root = check_cache_dir(root)
        self.refresh = refresh
        """--refresh: recompute each entry once in this process, whatever the cache holds."""
        self._refreshed: set[Path] = set()

    def _stale(self, path: Path) -> bool:
        """Whether --refresh asks to recompute this entry (once: later reads take what this process wrote)."""
        return self.refresh and path not in self._refreshed

    def _warn(self, message: str) -> None:
        warnings.warn(message, CacheWarning, stacklevel=3)

    def _write_failed(self, path: Path, size: int, e: BaseException) -> None:
        reason = getattr(e, "strerror", None) or _first_line(e)
        self._warn(
            f"cache entry {path.name} not written to {self.root}: {reason} ({_size(size)} needed); "
            "the run goes on without it"
        )

    @contextmanager
    def _lock(self, path: Path) -> Iterator[None]:
        """The entry's file lock; none when the lock file itself cannot be made (the write will fail and say so)."""
        lock = FileLock(str(path) + ".lock")
        try:
            lock.acquire()
        except OSError:
            yield
            return
        try:
            yield
        finally:
            lock.release()

    def path(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key}.safetensors"

    def load(self, name: str, key: str, meta: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """The entry's tensors, or None when absent, written for another config, or corrupt."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = self.path(name, key)
        if not path.exists() or self._stale(path):
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
            if json.loads(header.get("meta", "null")) != meta:
                self._warn(f"cache entry {path} was written for another config; recomputing")
                return None
            change = _version_change(json.loads(header.get("versions", "null")))
            if change:
                self._warn(f"cache entry {path} was computed under other library versions ({change}); recomputing")
                return None
            tensors = load_file(str(path))
            if _digest(tensors) != header.get("sha256"):
                raise ValueError("checksum mismatch")
        except Exception as e:  # noqa: BLE001 - any unreadable entry is recomputed
            self._warn(f"cache entry {path} is corrupt ({_first_line(e)}); recomputing")
            return None
        return tensors

    def save(self, name: str, key: str, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path | None:
        """Write the entry and its JSON description; None (and a warning) when the directory refuses it."""
        from safetensors import SafetensorError
        from safetensors.torch import save_file

        path = self.path(name, key)
        self._refreshed.add(path)
        tensors = {k: v.contiguous().cpu() for k, v in tensors.items()}
        header = {
            "meta": json.dumps(meta, sort_keys=True),
            "versions": json.dumps(library_versions(), sort_keys=True),
            "sha256": _digest(tensors),
        }
        described = json.dumps({**meta, "versions": library_versions()}, indent=2, sort_keys=True)
        try:
            write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))
            write_atomic(path.with_suffix(".json"), described)
        except (OSError, SafetensorError) as e:
            path.unlink(missing_ok=True)  # an entry without its description is partial too
            self._write_failed(path, sum(t.nbytes for t in tensors.values()) + len(described), e)
            return None
        return path

    def get_or_compute(
        self, name: str, key: str, meta: dict[str, Any], compute: Callable[[], dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """The cached tensors for (name, key), computing and saving them once if needed.

        The lock makes a second pytest-xdist worker wait and then read the first one's entry.
        """
        with self._lock(self.path(name, key)):
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
        with self._lock(path):
            cached = self.load_json(name, key, meta)
            if cached is not None:
                return cached
            data = compute()
            self._refreshed.add(path)
            text = json.dumps({"meta": meta, "versions": library_versions(), "data": data})
            try:
                write_atomic(path, text)
            except OSError as e:
                self._write_failed(path, len(text.encode()), e)
            return data

    def load_json(self, name: str, key: str, meta: dict[str, Any], quiet: bool = False) -> dict[str, Any] | None:
        """A JSON entry's data, or None when absent, refreshed, written for another config or
        other library versions, or corrupt (with a warning, unless `quiet`: a peek that recomputes nothing)."""
        path = self.root / f"{name}-{key}.json"
        if not path.exists() or self._stale(path):
            return None
        try:
            entry = json.loads(path.read_text())
            if entry["meta"] != meta:
                reason = "was written for another config"
            elif change := _version_change(entry.get("versions")):
                reason = f"was computed under other library versions ({change})"
            else:
                return entry["data"]
        except (ValueError, KeyError, TypeError) as e:
            reason = f"is corrupt ({_first_line(e)})"
        if not quiet:
            self._warn(f"cache entry {path} {reason}; recomputing")
        return None
