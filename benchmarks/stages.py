"""Where a cold `python -m lib tables` spends its time, stage by stage (cProfile, cumulative).

    python benchmarks/stages.py MODEL_DIR TEXT_FILE [CACHE_DIR]

Runs the command in this process under cProfile with an empty cache and prints each stage's
cumulative seconds (cProfile inflates Python-heavy stages; the ratios between stages hold). The
imports are timed apart, before the profile starts. docs/benchmarks.md has a table it printed.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time

STAGES = (
    ("model fingerprint", "model_source.py", "_fingerprint"),
    ("load_model (boot, compat, probe)", "models.py", "load_model"),
    ("bridge boot (HF load)", "transformers/source.py", "boot"),
    ("compat processing", "transformer_bridge.py", "enable_compatibility_mode"),
    ("kernel probe (2 passes)", "kernels.py", "probe"),
    ("tokenize", "corpus.py", "tokenize"),
    ("capture (1 clean pass)", "capture.py", "capture"),
    ("projected passes", "lowrank.py", "lowrank_nll"),
    ("  of which the fused attention", "kernels.py", "_sdpa_reconstruct"),
    ("  of which the 7D hooks", "lowrank.py", "post"),
    ("  of which the NLL", "capture.py", "token_nll"),
    ("eigendecompositions", "spectra.py", "pca"),
    ("the causes' readout directions", "causes.py", "unembedding_directions"),
    ("7C reconstruction", "spectra.py", "reconstruction_means"),
)


def main(model_dir: str, text_file: str, cache: str | None = None) -> None:
    start = time.perf_counter()
    import torch  # noqa: F401
    import transformer_lens.model_bridge  # noqa: F401

    from lib.cli import main as cli

    imports = time.perf_counter() - start
    cache = cache or tempfile.mkdtemp(prefix="dphi-stages-")
    argv = ["tables", "--model", model_dir, "--dataset", text_file, "--device", "cpu", "--cache-dir", cache]
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.runcall(cli, argv)
    total = time.perf_counter() - start
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    print(f"{'imports (torch, transformer_lens; not profiled)':50s} {imports:7.2f} s")
    print(f"{'the command, profiled':50s} {total:7.2f} s")
    for label, file, function in STAGES:
        found = [(v[3], v[1]) for (f, _, name), v in stats.items() if f.endswith(file) and name == function]
        cumulative = max((c for c, _ in found), default=0.0)  # the outermost entry of a recursive one
        calls = sum(n for _, n in found)
        print(f"{label:50s} {cumulative:7.2f} s  ({calls} calls)")


if __name__ == "__main__":
    main(*sys.argv[1:4])
