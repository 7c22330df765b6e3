"""Small GPT-2-architecture models built from a config (random init, no download)."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import settings

from lib.measure.store import Store
from lib.setup.config import RunConfig, build_config

# Wall-clock deadlines flake on a loaded 2-core machine; example counts keep the run short.
settings.register_profile("dphi", deadline=None, max_examples=40)
settings.load_profile("dphi")

ROOT = Path(__file__).resolve().parent.parent
SHARED_TEXT = ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
TOKENIZER_TEXT = (
    "The quick brown fox jumps over the lazy dog. Residual streams carry what each layer writes. "
    "Principal components of the writes tell how many directions a layer uses. " * 20
)

ModelFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer trained here (boot_transformers needs a loadable one)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([TOKENIZER_TEXT], vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    out = tmp_path_factory.mktemp("tokenizer")
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def save_model(tokenizer_dir: Path) -> Callable[[Any, Path], Path]:
    """save_model(model, out) -> out: the model saved there (save_pretrained) with the test tokenizer."""

    def save(model: Any, out: Path) -> Path:
        model.save_pretrained(out)
        for f in tokenizer_dir.iterdir():
            shutil.copy(f, out)
        return out

    return save


@pytest.fixture(scope="session")
def make_model(tmp_path_factory: pytest.TempPathFactory, save_model: Callable[[Any, Path], Path]) -> ModelFactory:
    """make_model(n_layer=2, d_model=32, n_head=4, n_ctx=64, seed=0, edit=None) -> model dir.

    `edit(model)` may change the weights before saving (hand-built models).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    made: dict[tuple, Path] = {}

    def make(
        n_layer: int = 2,
        d_model: int = 32,
        n_head: int = 4,
        n_ctx: int = 64,
        seed: int = 0,
        edit: Callable[[GPT2LMHeadModel], None] | None = None,
    ) -> Path:
        key = (n_layer, d_model, n_head, n_ctx, seed, edit)
        if key not in made:
            torch.manual_seed(seed)
            config = GPT2Config(
                vocab_size=300,
                n_positions=n_ctx,
                n_embd=d_model,
                n_layer=n_layer,
                n_head=n_head,
                bos_token_id=0,
                eos_token_id=0,
            )
            model = GPT2LMHeadModel(config).eval()
            if edit is not None:
                with torch.no_grad():
                    edit(model)
            made[key] = save_model(model, tmp_path_factory.mktemp("model"))
        return made[key]

    return make


@pytest.fixture(scope="session")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short text of our own (the WikiText-2 tests use SHARED_TEXT)."""
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text(TOKENIZER_TEXT * 5, encoding="utf-8")
    return path


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "cache")


@pytest.fixture(scope="session")
def make_config() -> Callable[..., RunConfig]:
    """make_config(model_dir, text, **overrides): a RunConfig with small test defaults."""

    def make(model_dir: Path, text: Path, **overrides: object) -> RunConfig:
        values = dict(
            model=str(model_dir),
            dataset=str(text),
            n_tokens=50,
            device="cpu",
            numerics="raw",
            positions="all",
            pca="centred",
        )
        values.update(overrides)
        return build_config(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def shared_text() -> Path:
    if not SHARED_TEXT.is_file():
        pytest.skip(f"WikiText-2 test text not found at {SHARED_TEXT} (see ../shared/data/README.md)")
    return SHARED_TEXT


@pytest.fixture(scope="session")
def embedded_config(shared_text: Path) -> Callable[..., RunConfig]:
    """embedded_config(**overrides): the embedded model on the WikiText-2 test text, 1000 positions,
    the write-up's conventions (compat, all positions, centred) on the CPU."""
    from lib.setup.model_source import EMBEDDED

    if not (EMBEDDED["tiny-wikitext"] / "config.json").exists():
        pytest.skip("embedded model not trained yet (python models/train_tiny_wikitext.py)")
    defaults = dict(n_tokens=1000, device="cpu", numerics="compat", positions="all", pca="centred")

    def make(**overrides: Any) -> RunConfig:
        return build_config(model="tiny-wikitext", dataset=str(shared_text), **{**defaults, **overrides})

    return make


SAME_REL = 1e-6
"""Tables under another speed option (batch size, process count, streamed statistics): floats within
1e-6 relative (float32 passes in other shapes sum in another order, ~1e-7), K and every int exact."""


def _assert_same(ours: Any, reference: Any, rel: float = SAME_REL, abs_: float = 1e-12, where: str = "") -> None:
    if isinstance(reference, dict):
        assert ours.keys() == reference.keys(), where
        for k in reference:
            _assert_same(ours[k], reference[k], rel, abs_, f"{where}.{k}")
    elif isinstance(reference, list):
        assert len(ours) == len(reference), where
        for i, (a, b) in enumerate(zip(ours, reference)):
            _assert_same(a, b, rel, abs_, f"{where}[{i}]")
    elif isinstance(reference, float):
        both_nan = math.isnan(reference) and isinstance(ours, float) and math.isnan(ours)  # undefined in both
        assert both_nan or (isinstance(ours, float) and math.isclose(ours, reference, rel_tol=rel, abs_tol=abs_)), (
            where,
            ours,
            reference,
        )
    else:
        assert ours == reference, (where, ours, reference)


@pytest.fixture(scope="session")
def assert_same() -> Callable[..., None]:
    """assert_same(ours, reference, rel=SAME_REL, abs_=1e-12): the same structure, ints (K) and
    strings equal, floats within rel (or abs_), NaN where the other is NaN."""
    return _assert_same
