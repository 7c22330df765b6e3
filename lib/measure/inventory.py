"""What the on-disk cache holds (`python -m lib cache list`) and what can go (`python -m lib cache prune`).

An entry (lib/measure/store.py) is `<stage>-<key>.safetensors` with its JSON description beside it, or a
JSON document `<stage>-<key>.json` ({"meta", "versions", "data"}), each with its `.lock`. Entry names are
hashes and their descriptions give content hashes (`model_revision`, `dataset_revision`), so the listing
names the model and the text from what the cache itself knows: the local models' fingerprints
(fingerprints.json: path -> hash) and the configs the tables entries carry (model and text by name).

`prune` removes entries older than a number of days, or the ones no current process reads (`unread`):
computed under other library versions (the store recomputes those), in an older format than the current
one for their stage (`formats`, from the code that writes them), or unreadable; and the lock and temporary
files no entry has. `dry_run` says what would go and removes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.measure.store import library_versions

NAMED = ("stage", "version", "model_revision", "dataset_revision", "n_tokens", "device", "tables", "versions")
"""Description fields the listing shows in columns of their own (or not at all); the rest are its options."""


@dataclass
class Entry:
    """One cache entry: its files, what it was computed for, and whether a current process reads it."""

    stage: str
    key: str
    files: list[Path]
    meta: dict[str, Any] = field(default_factory=dict)
    versions: Any = None
    problem: str = ""
    """Why no current process reads it ("" where one does)."""

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files if p.exists())

    @property
    def age_days(self) -> float:
        newest = max((p.stat().st_mtime for p in self.files if p.exists()), default=time.time())
        return (time.time() - newest) / 86400

    def options(self) -> str:
        """The description's other fields, as `k=v` (dtype, numerics, positions, pca, attention, ks, ...)."""
        rest = {k: v for k, v in self.meta.items() if k not in NAMED}
        return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in sorted(rest.items()))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def entries(root: str | Path) -> list[Entry]:
    """The cache's entries, oldest first; an unreadable one with its `problem`."""
    root = Path(root)
    found: list[Entry] = []
    for path in sorted(root.glob("*-*.safetensors")):
        stage, _, key = path.stem.rpartition("-")
        description = path.with_suffix(".json")
        data = _read_json(description)
        files = [path, *([description] if description.exists() else [])]
        lock = Path(str(path) + ".lock")
        files += [lock] if lock.exists() else []
        if not isinstance(data, dict):
            found.append(Entry(stage, key, files, problem="its description is missing or not JSON"))
            continue
        found.append(Entry(stage, key, files, {k: v for k, v in data.items() if k != "versions"}, data.get("versions")))
    described = {p.with_suffix(".json") for p in root.glob("*-*.safetensors")}
    for path in sorted(root.glob("*-*.json")):
        if path in described:
            continue
        stage, _, key = path.stem.rpartition("-")
        lock = Path(str(path) + ".lock")
        files = [path, *([lock] if lock.exists() else [])]
        data = _read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("meta"), dict):
            found.append(Entry(stage, key, files, problem="not a cache entry's JSON (corrupt)"))
            continue
        found.append(Entry(stage, key, files, data["meta"], data.get("versions")))
    return sorted(found, key=lambda e: -e.age_days)


def names(root: str | Path, found: list[Entry]) -> dict[str, str]:
    """content hash -> a name: local models by their path (fingerprints.json), models and texts by the
    names the tables entries' configs give."""
    out: dict[str, str] = {}
    fingerprints = _read_json(Path(root) / "fingerprints.json")
    for path, memo in (fingerprints or {}).items() if isinstance(fingerprints, dict) else []:
        if isinstance(memo, dict) and memo.get("fingerprint"):
            out.setdefault(memo["fingerprint"], path)
    for e in found:
        if e.stage != "tables" or not e.files[0].suffix == ".json":
            continue
        config = ((_read_json(e.files[0]) or {}).get("data") or {}).get("config") or {}
        for name, revision in (("model", "model_revision"), ("dataset", "dataset_revision")):
            if config.get(revision) and config.get(name):
                out.setdefault(config[revision], str(config[name]))
    return out


