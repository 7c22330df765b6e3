"""Tables 7A-7E: known answers on hand-built models, and an independent NumPy computation."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.measure.spectra import RECONSTRUCTION_KS
from lib.tables.run import Run

ROOT = Path(__file__).resolve().parent.parent
R_FFN, R_ATTN = 1, 2  # planted ranks of layer 0's FFN write and the last layer's attention write


def _plant_ranks(model) -> None:
    """Layer 0's FFN writes along R_FFN directions; the last layer's attention along R_ATTN."""
    g = torch.Generator().manual_seed(1)
    mlp = model.transformer.h[0].mlp.c_proj.weight  # (4 d, d): Conv1D, x @ W
    mlp.copy_(torch.randn(mlp.shape[0], R_FFN, generator=g) @ torch.randn(R_FFN, mlp.shape[1], generator=g) / 10)
    attn = model.transformer.h[-1].attn.c_proj.weight  # (d, d)
    attn.copy_(torch.randn(attn.shape[0], R_ATTN, generator=g) @ torch.randn(R_ATTN, attn.shape[1], generator=g))


@pytest.fixture(scope="module")
def planted_run(make_model, make_config, text_file, tmp_path_factory):
    from lib.measure.store import Store

    model = make_model(n_layer=3, d_model=32, n_ctx=64, edit=_plant_ranks)
    config = make_config(model, text_file, n_tokens=120, numerics="compat")
    return Run(config, Store(tmp_path_factory.mktemp("cache")))


def test_planted_ranks_are_found(planted_run):
    t = planted_run.tables
    assert t["attn_ffn"][0]["ffn_k90"] == R_FFN  # like GPT-2's layer 2: one direction
    assert t["attn_ffn"][-1]["attn_k90"] <= R_ATTN
    # the unplanted writes need more: the test can tell a planted rank from a random one
    assert t["attn_ffn"][1]["ffn_k90"] > R_FFN and t["attn_ffn"][1]["attn_k90"] > R_ATTN
    # layer 0's whole write = its attention (random) + rank-1 FFN
    assert t["layer_pca"][0]["k95"] <= t["attn_ffn"][0]["attn_k90"] + 20


def test_full_rank_projection_is_the_baseline(planted_run):
    t = planted_run.tables
    full = t["lowrank_ppl"][-1]
    assert full["k"] == 32
    # U U^T = I up to float32 rounding (~1e-6) in each of 3 layers: logits move by ~1e-5
    assert full["individual_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert full["shared_ratio"] == pytest.approx(1.0, abs=1e-4)


def _k(s: np.ndarray, t: float) -> int:
    ratio = np.cumsum(s**2) / np.sum(s**2)
    return int(np.searchsorted(ratio, t - 1e-12) + 1)


def test_tables_match_an_independent_numpy_computation(planted_run):
    """7A, 7B, 7C and 7E recomputed from the captured tensors with NumPy's dense SVD."""
    t = planted_run.tables
    c = planted_run.capture
    dphi = c.delta_phi.double().numpy()  # (L, N, d)
    norms = np.linalg.norm(dphi, axis=-1)
    np.testing.assert_allclose([r["mean_norm"] for r in t["norms"]], norms.mean(1), rtol=1e-10)
    np.testing.assert_allclose([r["std_norm"] for r in t["norms"]], norms.std(1, ddof=1), rtol=1e-10)
    for layer, x in enumerate(dphi):
        s = np.linalg.svd(x - x.mean(0), compute_uv=False)
        assert [t["layer_pca"][layer][f"k{p}"] for p in (50, 80, 90, 95)] == [_k(s, p / 100) for p in (50, 80, 90, 95)]
    stacked = dphi.reshape(-1, dphi.shape[-1])
    mu = stacked.mean(0)
    _, s, vt = np.linalg.svd(stacked - mu, full_matrices=False)
    assert [t["shared_pca"][f"k{p}"] for p in (50, 80, 90, 95)] == [_k(s, p / 100) for p in (50, 80, 90, 95)]
    for row in t["reconstruction"]:
        u = vt[: row["k"]].T  # (d, K)
        cos, rel = [], []
        for x in dphi:
            xh = mu + (x - mu) @ u @ u.T
            cos.append(np.mean(np.sum(x * xh, -1) / np.linalg.norm(x, axis=-1) / np.linalg.norm(xh, axis=-1)))
            rel.append(np.mean(np.linalg.norm(x - xh, axis=-1) / np.linalg.norm(x, axis=-1)))
        # singular vectors vs eigenvectors differ by ~1e-12: metrics agree far below the 3 digits printed
        assert row["cos_sim"] == pytest.approx(np.mean(cos), abs=1e-8)
        assert row["relative_l2"] == pytest.approx(np.mean(rel), abs=1e-8)
    assert [r["k"] for r in t["reconstruction"]] == [k for k in RECONSTRUCTION_KS if k <= 32]
    for layer, row in enumerate(t["attn_ffn"]):
        a = c.delta_phi_attn[layer].double().numpy()
        f = c.delta_phi_ffn[layer].double().numpy()
        ka = _k(np.linalg.svd(a - a.mean(0), compute_uv=False), 0.9)
        kf = _k(np.linalg.svd(f - f.mean(0), compute_uv=False), 0.9)
        assert (row["attn_k90"], row["ffn_k90"]) == (ka, kf)
        assert row["ratio"] == pytest.approx(ka / kf)
    assert t["baseline_ppl"] == pytest.approx(math.exp(c.nll.mean().item()), rel=1e-12)


