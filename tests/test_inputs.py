"""Bad input gets a clear error naming the value and what is allowed; offline GPT-2 skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lib.errors import ConfigError
from lib.measure.store import Store
from lib.setup.corpus import select_tokens
from lib.tables.run import Run

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
    with pytest.raises(
        ConfigError,
        match=rf"--n-tokens {n_tokens} is not allowed; expected a whole number of at least 2 \(PCA needs two positions\)",
    ):
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
    n_text=st.integers(1, 300),
    n_tokens=st.integers(2, 200),
    n_ctx=st.integers(2, 50),
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
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": str(ROOT),
    }
    test = tmp_path / "test_needs_gpt2.py"
    test.write_text("def test_tables(tables):\n    assert tables\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(test),
            "-rs",
            "-p",
            "conftest",
            "-p",
            "no:cacheprovider",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "1 skipped" in out.stdout, out.stdout + out.stderr
    assert "openai-community/gpt2" in out.stdout and "Run once with network access" in out.stdout
    assert "--model" in out.stdout


def test_hub_model_from_the_hugging_face_cache_loads_offline(make_model, text_file, store, tmp_path, monkeypatch):
    """The real GPT-2 path: a model in the HF cache resolves to its commit and loads without network."""
    import shutil

    from huggingface_hub import constants

    from lib.setup.config import build_config

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--openai-community--gpt2"
    shutil.copytree(make_model(), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = build_config(
        model="gpt2",
        dataset=str(text_file),
        n_tokens=20,
        device="cpu",
        numerics="compat",
        positions="all",
        pca="centred",
    )
    assert (config.model, config.model_revision) == ("openai-community/gpt2", f"hub:{commit}")
    assert config.run_id.startswith("openai-community_gpt2-text-n20-cpu-")
    assert Run(config, store).capture.delta_phi.shape == (2, 20, 32)


def test_default_text_offline_without_a_copy_is_unavailable_with_the_reason(tmp_path, monkeypatch):
    from lib.setup.corpus import resolve_dataset

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


def _corrupt_header_dtype(model_dir: Path) -> None:
    """A whole file whose header names an unknown dtype: only the loader can tell (SafetensorError)."""
    path = model_dir / "model.safetensors"
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + n].decode().replace('"F32"', '"Q32"', 1)  # same length: offsets stay right
    data[8 : 8 + n] = header.encode()
    path.write_bytes(bytes(data))


def _truncate(model_dir: Path) -> None:
    path = model_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


@pytest.fixture
def copied_model(make_model, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(make_model(), tmp_path / "model"))


def test_text_file_that_is_not_utf8(make_model, make_config, tmp_path):
    """A Latin-1 text file stops at the config with the file named and UTF-8 asked for."""
    text = tmp_path / "latin1.txt"
    text.write_bytes("Caf\u00e9 cr\u00e8me, na\u00efve.".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"--dataset '.*latin1.txt' is not UTF-8 text \(byte 0xe9 at offset 3"):
        make_config(make_model(), text)


def test_truncated_weights_file(copied_model, make_config, text_file):
    """A truncated .safetensors file is found from its header when the model is resolved, before loading."""
    _truncate(copied_model)
    with pytest.raises(
        ConfigError, match=r"weights file model.safetensors is corrupt \(its tensors need \d+ bytes but"
    ):
        make_config(copied_model, text_file)


def test_weights_file_the_loader_cannot_read(copied_model, make_config, text_file, store):
    """A weights file whose header is whole but wrong fails at load as one ConfigError, not a SafetensorError."""
    _corrupt_header_dtype(copied_model)
    run = Run(make_config(copied_model, text_file), store)
    with pytest.raises(
        ConfigError, match=r"--model '.*model': a weights file cannot be read \(.*Q32.*\); expected the"
    ):
        run.bridge


@pytest.mark.parametrize("make_bad", ["under_a_file", "not_writable"])
def test_cache_dir_that_cannot_be_created(tmp_path, make_bad, monkeypatch):
    """A cache directory that cannot be created (its parent is a file) or written names the path."""
    from lib.measure.store import Store

    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "cache"
    if make_bad == "not_writable":
        path = tmp_path / "ro"
        path.mkdir()
        monkeypatch.setattr(os, "access", lambda p, mode: False)  # root can write anywhere: ask as a user
    with pytest.raises(ConfigError, match=rf"--cache-dir '{path}' (cannot be created|is not writable)"):
        Store(path)


def _bad_inputs(kind: str, model: Path, tmp_path: Path, text: Path) -> list[str]:
    """Options naming one bad input of `kind`."""
    if kind == "text":
        bad = tmp_path / "latin1.txt"
        bad.write_bytes("Caf\u00e9".encode("latin-1"))
        return ["--model", str(model), "--dataset", str(bad)]
    if kind == "weights":
        _truncate(model)
        return ["--model", str(model), "--dataset", str(text)]
    (tmp_path / "file").write_text("x")
    return ["--model", str(model), "--dataset", str(text), "--cache-dir", str(tmp_path / "file" / "cache")]


EXPECTED = {"text": "is not UTF-8 text", "weights": "is corrupt", "cache": "cannot be created"}


@pytest.mark.parametrize("kind", ["text", "weights", "cache"])
def test_bad_inputs_exit_2_from_the_command_line(kind, copied_model, text_file, tmp_path, capsys):
    """`python -m lib tables` prints one error line naming the value and exits 2 (no traceback)."""
    from lib.cli import main

    code = main(["tables", *_bad_inputs(kind, copied_model, tmp_path, text_file), "--n-tokens", "20"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: --") and EXPECTED[kind] in err[-1], err
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("kind", ["text", "weights", "cache"])
def test_bad_inputs_are_a_pytest_usage_error(kind, copied_model, text_file, tmp_path):
    """The same inputs given to pytest stop the session as a usage error (exit 4) with the one line."""
    test = tmp_path / "test_any.py"
    test.write_text("def test_nothing():\n    pass\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(test),
            "-p",
            "conftest",
            "-p",
            "no:cacheprovider",
            *_bad_inputs(kind, copied_model, tmp_path, text_file),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 4, out.stdout + out.stderr
    assert EXPECTED[kind] in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_bad_batch_size(value):
    """--batch-size takes a whole number of at least 1, or auto."""
    from lib.setup.config import check_batch_size
    from lib.setup.options import batch_size_value

    with pytest.raises(
        ConfigError, match=rf"--batch-size '?{value}'? is not allowed; expected a whole number of at least 1, or auto"
    ):
        check_batch_size(batch_size_value(value))


def test_batch_size_auto_per_device_and_an_explicit_number_wins():
    from lib.setup.config import check_batch_size

    assert [check_batch_size("auto", d) for d in ("cpu", "cuda", "mps")] == [1, 8, 4]
    assert check_batch_size(3, "cpu") == 3 and check_batch_size(3, "cuda") == 3


def test_batch_size_does_not_change_a_number(make_model, make_config, text_file, tmp_path):
    """Tables for batch sizes 1 and 3 (chunks, and 7D projections, per pass) are equal to float rounding."""
    config = make_config(make_model(n_layer=2, n_ctx=16), text_file, n_tokens=90)  # 6 chunks of 16, 7D: 6 projections
    one = Run(config, Store(tmp_path / "one"), batch_size=1).tables
    three = Run(config, Store(tmp_path / "three"), batch_size=3).tables
    # float32 passes of the same sequences in batches of another size: the matmul kernels may sum
    # in another order, ~1e-7 relative; 1e-6 is float rounding through 2 layers, and K must not move.
    assert [r["k90"] for r in one["layer_pca"]] == [r["k90"] for r in three["layer_pca"]]
    assert one["shared_pca"] == three["shared_pca"]
    for key in ("mean_norm", "std_norm"):
        np.testing.assert_allclose([r[key] for r in one["norms"]], [r[key] for r in three["norms"]], rtol=1e-6)
    assert one["baseline_ppl"] == pytest.approx(three["baseline_ppl"], rel=1e-6)
    for a, b in zip(one["lowrank_ppl"], three["lowrank_ppl"]):
        assert (a["individual_ppl"], a["shared_ppl"]) == pytest.approx((b["individual_ppl"], b["shared_ppl"]), rel=1e-6)


def test_truncated_pytorch_bin_weights(copied_model, make_config, text_file):
    """A pytorch_model.bin cut short (a zip without its central directory) is found when the model is resolved."""
    from safetensors.torch import load_file

    weights = copied_model / "model.safetensors"
    torch.save(load_file(str(weights)), copied_model / "pytorch_model.bin")
    weights.unlink()
    data = (copied_model / "pytorch_model.bin").read_bytes()
    (copied_model / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ConfigError, match=r"weights file pytorch_model.bin is corrupt \(a zip archive without its central"
    ):
        make_config(copied_model, text_file)


@pytest.mark.parametrize(
    "message,error",
    [("PytorchStreamReader failed reading zip archive", ConfigError), ("CUDA out of memory", RuntimeError)],
)
def test_torch_load_failure_at_load(copied_model, make_config, text_file, store, monkeypatch, message, error):
    """torch.load's error on a broken .bin becomes one ConfigError; any other RuntimeError is not hidden."""
    from transformer_lens.model_bridge import TransformerBridge

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError(message)

    monkeypatch.setattr(TransformerBridge, "boot_transformers", fail)
    run = Run(make_config(copied_model, text_file), store)
    with pytest.raises(error, match=message):
        run.bridge


def test_lib_installed_as_a_copy_finds_the_checkout_from_the_working_directory(tmp_path):
    """Without an editable install (lib copied into site-packages), the embedded model, the
    snapshots and ../shared are the checkout's, found from the working directory."""
    import shutil

    root = ROOT
    site = tmp_path / "site"
    shutil.copytree(root / "lib", site / "lib")
    probe = (
        "import lib.setup.options, lib.setup.model_source, lib.report.snapshot, lib.setup.corpus; "
        "print(lib.setup.options.__file__); print(lib.setup.model_source.EMBEDDED['tiny-wikitext']); "
        "print(lib.report.snapshot.SNAPSHOTS); print(lib.setup.corpus.local_copies()[0])"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DPHI_SNAPSHOT_DIR", "DPHI_WIKITEXT2_TEST")}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run(
        [sys.executable, "-P", "-c", probe], cwd=root, env=env, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0].startswith(str(site)), out  # the copy, not the checkout, was imported
    assert out[1:4] == [
        str(root / "models" / "tiny-wikitext"),
        str(root / "snapshots"),
        str(root.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"),
    ]