def unread(e: Entry, formats: Mapping[str, int]) -> str:
    """Why no current process reads the entry ("" where one does): formats: stage -> the current format."""
    if e.problem:
        return e.problem
    if e.versions != library_versions():
        return "computed under other library versions"
    if e.stage in formats and e.meta.get("version") != formats[e.stage]:
        return f"format {e.meta.get('version')}, the current one is {formats[e.stage]}"
    if "tables_version" in e.meta and "tables" in formats and e.meta["tables_version"] != formats["tables"]:
        return f"made from tables of format {e.meta['tables_version']}, the current one is {formats['tables']}"
    return ""


def _age(days: float) -> str:
    return f"{days * 24:.0f} h" if days < 2 else f"{days:.0f} d"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def listing(root: str | Path, formats: Mapping[str, int] | None = None) -> list[str]:
    """`cache list`: one line per entry (stage, model, text, positions, device, size, age, options; why no
    current process reads it), then the total."""
    found = entries(root)
    if not found:
        return [f"{root}: no cache entries"]
    named = names(root, found)
    header = ["stage", "model", "text", "positions", "device", "size", "age", "options"]
    rows = []
    for e in found:
        model = named.get(e.meta.get("model_revision", ""), e.meta.get("model_revision", "?"))
        text = named.get(e.meta.get("dataset_revision", ""), e.meta.get("dataset_revision", "?"))
        why = unread(e, formats or {})
        options = e.options() + (f" [not read: {why}]" if why else "")
        rows.append([e.stage, model, text, str(e.meta.get("n_tokens", "?")), str(e.meta.get("device", "?"))])
        rows[-1] += [_size(e.size), _age(e.age_days), options]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]  # noqa: E731
    total = sum(e.size for e in found)
    return [line(header).rstrip(), *map(line, rows), f"{len(found)} entries, {_size(total)} in {root}"]


LEFTOVER_AGE = 1 / 24
"""Days a lock or temporary file without its entry must be old to be a leftover: a younger one may be a run's
that is computing the entry now."""


def leftovers(root: str | Path) -> list[Path]:
    """Lock and temporary files that belong to no entry (a run stopped mid-write leaves them), older than
    LEFTOVER_AGE."""
    root = Path(root)
    locks = [p for p in root.glob("*.lock") if not Path(str(p).removesuffix(".lock")).exists()]
    old = time.time() - LEFTOVER_AGE * 86400
    return sorted(p for p in [*locks, *root.glob("*.tmp")] if p.exists() and p.stat().st_mtime < old)


def prune(
    root: str | Path,
    older_than: float | None = None,
    not_read: bool = False,
    formats: Mapping[str, int] | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Remove the entries older than `older_than` days and/or (`not_read`) those no current process reads
    (unread), and the leftover lock and temporary files; dry_run: only say so. Returns one line per entry
    and the total."""
    if older_than is None and not not_read:
        raise ValueError("cache prune: say what to remove: --older-than DAYS and/or --unread")
    verb = "would remove" if dry_run else "removed"
    lines, freed = [], 0
    for e in entries(root):
        why = []
        if older_than is not None and e.age_days > older_than:
            why.append(f"{_age(e.age_days)} old")
        if not_read and (reason := unread(e, formats or {})):
            why.append(reason)
        if not why:
            continue
        freed += e.size
        lines.append(f"{verb} {e.stage}-{e.key} ({_size(e.size)}): {'; '.join(why)}")
        if not dry_run:
            for p in e.files:
                p.unlink(missing_ok=True)
    for p in leftovers(root):
        freed += p.stat().st_size if p.exists() else 0
        lines.append(f"{verb} {p.name}: belongs to no entry")
        if not dry_run:
            p.unlink(missing_ok=True)
    return [*lines, f"{verb} {len(lines)} file group(s), {_size(freed)}" + (" (dry run)" if dry_run else "")]
