"""The frozen run config: a run's identity and the one cache key (STYLE.md 2)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from lib.setup.corpus import KNOWN_TEXTS, resolve_dataset
from lib.setup.device import check_dtype, resolve_device
from lib.setup.model_source import resolve_model
from lib.setup.options import k_list, option, validate, whole_or_auto

DEFAULT_KS = k_list("ks", option("ks").default)
"""7D's K list as the option table gives it (d_model is added to it)."""
CAPTURE_INDEPENDENT = ("pca", "ks")
"""Fields that change the tables but not the captured Δφ."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a run's numbers depend on; its hash names the cache entries."""

    model: str
    """Hub name or absolute path of a local Hugging Face directory."""
    model_revision: str
    """Fingerprint of the weights: Hub commit, sha256 of local files, or 'unavailable: <reason>'."""
    dataset: str
    """`wikitext-2-raw-v1` (through `datasets`) or the absolute path of a text file."""
    dataset_revision: str
    """sha256 of the text file, the `datasets` config name, or 'unavailable: <reason>'."""
    n_tokens: int
    """Number of token positions collected (write-up: 1000)."""
    device: str
    """Resolved torch device: cpu, cuda or mps. Δφ differs slightly per device."""
    dtype: str
    """Dtype of the weights and the forward passes (hooks, projections): float32 (the write-up),
    bfloat16 or float16. Statistics are float64 on the CPU whatever it is (docs/dtype.md)."""
    numerics: str
    """compat (HookedTransformer-equivalent weight processing) or raw (Hugging Face)."""
    positions: str
    """all: every position counts, BOS included; text: BOS positions left out."""
    pca: str
    """centred (default) or uncentred PCA."""
    attention: str = "sdpa"
    """Attention kernel asked for: eager (TransformerBridge's own), or sdpa: fused on the layers
    where the load-time probe (lib/measure/kernels.py) shows it equals the bridge's own attention on this
    model to float rounding (1e-5), the bridge's own elsewhere. Which one ran is decided by
    the model's weights and the device, both in this config, so an entry keyed by it always
    holds the same numbers; either way they are the eager numbers to 1e-5."""
    ks: tuple[int, ...] = DEFAULT_KS
    """7D's K list (d_model is added to it)."""
    window: int = 0
    """Token window (lib/setup/matrix.py): 0 is the text's start, as the write-up; w > 0 follows windows 0 .. w-1."""

    def identity(self, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
        """The fields that decide the numbers (minus `exclude`).

        A model or text known by its content hash is identified by that hash alone, so a
        clone in another directory shares cache entries and snapshots.
        """
        data = asdict(self)
        for name in ("model", "dataset"):
            if data[f"{name}_revision"].startswith("sha256:"):
                data.pop(name)
        if not data["window"]:
            data.pop("window")  # window 0 is the single-window run: its keys predate windows
        return json.loads(json.dumps({k: v for k, v in data.items() if k not in exclude}))  # as stored

    def key(self, *, exclude: tuple[str, ...] = ()) -> str:
        """16 hex digits of sha256 over the identity."""
        return hashlib.sha256(json.dumps(self.identity(exclude=exclude), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def capture_key(self) -> str:
        """Key of the captured Δφ: the PCA convention and the K list do not change the capture."""
        return self.key(exclude=CAPTURE_INDEPENDENT)

    @property
    def run_id(self) -> str:
        """Readable, unique name of the run: model, text, positions, device, conventions, key."""
        model = Path(self.model).name if self.model_revision.startswith("sha256:") else self.model.replace("/", "_")
        text = KNOWN_TEXTS.get(self.dataset_revision) or Path(self.dataset).stem
        window = f"-w{self.window}" if self.window else ""
        device = (
            self.device if self.dtype == "float32" else f"{self.device}-{self.dtype}"
        )  # float32 ids predate --dtype
        return f"{model}-{text}-n{self.n_tokens}-{device}-{self.numerics}-{self.positions}-{self.pca}{window}-{self.key()[:8]}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def unavailable(self) -> str | None:
        """Why the model or dataset cannot be had here, or None."""
        for rev in (self.model_revision, self.dataset_revision):
            if rev.startswith("unavailable: "):
                return rev.removeprefix("unavailable: ")
        return None

    def describe(self) -> str:
        """One line for the pytest report header and the command line."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in shown.items():
            if isinstance(v, str) and v.startswith("unavailable: "):
                shown[k] = "unavailable"
        return " ".join(f"{k}={v}" for k, v in shown.items())


def build_config(
    *,
    model: str,
    dataset: str,
    n_tokens: int,
    device: str,
    numerics: str,
    positions: str,
    pca: str,
    attention: str = "sdpa",
    ks: str | tuple[int, ...] = DEFAULT_KS,
    dtype: str = "float32",
) -> RunConfig:
    """Validate the user's values (cheap checks first) and resolve them into a RunConfig.

    Raises ConfigError naming the bad value and what is allowed. A model or dataset that
    cannot be had here (offline) does not raise: its revision says 'unavailable: why'.
    """
    given = validate(
        {"n_tokens": n_tokens, "numerics": numerics, "positions": positions, "pca": pca, "attention": attention}
        | {"dtype": dtype, "ks": ks}
    )
    resolved_device = resolve_device(device)
    check_dtype(resolved_device, dtype)
    model_path, model_revision = resolve_model(model)
    dataset_path, dataset_revision = resolve_dataset(dataset)
    return RunConfig(
        model=model_path,
        model_revision=model_revision,
        dataset=dataset_path,
        dataset_revision=dataset_revision,
        n_tokens=n_tokens,
        device=resolved_device,
        dtype=dtype,
        numerics=numerics,
        positions=positions,
        pca=pca,
        attention=attention,
        ks=given["ks"],
    )


AUTO_BATCH_SIZE = {"cpu": 1, "cuda": 8, "mps": 4}
"""--batch-size auto per device. cpu: one sequence per pass; on the GPT-2-small shape 8 sequences of
1000 tokens took 12.2 s as 8 passes and 14.5 s as one pass of 8 (docs/benchmarks.md), and
the logits stay 8x smaller. cuda, mps: not measured here (no accelerator);
8 (the former default, which fits GPT-2 small's 8 x 1024 x 50257 float32 logits, 1.6 GB, on any
current CUDA card) and 4 (mps shares memory with the system), chosen conservatively."""


def check_batch_size(batch_size: int | str, device: str = "cpu") -> int:
    """--batch-size (its option's constraint: a whole number of at least 1, or auto), resolved: auto is
    AUTO_BATCH_SIZE for the resolved device.

    Never changes a number: batches hold whole chunks (or whole projections) of equal length
    without padding, so each sequence's pass is the same computation.
    """
    value = whole_or_auto("batch-size", batch_size)
    return AUTO_BATCH_SIZE.get(device, 1) if value == "auto" else int(value)
