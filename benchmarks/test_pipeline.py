"""Benchmarks of each stage against the plain alternative, timed in the same run.

    make bench            # = pytest benchmarks/ --benchmark-json reports/benchmark.json

Each benchmark stores the plain alternative's time and the ratio in `extra_info`
(docs/benchmarks.md). Model: GPT-2-small-shaped (12 layers, d_model 768, vocab
50257), random init from a config; text: WikiText-2 test, 1000 positions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from lib.measure.capture import batches, capture, capture_stats, capture_tensors
from lib.measure.lowrank import lowrank_nll
from lib.measure.spectra import Moments, add_gram_, pca
from lib.measure.stats import Stats, StreamedSink
from lib.measure.store import Store
from lib.setup.config import build_config, check_batch_size
from lib.setup.corpus import Selection
from lib.setup.device import resolve_device
from lib.setup.model_source import EMBEDDED
from lib.tables.core import layer_bases, lowrank_ks, projections, shared_basis
from lib.tables.run import Run

ROOT = Path(__file__).resolve().parent.parent
TEXT = Path(os.environ.get("DPHI_BENCH_TEXT", ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"))
DEVICE = resolve_device(os.environ.get("DPHI_BENCH_DEVICE", "cpu"))
"""$DPHI_BENCH_DEVICE: cpu (default), cuda, mps or auto; benchmarks/device.sh runs them on a lent GPU."""
FULL = os.environ.get("DPHI_BENCH_FULL", "") not in ("", "0")
"""$DPHI_BENCH_FULL=1 (`make bench BENCH_FULL=1`): the full sweep (the model families, scaling to the whole
text, two processes); without it `make bench` stays within about 10 minutes on 2 cores (docs/regression.md)."""
BATCH = check_batch_size("auto", DEVICE)
"""Chunks per pass, ours and the plain forward alike: the fastest on each device (1 on the CPU)."""
N_TOKENS = 1000
STREAMED_TOKENS = 4000
"""The streamed capture is timed on 4 chunks: past 20,000 positions its fixed cost (allocating and
settling the moments, `fixed_s`) weighs less still."""


def fastest(fn: Callable[[], Any], rounds: int) -> float:
    """The fastest of `rounds` timed calls: on a shared machine noise only adds time."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved(
    benchmark: Any, plain: Callable[[], Any], ours: Callable[[], Any], rounds: int = 5, warmup: int = 1
) -> float:
    """Time ours `rounds` times with the plain alternative just before each round; the plain's fastest.

    Alternating the two exposes both to the same drift of the machine's speed.
    """
    times: list[float] = []
    benchmark.pedantic(ours, setup=lambda: times.append(fastest(plain, 1)), rounds=rounds, warmup_rounds=warmup)
    return min(times)


def record(benchmark: Any, plain_s: float, plain: str) -> None:
    """Store the plain alternative's time and the ratio of the fastest rounds, ours / plain."""
    ours = benchmark.stats.stats.min
    benchmark.extra_info.update(
        plain=plain, plain_s=round(plain_s, 4), ours_s=round(ours, 4), ratio=round(ours / plain_s, 3)
    )


@pytest.fixture(scope="session")
def gpt2_shaped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    if not TEXT.is_file():
        pytest.skip(f"WikiText-2 test text not found at {TEXT}")
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("gpt2-shaped")
    GPT2LMHeadModel(GPT2Config(bos_token_id=0, eos_token_id=0)).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):  # any loadable tokenizer with ids < 50257
        shutil.copy(EMBEDDED["tiny-wikitext"] / name, out)
    return out


