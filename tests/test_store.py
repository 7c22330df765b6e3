"""The on-disk cache: hits, misses, corruption, library versions, --refresh, concurrent writers."""

from __future__ import annotations

import dataclasses
import multiprocessing
from pathlib import Path

import pytest
import torch

from lib.measure import store as store_module
from lib.measure.store import CacheWarning, Store, library_versions
from lib.setup.config import CAPTURE_INDEPENDENT
from lib.tables.run import CAPTURE_VERSION, Run

META = {"stage": "test", "n": 1}


def test_cache_hit_returns_identical_tensors_without_the_model(make_model, make_config, text_file, store):
    config = make_config(make_model(), text_file)
    first = Run(config, store).capture
    warm = Run(config, store)
    again = warm.capture
    assert "bridge" not in vars(warm), "a cache hit must not load the model"
    for name, tensor in first.tensors().items():
        assert torch.equal(tensor, again.tensors()[name]), name


@pytest.mark.parametrize(
    "change",
    [{"device": "mps"}, {"n_tokens": 51}, {"numerics": "compat"}, {"positions": "text"}, {"model_revision": "x"}],
)
def test_changed_config_or_device_misses(make_model, make_config, text_file, store, change):
    config = make_config(make_model(), text_file)
    other = dataclasses.replace(config, **change)
    assert other.capture_key != config.capture_key
    Run(config, store).capture
    meta = {"stage": "capture", "version": CAPTURE_VERSION, **other.identity(exclude=CAPTURE_INDEPENDENT)}
    assert store.load("capture", other.capture_key, meta) is None


def test_an_entry_of_an_older_capture_version_is_recomputed(make_model, make_config, text_file, store):
    """Captures written before a fix (e.g. the fused kernel that dropped rotary) never answer again."""
    config = make_config(make_model(), text_file)
    Run(config, store).capture
    meta = {"stage": "capture", "version": CAPTURE_VERSION, **config.identity(exclude=CAPTURE_INDEPENDENT)}
    assert store.load("capture", config.capture_key, meta) is not None
    assert store.load("capture", config.capture_key, {**meta, "version": CAPTURE_VERSION - 1}) is None


def test_moved_model_and_text_share_the_key(make_model, make_config, text_file, tmp_path):
    import shutil

    config = make_config(make_model(), text_file)
    moved = make_config(shutil.copytree(config.model, tmp_path / "m"), shutil.copy(text_file, tmp_path / "t.txt"))
    assert moved.model != config.model and moved.key() == config.key()


def test_pca_convention_and_k_list_share_the_capture(make_model, make_config, text_file):
    config = make_config(make_model(), text_file)
    assert dataclasses.replace(config, pca="uncentred").capture_key == config.capture_key
    assert dataclasses.replace(config, ks=(4,)).capture_key == config.capture_key
    assert dataclasses.replace(config, ks=(4,)).key() != config.key()
    assert dataclasses.replace(config, pca="uncentred").key() != config.key()


def test_entry_written_for_another_config_is_not_used(store):
    store.save("x", "k", META, {"a": torch.ones(3)})
    with pytest.warns(CacheWarning, match="another config"):
        assert store.load("x", "k", {**META, "n": 2}) is None


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_entry_is_detected_and_recomputed(store, damage):
    path = store.save("x", "k", META, {"a": torch.arange(1000.0)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:-8] + b"\x01" * 8)
    with pytest.warns(CacheWarning, match="corrupt"):
        out = store.get_or_compute("x", "k", META, lambda: {"a": torch.arange(1000.0)})
    assert torch.equal(out["a"], torch.arange(1000.0))
    assert torch.equal(store.load("x", "k", META)["a"], torch.arange(1000.0))  # repaired on disk


def test_interrupted_write_leaves_no_entry(store):
    def boom() -> dict[str, torch.Tensor]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.get_or_compute("x", "k", META, boom)
    assert store.load("x", "k", META) is None
    assert not list(store.root.glob("*.tmp"))


def _fill(root: str, counter: str) -> float:
    def compute() -> dict[str, torch.Tensor]:
        with open(counter, "a") as f:
            f.write("x")
        return {"a": torch.full((4,), 7.0)}

    return float(Store(root).get_or_compute("x", "k", META, compute)["a"].sum())


def test_two_workers_fill_once(tmp_path: Path):
    counter = tmp_path / "computed"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_fill, [(str(tmp_path / "c"), str(counter))] * 4)
    assert results == [28.0] * 4
    assert counter.read_text() == "x"


def _counting(kind: str, calls: list[int]) -> tuple[str, object]:
    """(the Store method's name, a compute that counts its calls) for a tensors or a JSON entry."""

    def tensors() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"a": torch.ones(3)}

    def document() -> dict[str, int]:
        calls.append(1)
        return {"a": 1}

    return ("get_or_compute", tensors) if kind == "tensors" else ("get_or_compute_json", document)


@pytest.mark.parametrize("kind", ["tensors", "json"])
def test_an_entry_computed_under_other_library_versions_is_recomputed(store, monkeypatch, kind):
    calls: list[int] = []
    method, compute = _counting(kind, calls)
    other = {**library_versions(), "torch": "0.0.1"}
    with monkeypatch.context() as m:
        m.setattr(store_module, "library_versions", lambda: other)
        getattr(store, method)("x", "k", META, compute)
    with pytest.warns(CacheWarning, match=r"other library versions \(torch 0\.0\.1 -> ") as record:
        getattr(store, method)("x", "k", META, compute)
    assert len(calls) == 2, "an entry of other library versions must not answer"
    assert len([w for w in record if w.category is CacheWarning]) == 1 and "\n" not in str(record[0].message)
    getattr(store, method)("x", "k", META, compute)  # rewritten under this process's versions: a hit
    assert len(calls) == 2


@pytest.mark.parametrize("kind", ["tensors", "json"])
def test_refresh_recomputes_each_entry_once(tmp_path: Path, kind):
    calls: list[int] = []
    method, compute = _counting(kind, calls)
    getattr(Store(tmp_path), method)("x", "k", META, compute)
    refreshing = Store(tmp_path, refresh=True)
    getattr(refreshing, method)("x", "k", META, compute)
    assert len(calls) == 2, "--refresh must recompute a valid entry"
    getattr(refreshing, method)("x", "k", META, compute)  # what this run wrote answers its later reads
    getattr(Store(tmp_path), method)("x", "k", META, compute)
    assert len(calls) == 2