def test_cli_prints_tables_and_writes_json(make_model, text_file, tmp_path):
    out = tmp_path / "t.json"
    cmd = [
        sys.executable,
        "-m",
        "lib",
        "tables",
        "--model",
        str(make_model()),
        "--dataset",
        str(text_file),
        "--n-tokens",
        "40",
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
        str(out),
        "--plot",
        str(tmp_path / "plot.png"),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "7D: low-rank inference" in done.stdout and "Baseline perplexity" in done.stdout
    data = json.loads(out.read_text())
    assert list(data)[:8] == [
        "config",
        "norms",
        "layer_pca",
        "shared_pca",
        "reconstruction",
        "baseline_ppl",
        "lowrank_ppl",
        "attn_ffn",
    ]
    assert {"shared_pca_normalised", "write_sources", "unembedding_overlap", "norm_concentration", "pc1_origin"} <= set(
        data
    )
    assert set(data["lowrank_ppl"][0]) == {"k", "individual_ppl", "individual_ratio", "shared_ppl", "shared_ratio"}
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--device", "mps"], "--device 'mps' was asked for"),
        (["--n-tokens", "1"], "--n-tokens 1 is not allowed; expected a whole number of at least 2"),
        (["--model", "/nonexistent"], "no such directory"),
    ],
)
def test_cli_bad_input_exits_nonzero(args, message, tmp_path):
    if "mps" in args and torch.backends.mps.is_available():
        pytest.skip("mps is available here")
    done = subprocess.run(
        [sys.executable, "-m", "lib", "tables", "--cache-dir", str(tmp_path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert message in done.stderr


@pytest.fixture(scope="module")
def embedded_tables(embedded_config, tmp_path_factory):
    from lib.measure.store import Store

    config = embedded_config()
    return Run(config, Store(tmp_path_factory.mktemp("cache"))).tables


def test_lowrank_ratio_falls_to_one_on_a_trained_model(embedded_tables):
    ratios = [r["individual_ratio"] for r in embedded_tables["lowrank_ppl"]]
    assert ratios[0] > 1.5, "a trained model must lose measurably at K=8"
    assert ratios[-1] == pytest.approx(1.0, abs=1e-4)
    assert ratios[-2] < ratios[0]


def test_streamed_statistics_give_the_in_memory_tables(make_model, make_config, text_file, tmp_path):
    """Past STREAM_ABOVE positions the tables come from statistics accumulated while capturing."""
    from lib.measure.store import Store
    from lib.report.snapshot import close

    config = make_config(make_model(n_layer=3, n_ctx=32), text_file, n_tokens=150, numerics="compat")
    held = Run(config, Store(tmp_path / "a")).tables
    streamed_run = Run(config, Store(tmp_path / "b"), stream_above=0)
    streamed = streamed_run.tables
    assert "capture" not in vars(streamed_run), "the streaming path must not hold Δφ"
    # a model whose held vectors would exceed the memory budget streams at any count
    too_big = Run(config, Store(tmp_path / "c"), hold_bytes=3 * 3 * 150 * 32 * 4 - 1)  # 3 layers, d_model 32
    assert close(too_big.tables["layer_pca"], held["layer_pca"]) and "capture" not in vars(too_big)
    at_budget = Run(config, Store(tmp_path / "d"), hold_bytes=3 * 3 * 150 * 32 * 4)
    at_budget.stats
    assert "capture" in vars(at_budget)
    for name in ("norms", "layer_pca", "shared_pca", "reconstruction", "baseline_ppl", "lowrank_ppl", "attn_ffn"):
        assert close(held[name], streamed[name]), name  # float64 sums in another order: ~1e-12


def test_reconstruction_sample_is_evenly_spaced_past_its_size(make_model, make_config, text_file, store):
    from lib.measure.stats import Stats, sample_positions

    run = Run(make_config(make_model(), text_file, n_tokens=90), store)
    stats = Stats.of_capture(run.capture, size=10)
    positions = sample_positions(90, 10)
    assert positions.tolist() == sorted(set(positions.tolist())) and positions[0] == 0 and positions[-1] == 89
    torch.testing.assert_close(stats.sample, run.capture.delta_phi[:, positions])
    assert Stats.of_capture(run.capture).sample.shape[1] == 90  # all positions when there are few