@pytest.fixture(scope="session")
def run(gpt2_shaped: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    config = build_config(
        model=str(gpt2_shaped),
        dataset=str(TEXT),
        n_tokens=N_TOKENS,
        device=DEVICE,
        numerics="compat",
        positions="all",
        pca="centred",
    )
    r = Run(config, Store(tmp_path_factory.mktemp("cache")), batch_size=BATCH)
    r.bridge, r.selection  # model loading aside
    return r


@pytest.fixture(scope="session")
def run_streamed(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The model of `run` on STREAMED_TOKENS positions."""
    r = Run(
        replace(run.config, n_tokens=STREAMED_TOKENS),
        Store(tmp_path_factory.mktemp("cache")),
        batch_size=BATCH,
        shared=run.shared,
    )
    r.bridge, r.selection
    return r


def _sync() -> None:
    """Wait for the device's queued work (timings on CUDA and mps are otherwise launch times)."""
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()
    elif DEVICE == "mps":
        torch.mps.synchronize()


def _hf_forward(model_dir: Path, selection: Selection) -> Callable[[int], None]:
    """forward(copies): a bare Hugging Face forward (default attention) of the chunks on DEVICE, BATCH
    chunks per pass; with copies > 1, each chunk alone, repeated copies times in its pass (as 7D's)."""
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(model_dir).to(DEVICE).eval()

    def forward(copies: int = 1) -> None:
        with torch.inference_mode():
            if copies == 1:
                for tokens, _ in batches(selection, BATCH):
                    model(tokens.to(DEVICE))
            else:
                for chunk in selection.chunks:
                    model(chunk[None].expand(copies, -1).to(DEVICE))
        _sync()

    forward(1)  # warm-up
    return forward


@pytest.fixture(scope="session")
def hf_forward(gpt2_shaped: Path, run: Run) -> Callable[[int], None]:
    return _hf_forward(gpt2_shaped, run.selection)


@pytest.fixture(scope="session")
def captured(run: Run) -> Stats:
    return Stats.of_capture(capture_tensors(run.bridge, run.selection))


@pytest.mark.benchmark(group="capture")
def test_capture_delta_phi(benchmark, run, hf_forward):
    """Δφ, Δφ_attn, Δφ_ffn of all layers (held in memory) vs a bare HF forward on the same tokens."""
    plain = interleaved(benchmark, hf_forward, lambda: capture_tensors(run.bridge, run.selection, BATCH))
    record(benchmark, plain, "bare Hugging Face forward, default attention")


class _NoSink:
    def write(self, key: str, layer: int, offset: int, x: torch.Tensor) -> None:
        pass

    def combine(self) -> None:
        pass


@pytest.mark.benchmark(group="capture")
def test_capture_streamed_statistics(benchmark, gpt2_shaped, run_streamed):
    """The streaming path (float32 batch Grams merged in float64) vs a bare HF forward, 4000 positions.

    extra_info also holds what the ratio is made of, each the fastest of 3: `hooks_s`, the same
    capture with a sink that keeps nothing (the hooks, the masks and the baseline NLL);
    `grams_s`, the 36 float32 Gram matrices per chunk alone (add_gram_ on data of the same
    shapes); `fixed_s`, allocating and settling the moments (once per capture, whatever its size).
    """
    r = run_streamed
    plain = interleaved(
        benchmark, _hf_forward(gpt2_shaped, r.selection), lambda: capture_stats(r.bridge, r.selection, BATCH), rounds=3
    )
    record(benchmark, plain, f"bare Hugging Face forward, default attention, {STREAMED_TOKENS} positions")
    cfg, counted = r.bridge.cfg, [int(c.sum()) for c in r.selection.counted]
    xs = [torch.randn(n, cfg.d_model, device=DEVICE) for n in counted]
    gram = torch.zeros(cfg.d_model, cfg.d_model, device=DEVICE)

    def fixed() -> None:
        StreamedSink(cfg.n_layers, r.selection.n_positions, cfg.d_model, device=DEVICE).stats(torch.zeros(1))

    def grams() -> None:
        for x in xs:
            for _ in range(3 * cfg.n_layers):
                add_gram_(gram, x)
        _sync()

    benchmark.extra_info.update(
        hooks_s=round(fastest(lambda: capture(r.bridge, r.selection, _NoSink(), BATCH, split=True), 3), 4),
        grams_s=round(fastest(grams, 3), 4),
        fixed_s=round(fastest(fixed, 3), 4),
    )


def _dense_svd(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return torch.linalg.svd(x - x.mean(0), full_matrices=False).S


@pytest.mark.benchmark(group="pca")
def test_per_layer_pca(benchmark, run):
    """7B: covariance + eigh per layer vs scikit-learn-style dense SVD of the centred data."""
    delta_phi = run.capture.delta_phi  # (L, N, d)
    plain = fastest(lambda: [_dense_svd(x) for x in delta_phi], 3)
    benchmark(lambda: [pca(Moments.of(x)) for x in delta_phi])
    record(benchmark, plain, "dense SVD per layer (float64)")


@pytest.mark.benchmark(group="pca")
def test_shared_pca(benchmark, run):
    """7C: PCA of all layers stacked, (12000, 768)."""
    stacked = run.capture.delta_phi.reshape(-1, run.capture.delta_phi.shape[-1])
    plain = fastest(lambda: _dense_svd(stacked), 3)
    benchmark(lambda: pca(Moments.of(stacked)))
    record(benchmark, plain, "dense SVD of the stacked data (float64)")


@pytest.mark.benchmark(group="lowrank")
def test_lowrank_sweep(benchmark, run, captured, hf_forward):
    """7D: 16 projections (8 K x individual/shared), BATCH per pass (the suite's --batch-size auto), vs the
    bare passes of the same shape, the fastest plain alternative on the device (on the CPU one sequence
    per pass: 8 copies per pass are slower there)."""
    bases = layer_bases(captured, "delta_phi", True)
    ks = lowrank_ks(captured.total.shape[-1], run.config.ks)
    variants = projections(bases, shared_basis(captured, True), ks)
    plain = interleaved(
        benchmark,
        lambda: bare_projected_passes(hf_forward, len(variants)),
        lambda: lowrank_nll(run.bridge, run.selection, variants, BATCH),
        rounds=1,
        warmup=0,
    )
    record(benchmark, plain, f"bare HF forwards, {len(variants)} sequences {BATCH} per pass")


@pytest.mark.benchmark(group="lowrank")
def test_projected_pass(benchmark, run, captured, hf_forward):
    """One 7D pass (individual bases, K = 8: the suite's hooks, compat, the fused kernel, the NLL) vs the
    bare HF forward of the same chunk: what the bridge and the hooks add per pass (docs/benchmarks.md)."""
    variant = projections(layer_bases(captured, "delta_phi", True), shared_basis(captured, True), [8])[0]
    plain = interleaved(benchmark, lambda: hf_forward(1), lambda: lowrank_nll(run.bridge, run.selection, [variant], 1))
    record(benchmark, plain, "bare HF forward of the same chunk (its default attention, sdpa)")


@pytest.mark.benchmark(group="lowrank")
def test_attention_kernel_wrapping(benchmark, run):
    """The fused kernel's wrapping (kernels.py `_sdpa_reconstruct`: heads reshaped, the hook check, the
    output reshaped) vs what it wraps: the fused SDPA call on the same head views and the output
    projection alone, on the q, k, v of layer 0 of a 7D-shaped pass. Target <= 1.10."""
    from lib.measure.models import attention_kernel

    attn, seen = run.bridge.blocks[0].attn, {}
    tokens = run.selection.chunks[0][None].to(DEVICE)  # (1, T)
    with torch.inference_mode(), attention_kernel(run.bridge, "sdpa"):
        fused = attn._reconstruct_attention

        def record_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> tuple:
            seen.update(q=q, k=k, v=v, kwargs=kwargs)
            return fused(q, k, v, **kwargs)

        attn._reconstruct_attention = record_inputs
        try:
            run.bridge(tokens)
        finally:
            attn._reconstruct_attention = fused
        n_heads = run.bridge.cfg.n_heads
        q, k, v, batch, seq, d_head = attn._reshape_qkv_to_heads(seen["q"], seen["k"], seen["v"], n_heads, n_heads)
        # (B, H, T, d_head) views of the bridge's q, k, v, as the kernel gets them (and Hugging Face's
        # attention): contiguous copies make SDPA ~6% faster but cost more than that to make
        heads = (q, k, v)
        projected_in = torch.randn(batch, seq, n_heads * d_head, device=DEVICE)  # (B, T, d_model)
        calls = 20  # ~40 ms a call on the CPU: enough to time

        def ours() -> None:
            for _ in range(calls):
                fused(seen["q"], seen["k"], seen["v"], **seen["kwargs"])
            _sync()

        def plain() -> None:
            for _ in range(calls):
                torch.nn.functional.scaled_dot_product_attention(*heads, is_causal=True, scale=d_head**-0.5)
                attn.o(projected_in)
            _sync()

        plain_s = interleaved(benchmark, plain, ours)
    record(benchmark, plain_s, f"{calls} x (fused SDPA on the same head views + the output projection)")


def bare_projected_passes(hf_forward: Callable[[int], None], n_variants: int) -> None:
    """The bare forwards 7D's passes need at BATCH: each chunk once per variant, BATCH copies per pass."""
    for _ in range(-(-n_variants // BATCH)):
        hf_forward(BATCH)


@pytest.mark.benchmark(group="tables")
def test_tables_cold(benchmark, run, hf_forward, tmp_path):
    """All of 7A-7E from nothing (model loaded, --batch-size auto) vs the forward passes it needs: 1 clean
    + 16 projected, at the same batch size (the fastest plain alternative on the device)."""

    def cold() -> dict:
        fresh = Run(run.config, Store(tmp_path / str(time.perf_counter_ns())), batch_size=BATCH)
        fresh.bridge, fresh.selection = run.bridge, run.selection
        return fresh.tables

    n_variants = 2 * len(lowrank_ks(run.bridge.cfg.d_model, run.config.ks))
    plain = interleaved(
        benchmark, lambda: (hf_forward(1), bare_projected_passes(hf_forward, n_variants)), cold, rounds=1, warmup=0
    )
    record(benchmark, plain, f"bare HF forwards: 1 clean + {n_variants} projected, {BATCH} per pass")


@pytest.mark.benchmark(group="tables")
def test_tables_warm(benchmark, run, tmp_path):
    """A rerun from the cache (a new Run, same store), vs the cold run; model loading aside."""
    store = Store(tmp_path)
    first = Run(run.config, store)
    first.bridge, first.selection = run.bridge, run.selection
    start = time.perf_counter()
    first.tables
    cold = time.perf_counter() - start
    benchmark(lambda: Run(run.config, store).tables)
    record(benchmark, cold, "the cold run")


MEMORY_SCRIPT = """
import json, re, sys
from lib.setup.config import build_config, check_batch_size
from lib.tables.run import Run
from lib.measure.store import Store
config = build_config(model="tiny-wikitext", dataset=sys.argv[1], n_tokens=int(sys.argv[2]), device="cpu",
                      numerics="compat", positions="all", pca="centred")
tables = Run(config, Store(sys.argv[3])).tables
# VmHWM: this process's peak RSS (ru_maxrss would include the parent's, inherited across exec)
peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"maxrss_kb": peak, "k90": [r["k90"] for r in tables["layer_pca"]]}))
"""


@pytest.mark.benchmark(group="memory")
@pytest.mark.skipif(
    not FULL,
    reason="part of the full sweep (make bench BENCH_FULL=1): four whole tables runs with every K, two at 1e5 "
    "positions, the longest benchmark; test_scaling_per_position's peak_ratio checks flat memory in the default run",
)
def test_peak_memory_flat_in_tokens(benchmark, tmp_path):
    """Peak RSS of the whole tables run at 1e5 positions (streamed) vs 1e3 (held), embedded model."""

    def peak(n: int) -> dict:
        cache = tmp_path / f"{n}-{time.perf_counter_ns()}"  # a fresh cache: the run must compute
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, str(TEXT), str(n), str(cache)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    # Peak RSS varies by up to ~2x between identical runs (allocator arenas of the thread pools):
    # the smaller of two runs estimates the intrinsic peak.
    small = min(peak(1_000)["maxrss_kb"] for _ in range(2))
    large = min(benchmark.pedantic(peak, args=(100_000,), rounds=1)["maxrss_kb"], peak(100_000)["maxrss_kb"])
    benchmark.extra_info.update(peak_kb_1e3=small, peak_kb_1e5=large, ratio=round(large / small, 3))


@pytest.fixture(scope="session")
def run_bfloat16(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The model of `run` loaded in bfloat16 (--dtype bfloat16), same tokens."""
    r = Run(
        replace(run.config, dtype="bfloat16"),
        Store(tmp_path_factory.mktemp("cache")),
        batch_size=BATCH,
        shared=run.shared,
    )
    r.bridge, r.selection
    return r


@pytest.mark.benchmark(group="dtype")
def test_capture_bfloat16(benchmark, run, run_bfloat16):
    """The capture pass (Δφ of all layers, held) in bfloat16 vs the same in float32: what --dtype changes."""
    r = run_bfloat16
    plain = interleaved(
        benchmark,
        lambda: capture_tensors(run.bridge, run.selection, BATCH),
        lambda: capture_tensors(r.bridge, r.selection, BATCH),
        rounds=3,
    )
    record(benchmark, plain, "the same capture in float32")


@pytest.mark.benchmark(group="dtype")
def test_lowrank_sweep_bfloat16(benchmark, run, run_bfloat16, captured):
    """7D's 16 projections in bfloat16 vs float32 (the projection hooks run in the model's dtype)."""
    bases = layer_bases(captured, "delta_phi", True)
    variants = projections(bases, shared_basis(captured, True), lowrank_ks(captured.total.shape[-1], run.config.ks))
    plain = interleaved(
        benchmark,
        lambda: lowrank_nll(run.bridge, run.selection, variants, BATCH),
        lambda: lowrank_nll(run_bfloat16.bridge, run_bfloat16.selection, variants, BATCH),
        rounds=1,
        warmup=0,
    )
    record(benchmark, plain, "the same 7D passes in float32")


@pytest.mark.benchmark(group="warm")
def test_warm_commands(benchmark, gpt2_shaped, tmp_path):
    """Warm `python -m lib tables` (every table cached: no model, no kernel probe) vs `python -c "import
    torch"`; extra_info also holds warm `pytest claims/` over the same cache (collection and imports)."""
    cache = tmp_path / "cache"
    options = ["--model", str(gpt2_shaped), "--dataset", str(TEXT), "--device", DEVICE, "--cache-dir", str(cache)]
    env = {**os.environ, "DPHI_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}  # the fingerprint cache too

    def command(*argv: str) -> Callable[[], None]:
        return lambda: subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, check=True)

    tables = command("-m", "lib", "tables", *options)
    tables()  # cold: fills the cache
    claims = command("-m", "pytest", "claims/", "-q", "-p", "no:cacheprovider", "--claims-xfail", *options)
    plain = interleaved(benchmark, command("-c", "import torch"), tables, rounds=3)
    record(benchmark, plain, 'python -c "import torch"')
    benchmark.extra_info.update(warm_pytest_claims_s=round(fastest(claims, 3), 4))


@pytest.mark.benchmark(group="cold")
def test_cold_command(benchmark, gpt2_shaped, tmp_path):
    """The whole cold `python -m lib tables` (imports, fingerprint, boot, compat, probe, tokenizing, 7A-7E
    with the causes; an empty cache each round) vs benchmarks/plain_script.py: import, HF load,
    tokenize, 17 bare forwards of the same 1000 positions. Target <= 1.0 (issue 35)."""
    rounds: list[Path] = []

    def fresh() -> dict[str, str]:
        rounds.append(tmp_path / f"cache-{len(rounds)}")
        return {**os.environ, "DPHI_CACHE_DIR": str(rounds[-1]), "PYTHONPATH": str(ROOT)}

    def ours() -> None:
        env = fresh()
        options = ["--model", str(gpt2_shaped), "--dataset", str(TEXT), "--device", DEVICE]
        subprocess.run(
            [sys.executable, "-m", "lib", "tables", *options, "--cache-dir", env["DPHI_CACHE_DIR"]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=True,
        )

    def plain() -> None:
        script = ROOT / "benchmarks" / "plain_script.py"
        subprocess.run([sys.executable, str(script), str(gpt2_shaped), str(TEXT)], capture_output=True, check=True)

    plain_s = interleaved(benchmark, plain, ours, rounds=2, warmup=0)
    record(benchmark, plain_s, "benchmarks/plain_script.py: import, HF load, tokenize, 17 bare forwards")
