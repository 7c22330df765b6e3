"""`python -m lib cache list` and `prune` (lib/measure/inventory.py): what the cache holds, named by model
and text, and what can go; tables read from an entry another checkout wrote name this run's model path."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch

from lib.cli import main
from lib.measure.store import Store, library_versions
from lib.tables.run import CAPTURE_VERSION, TABLES_VERSION

ROOT = Path(__file__).resolve().parent.parent
META = {"model_revision": "sha256:aaaa", "dataset_revision": "sha256:bbbb", "n_tokens": 60, "device": "cpu"}


def _cache(root: Path) -> Store:
    """A capture entry (tensors) and a tables entry (JSON) whose config names the model and the text."""
    store = Store(root)
    store.save(
        "capture",
        "k1",
        {"stage": "capture", "version": CAPTURE_VERSION, **META, "dtype": "float32"},
        {"x": torch.zeros(64)},
    )
    config = {"model": "models/tiny", "dataset": "notes.txt", **META}
    store.get_or_compute_json(
        "tables", "k1", {"stage": "tables", "version": TABLES_VERSION, **META}, lambda: {"config": config}
    )
    return store


def test_cache_list_names_model_text_positions_device_options_size_and_age(tmp_path, capsys):
    _cache(tmp_path)
    assert main(["cache", "list", "--cache-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["stage", "model", "text", "positions", "device", "size", "age", "options"]
    capture = next(line for line in lines if line.startswith("capture"))
    assert capture.split()[1:5] == ["models/tiny", "notes.txt", "60", "cpu"]  # names, not hashes
    assert "KiB" in capture and " 0 h " in capture and "dtype=float32" in capture
    assert lines[-1].startswith("2 entries, ")


def test_cache_prune_by_age_with_a_dry_run(tmp_path, capsys):
    _cache(tmp_path)
    old = time.time() - 40 * 86400
    for path in tmp_path.glob("capture-*"):
        os.utime(path, (old, old))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["cache", "prune", "--older-than", "30", "--dry-run", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "would remove capture-k1" in out and "tables-k1" not in out and "(dry run)" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing removed
    assert main(["cache", "prune", "--older-than", "30", "--cache-dir", str(tmp_path)]) == 0
    assert not list(tmp_path.glob("capture-*")) and list(tmp_path.glob("tables-k1.json"))
    assert main(["cache", "prune", "--cache-dir", str(tmp_path)]) == 2  # say what to remove
    assert "--older-than DAYS and/or --unread" in capsys.readouterr().err


def test_cache_prune_unread_removes_what_no_current_process_reads(tmp_path, capsys):
    _cache(tmp_path)
    path = next(tmp_path.glob("tables-*.json"))
    entry = json.loads(path.read_text())
    stale = tmp_path / "tables-k2.json"
    stale.write_text(json.dumps({**entry, "versions": {**library_versions(), "torch": "0.1"}}))
    old_format = tmp_path / "tables-k3.json"
    old_format.write_text(json.dumps({**entry, "meta": {**entry["meta"], "version": 1}}))
    (tmp_path / "junk-k4.json").write_text("{not json")
    assert main(["cache", "list", "--cache-dir", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert "[not read: computed under other library versions]" in listed
    assert f"[not read: format 1, the current one is {TABLES_VERSION}]" in listed
    assert main(["cache", "prune", "--unread", "--cache-dir", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.glob("*.json")} == {"tables-k1.json", "capture-k1.json"}


def test_tables_from_an_entry_another_checkout_wrote_name_this_runs_model_path(tmp_path):
    """A shared cache: the entry is keyed by the model's content hash, so a second checkout reads the
    first one's; its tables' config names the path this run was given."""
    from lib.session import Session

    cache = tmp_path / "cache"
    values = {"model": "tiny-wikitext", "device": "cpu", "cache_dir": str(cache)}
    first = Session.from_options(values)
    label = next(iter(first.runs))
    here = first.measure(label).tables["config"]["model"]
    for path in cache.glob("tables-*.json"):  # as if another checkout had written it
        entry = json.loads(path.read_text())
        entry["data"]["config"]["model"] = "/elsewhere/checkout/models/tiny-wikitext"
        path.write_text(json.dumps(entry))
    again = Session.from_options(values)
    assert again.measure(label).tables["config"]["model"] == here != "/elsewhere/checkout/models/tiny-wikitext"
    shutil.rmtree(cache)
