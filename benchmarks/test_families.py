"""Cost per model family: the suite's passes against the bare Hugging Face forward of the same model.

    make bench                                     # with the other benchmarks
    DPHI_BENCH_SMALL=1 pytest benchmarks/test_families.py   # small shapes: checks that they run

Families (random init from a config, the embedded model's tokenizer, WikiText-2 test):
GPT-2 small's shape (12 layers, d_model 768, vocabulary 50257), Pythia-160m's (GPT-NeoX,
12 x 768, rotary on 25% of each head) and a Llama of the same size (12 x 768, grouped KV,
vocabulary 4096). Each benchmark stores the plain alternative and the ratio in `extra_info`
(see test_pipeline.py): capture of Δφ, Δφ_attn, Δφ_ffn vs the bare forward of the same chunks
(target ≤ 1.15), and the whole 7A-7E from nothing (model loaded) vs the bare forwards it needs,
one per sequence (target ≤ 1.3). Options as the defaults: --attention sdpa (the probe decides
per family), --batch-size auto.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.test_pipeline import FULL, TEXT, interleaved, record
from lib.measure.capture import capture_tensors
from lib.measure.lowrank import Projection, lowrank_nll
from lib.measure.store import Store
from lib.setup.config import build_config, check_batch_size
from lib.setup.model_source import EMBEDDED
from lib.tables.core import lowrank_ks
from lib.tables.run import Run

SMALL = os.environ.get("DPHI_BENCH_SMALL", "") not in ("", "0")
N_LAYER, D_MODEL, N_HEAD, N_CTX = (2, 128, 4, 256) if SMALL else (12, 768, 12, 1024)
N_TOKENS = 200 if SMALL else 1000
"""Positions: one chunk within the context, as the write-up's run."""


def _config(family: str) -> Any:
    import transformers as t

    common = dict(bos_token_id=0, eos_token_id=0)
    if family == "gpt2":
        return t.GPT2Config(n_layer=N_LAYER, n_embd=D_MODEL, n_head=N_HEAD, n_positions=N_CTX, **common)
    if family == "gpt_neox":
        return t.GPTNeoXConfig(
            num_hidden_layers=N_LAYER,
            hidden_size=D_MODEL,
            num_attention_heads=N_HEAD,
            intermediate_size=4 * D_MODEL,
            max_position_embeddings=N_CTX,
            rotary_pct=0.25,
            vocab_size=50304,
            **common,
        )
    return t.LlamaConfig(
        num_hidden_layers=N_LAYER,
        hidden_size=D_MODEL,
        num_attention_heads=N_HEAD,
        num_key_value_heads=N_HEAD // 4,
        intermediate_size=8 * D_MODEL // 3,
        max_position_embeddings=N_CTX,
        vocab_size=4096,
        **common,
    )


FAMILIES = ("gpt2", "gpt_neox", "llama")
# About 10 minutes on 2 cores (each family's cold tables are 17 bare forwards of a 12 x 768 model,
# twice): part of the full sweep, so that a default `make bench` stays within about 10 minutes
pytestmark = pytest.mark.skipif(not FULL, reason="model families: part of the full sweep (make bench BENCH_FULL=1)")


class Family:
    """One family's saved model, its Run (model loaded) and the bare HF forward of the run's chunks."""

    def __init__(self, family: str, directory: Path, cache: Path) -> None:
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(_config(family)).save_pretrained(directory)
        for name in ("tokenizer.json", "tokenizer_config.json"):  # ids < 4096: valid in every vocabulary
            shutil.copy(EMBEDDED["tiny-wikitext"] / name, directory)
        config = build_config(
            model=str(directory),
            dataset=str(TEXT),
            n_tokens=N_TOKENS,
            device="cpu",
            numerics="compat",
            positions="all",
            pca="centred",
        )
        self.batch_size = check_batch_size("auto", config.device)
        self.run = Run(config, Store(cache), batch_size=self.batch_size)
        self.run.bridge, self.run.selection  # model loading aside
        self.hf = AutoModelForCausalLM.from_pretrained(directory).eval()  # default attention (sdpa)
        self.forward(1)  # warm-up

    def forward(self, passes: int) -> None:
        """`passes` bare HF forwards of each chunk, one sequence each."""
        with torch.inference_mode():
            for _ in range(passes):
                for chunk in self.run.selection.chunks:
                    self.hf(chunk[None])

    def passes_of_tables(self) -> int:
        """Forward passes 7A-7E need per chunk: 1 clean + one per 7D variant (individual and shared)."""
        return 1 + 2 * len(lowrank_ks(D_MODEL, self.run.config.ks))


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Family:
    if not TEXT.is_file():
        pytest.skip(f"WikiText-2 test text not found at {TEXT}")
    return Family(request.param, tmp_path_factory.mktemp(request.param), tmp_path_factory.mktemp("cache"))


@pytest.mark.benchmark(group="families")
def test_family_capture(benchmark, family):
    """Capture (Δφ, Δφ_attn, Δφ_ffn, baseline NLL) vs the bare HF forward of the same chunks."""
    run = family.run
    plain = interleaved(
        benchmark,
        lambda: family.forward(1),
        lambda: capture_tensors(run.bridge, run.selection, family.batch_size, attention=run.config.attention),
        rounds=3,
    )
    record(benchmark, plain, "bare HF forward, default attention")
    from lib.measure.kernels import decide

    benchmark.extra_info["kernel"] = decide(run.bridge, run.config.attention, announce=False).kernel


@pytest.mark.benchmark(group="families")
def test_family_tables_cold(benchmark, family, tmp_path):
    """7A-7E from nothing (model loaded) vs the bare HF forwards it needs, one sequence per pass."""

    def cold() -> dict:
        fresh = Run(family.run.config, Store(tmp_path / str(time.perf_counter_ns())), family.batch_size)
        fresh.bridge, fresh.selection = family.run.bridge, family.run.selection
        return fresh.tables

    passes = family.passes_of_tables()
    plain = interleaved(benchmark, lambda: family.forward(passes), cold, rounds=1, warmup=0)
    record(benchmark, plain, f"bare HF forwards: {passes} x 1 sequence")


@pytest.mark.benchmark(group="families")
@pytest.mark.parametrize("batch_size", [1, 8])
def test_batch_size_of_the_7d_passes(benchmark, batch_size, tmp_path_factory):
    """GPT-2 small's shape: 8 projected passes as 8 x 1 sequence or 1 x 8 (--batch-size auto's choice on cpu)."""
    if not TEXT.is_file():
        pytest.skip(f"WikiText-2 test text not found at {TEXT}")
    fam = _gpt2_family(tmp_path_factory)
    d = D_MODEL
    variants = [Projection(torch.zeros(N_LAYER, d), torch.eye(d).expand(N_LAYER, d, d), k) for k in (8, 16, 32, 64) * 2]
    run = fam.run
    plain = interleaved(
        benchmark,
        lambda: fam.forward(len(variants)),
        lambda: lowrank_nll(run.bridge, run.selection, variants, batch_size, attention=run.config.attention),
        rounds=1,
        warmup=0,
    )
    record(benchmark, plain, f"bare HF forwards: {len(variants)} x 1 sequence")


_made: dict[str, Family] = {}


def _gpt2_family(factory: pytest.TempPathFactory) -> Family:
    if "gpt2" not in _made:
        _made["gpt2"] = Family("gpt2", factory.mktemp("gpt2-batch"), factory.mktemp("cache"))
    return _made["gpt2"]
