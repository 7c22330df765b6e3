"""Bad input gets a clear error naming the value and what is allowed; offline GPT-2 skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lib.corpus import select_tokens
from lib.errors import ConfigError
from lib.experiment import Run

ROOT = Path(__file__).resolve().parent.parent


def test_unknown_device(make_model, make_config, text_file):
    with pytest.raises(ConfigError, match=r"--device 'tpu'.*allowed: auto, cpu, cuda, mps"):
        make_config(make_model(), text_file, device="tpu")


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_unavailable_accelerator(make_model, make_config, text_file, device):
    available = torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()
    if available:
        pytest.skip(f"{device} is available on this machine")
    with pytest.raises(ConfigError, match=rf"--device '{device}' was asked for but .* not available"):
        make_config(make_model(), text_file, device=device)


def test_model_path_that_is_not_a_model(make_config, text_file, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"is not a model directory: it lacks weights .*a tokenizer"):
        make_config(tmp_path, text_file)
    with pytest.raises(ConfigError, match=r"no such directory"):
        make_config(tmp_path / "missing", text_file)


def test_dataset_path_that_does_not_exist(make_model, make_config, tmp_path):
    with pytest.raises(ConfigError, match=r"--dataset '.*nope.txt': no such file"):
        make_config(make_model(), tmp_path / "nope.txt")


@pytest.mark.parametrize("n_tokens", [1, 0, -5])
def test_too_few_tokens(make_model, make_config, text_file, n_tokens):
    with pytest.raises(ConfigError, match=rf"--n-tokens {n_tokens} is too small; it must be at least 2"):
        make_config(make_model(), text_file, n_tokens=n_tokens)


def test_more_tokens_than_the_text_has(make_model, make_config, tmp_path, store):
    text = tmp_path / "short.txt"
    text.write_text("The quick brown fox.")
    run = Run(make_config(make_model(), text, n_tokens=500), store)
    with pytest.raises(ConfigError, match=r"--n-tokens 500 is larger than the text provides: it has \d+ tokens"):
        run.capture


@pytest.mark.parametrize("name,value", [("numerics", "fast"), ("positions", "odd"), ("pca", "kernel")])
def test_unknown_choice(make_model, make_config, text_file, name, value):
    with pytest.raises(ConfigError, match=rf"--{name} '{value}' is not allowed; allowed: "):
        make_config(make_model(), text_file, **{name: value})


@given(
    n_text=st.integers(1, 300), n_tokens=st.integers(2, 200), n_ctx=st.integers(2, 50),
    positions=st.sampled_from(["all", "text"]),
)
def test_token_selection(n_text, n_tokens, n_ctx, positions):
    text_ids = list(range(1, n_text + 1))
    try:
        sel = select_tokens(text_ids, 0, n_tokens, n_ctx, positions)
    except ConfigError as e:
        assert "larger than the text provides" in str(e)
        return
    assert sel.n_positions == n_tokens
    assert all(c[0] == 0 and 1 <= len(c) <= n_ctx for c in sel.chunks)  # BOS first, within context
    body = [int(t) for c in sel.chunks for t in c[1:]]
    assert body == text_ids[: len(body)]  # consecutive text, in order
    assert all(bool(m[0]) == (positions == "all") and bool(m[1:].all()) for m in sel.counted)


def test_gpt2_offline_skips_with_the_reason(tmp_path):
    """With no Hub access, the default model's tests skip and say what to do."""
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": str(ROOT),
    }
    test = tmp_path / "test_needs_gpt2.py"
    test.write_text("def test_tables(tables):\n    assert tables\n")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(test), "-rs", "-p", "conftest", "-p", "no:cacheprovider",
         "--cache-dir", str(tmp_path / "c")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert "1 skipped" in out.stdout, out.stdout + out.stderr
    assert "openai-community/gpt2" in out.stdout and "Run once with network access" in out.stdout
    assert "--model" in out.stdout


def test_hub_model_from_the_hugging_face_cache_loads_offline(make_model, text_file, store, tmp_path, monkeypatch):
    """The real GPT-2 path: a model in the HF cache resolves to its commit and loads without network."""
    import shutil

    from huggingface_hub import constants

    from lib.config import build_config

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--openai-community--gpt2"
    shutil.copytree(make_model(), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = build_config(model="gpt2", dataset=str(text_file), n_tokens=20, device="cpu", numerics="compat",
                          positions="all", pca="centred")
    assert (config.model, config.model_revision) == ("openai-community/gpt2", f"hub:{commit}")
    assert config.run_id.startswith("openai-community_gpt2-text-n20-cpu-")
    assert Run(config, store).capture.delta_phi.shape == (2, 20, 32)


def test_default_text_offline_without_a_copy_is_unavailable_with_the_reason(tmp_path, monkeypatch):
    from lib.corpus import resolve_dataset

    monkeypatch.setenv("DPHI_WIKITEXT2_TEST", "")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    name, revision = resolve_dataset("wikitext-2-raw-v1")
    assert revision.startswith("unavailable: WikiText-2") and "Run once with network access" in revision
    assert "--dataset" in revision


def test_default_text_and_a_copy_of_it_are_one_run(make_model, make_config, text_file, monkeypatch):
    monkeypatch.setenv("DPHI_WIKITEXT2_TEST", str(text_file))
    by_name = make_config(make_model(), "wikitext-2-raw-v1")
    by_path = make_config(make_model(), text_file)
    assert by_name.dataset == "wikitext-2-raw-v1" and by_path.dataset == str(text_file)
    assert by_name.key() == by_path.key()  # one cache entry; the run id's label names a known text alike
    assert by_name.run_id.endswith(by_path.key()[:8])


@pytest.mark.parametrize("ks", ["8,x", "0,8", ""])
def test_bad_k_list(make_model, make_config, text_file, ks):
    with pytest.raises(ConfigError, match=r"--ks"):
        make_config(make_model(), text_file, ks=ks)


def test_k_list_option_sets_the_7d_sweep(make_model, make_config, text_file, store):
    config = make_config(make_model(), text_file, ks="16,4,4,64")
    assert config.ks == (4, 16, 64)
    tables = Run(config, store).tables
    assert [r["k"] for r in tables["lowrank_ppl"]] == [4, 16, 32]  # 64 > d_model = 32 dropped, d_model added
