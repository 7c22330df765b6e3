"""Scaling: the embedded model from 10^3 positions to the whole WikiText-2 test text, and torchrun.

    make bench                                               # 10^3 to 3·10^4 positions, one process
    make bench BENCH_FULL=1                                  # up to the whole text, and two processes (long)
    DPHI_SCALING_SIZES=1000,3000 .venv/bin/pytest benchmarks/test_scaling.py   # a quick check

test_scaling_per_position: the whole tables run (cold cache, model loaded first) at each size in a
fresh process; time per position and peak RSS against positions, written to reports/scaling.json
and drawn to reports/scaling.png. Both should be flat: the capture streams past STREAM_ABOVE, and
the 7D passes are as many per chunk at every size.

test_two_processes_wall_time: `torchrun --nproc-per-node 2 -m lib tables` against `python -m lib
tables` on the same run, cold, interleaved, at 3000 and 20,000 positions; the ratio is the
2-process wall time over the single one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEXT = ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
FULL = os.environ.get("DPHI_BENCH_FULL", "") not in ("", "0")
SIZES = os.environ.get("DPHI_SCALING_SIZES", "1000,3000,10000,30000,100000,all" if FULL else "1000,3000,10000,30000")
"""Positions per run; `all` is the whole text (~3.7e5 positions on the embedded model's tokenizer). Without
$DPHI_BENCH_FULL up to 3·10^4, past the streamed path's threshold (20,000), so both paths are timed."""
KS = "8"
"""7D with K = 8 and d_model only: the passes per chunk stay few, so the run is dominated by what scales."""

SCALING_SCRIPT = """
import json, re, sys, time
from lib.setup.config import build_config
from lib.setup.corpus import load_text, tokenize
from lib.tables.run import Run
from lib.measure.store import Store
text, size, cache, ks = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def config(n):
    return build_config(model="tiny-wikitext", dataset=text, n_tokens=n, device="cpu", numerics="compat",
                        positions="all", pca="centred", ks=ks)
if size == "all":  # every position of the text: its tokens plus one BOS per chunk
    bridge = Run(config(1000), Store(cache)).bridge
    ids, n_ctx = tokenize(bridge.tokenizer, load_text(text)), bridge.cfg.n_ctx
    n = len(ids) + -(-len(ids) // (n_ctx - 1))
else:
    n = int(size)
run = Run(config(n), Store(cache))
run.bridge, run.selection  # model loading and tokenisation aside
start = time.perf_counter()
tables = run.tables
seconds = time.perf_counter() - start
# VmHWM: this process's peak RSS (ru_maxrss would include the parent's, inherited across exec)
peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"positions": n, "seconds": seconds, "peak_kb": peak, "streamed": n > 20000}))
"""


def _one_size(size: str, cache: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", SCALING_SCRIPT, str(TEXT), size, str(cache), KS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["seconds_per_1k"] = 1000 * row["seconds"] / row["positions"]
    row["load_average"] = os.getloadavg()[0]
    return row


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Time per 1000 positions and peak RSS against positions (log x), held and streamed marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    x = [r["positions"] for r in rows]
    for ax, key, label in ((a, "seconds_per_1k", "seconds per 1000 positions"), (b, "peak_kb", "peak RSS (MiB)")):
        y = [r[key] / (1024 if key == "peak_kb" else 1) for r in rows]
        ax.plot(x, y, "o-")
        for xi, yi, r in zip(x, y, rows):
            ax.annotate("streamed" if r["streamed"] else "held", (xi, yi), fontsize=7)
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("positions")
        ax.set_ylabel(label)
    fig.suptitle("tables 7A-7E (Run.tables), embedded model, cold cache, --ks " + KS)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@pytest.mark.benchmark(group="scaling")
def test_scaling_per_position(benchmark, tmp_path, capsys):
    """Time per position and peak RSS of the whole tables run from 1e3 positions to the whole text."""
    if not TEXT.is_file():
        pytest.skip(f"WikiText-2 test text not found at {TEXT}")
    sizes = SIZES.split(",")

    def run_all() -> list[dict[str, Any]]:
        rows = []
        for size in sizes:
            rows.append(_one_size(size, tmp_path / f"{size}-{time.perf_counter_ns()}"))
            with capsys.disabled():  # a line per size as it ends: the whole sweep takes minutes
                print(f"\n  scaling: {rows[-1]['positions']:,} positions, {rows[-1]['seconds']:.1f} s", flush=True)
        return rows

    rows = benchmark.pedantic(run_all, rounds=1)
    (ROOT / "reports").mkdir(exist_ok=True)
    (ROOT / "reports" / "scaling.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, ROOT / "reports" / "scaling.png")
    per = [r["seconds_per_1k"] for r in rows]
    peaks = [r["peak_kb"] for r in rows]
    benchmark.extra_info.update(
        rows=rows,
        time_ratio=round(per[-1] / per[0], 3),
        peak_ratio=round(peaks[-1] / peaks[0], 3),
    )


@pytest.mark.benchmark(group="scaling")
@pytest.mark.skipif(not FULL, reason="two processes: part of the full sweep (make bench BENCH_FULL=1)")
@pytest.mark.parametrize("positions", [3000, 20000])
def test_two_processes_wall_time(benchmark, tmp_path, positions):
    """Wall time of `torchrun --nproc-per-node 2 -m lib tables` (gloo) over `python -m lib tables`, cold.

    3000 positions: torchrun's own start (its launcher imports torch, then the rendezvous, ~1.6 s
    here) weighs; 20,000 (the largest held run): the forward passes dominate. extra_info's
    torchrun_overhead_s is that start: two ranks that only import torch and meet, less a bare
    `import torch`.
    """
    if not TEXT.is_file():
        pytest.skip(f"WikiText-2 test text not found at {TEXT}")
    args = [
        "-m",
        "lib",
        "tables",
        "--model",
        "tiny-wikitext",
        "--device",
        "cpu",
        "--dataset",
        str(TEXT),
        "--n-tokens",
        str(positions),
    ]
    single = [sys.executable, *args]
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]

    def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
        cache = tmp_path / str(time.perf_counter_ns())  # cold: the run must compute
        return wall_time([*cmd, "--cache-dir", str(cache)], env)

    # torchrun gives each rank OMP_NUM_THREADS=1: the single process is timed with its default threads
    # (what a user runs) and with one thread (the same per-process setting), before each 2-process round
    singles: list[float] = []
    single_one_thread: list[float] = []

    def setup() -> None:
        singles.append(timed(single))
        single_one_thread.append(timed(single, {"OMP_NUM_THREADS": "1"}))

    benchmark.pedantic(lambda: timed(two), setup=setup, rounds=2, warmup_rounds=0)
    ours = benchmark.stats.stats.min
    # torchrun's own cost: two ranks that import torch, meet and leave, against one bare `import torch`
    meet = tmp_path / "meet.py"
    meet.write_text(
        "import torch.distributed as dist\ndist.init_process_group('gloo')\ndist.barrier()\n"
        "dist.destroy_process_group()\n"
    )
    launch = min(
        wall_time([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(meet)])
        for _ in range(2)
    )
    import_torch = min(wall_time([sys.executable, "-c", "import torch"]) for _ in range(2))
    benchmark.extra_info.update(
        plain=f"python -m lib tables, one process, {positions} positions",
        plain_s=round(min(singles), 3),
        ours_s=round(ours, 3),
        ratio=round(ours / min(singles), 3),
        single_one_thread_s=round(min(single_one_thread), 3),
        torchrun_overhead_s=round(launch - import_torch, 3),
        load_average=os.getloadavg()[0],
    )


def wall_time(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one run of cmd (checked), with env added to this process's environment."""
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - start
