"""Runs split over torchrun processes (lib/measure/distributed.py): two gloo processes on the embedded model
give the tables of one process, write the entries a single process reads, and fail cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from lib.measure import distributed
from lib.measure.store import Store
from lib.setup.config import build_config
from lib.tables.run import Run

ROOT = Path(__file__).resolve().parent.parent
N_TOKENS, KS, BATCH = 300, "8,32", 2
"""300 positions = 2 chunks of the embedded model's 256-token context (2 batches: their lengths differ) and
two variants per 7D group give each rank its own share of the capture and of the 7D steps."""
ARGS = [
    "--model",
    "tiny-wikitext",
    "--device",
    "cpu",
    "--n-tokens",
    str(N_TOKENS),
    "--ks",
    KS,
    "--batch-size",
    str(BATCH),
]
"""Floats of an N-process run within 1e-6 of one process (the issue's bound); K compared exactly.
The capture and the 7D sums are combined bitwise exactly, so with one thread on both sides the
JSON is bitwise that of one process (seen); a single process with its default threads differs
by float64 rounding of the table arithmetic (~1e-16 seen)."""
PLANTED = "planted failure on rank 1"


def torchrun(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """python -m torch.distributed.run --standalone --nproc-per-node 2 -m lib tables ARGS args."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "lib",
        "tables",
        *ARGS,
        *args,
    ]
    # a collective that waits more than 2 minutes fails the run instead of hanging the test
    full_env = {**os.environ, "DPHI_DIST_TIMEOUT_S": "120", **(env or {})}
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600)


def config() -> Any:
    return build_config(
        model="tiny-wikitext",
        dataset="wikitext-2-raw-v1",
        n_tokens=N_TOKENS,
        device="cpu",
        numerics="compat",
        positions="all",
        pca="centred",
        ks=KS,
    )


def test_two_processes_give_the_single_process_tables_and_cache(shared_text, tmp_path, monkeypatch, assert_same):
    """2 gloo ranks: the JSON equals one process's tables (K exact, floats within 1e-6), and a later
    single-process run reads the tables and the capture the 2-process run wrote, without computing,
    and so does a second 2-process run."""
    two = torchrun(tmp_path, "--json", str(tmp_path / "two.json"), "--cache-dir", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("## 7A") == 1, "rank 0 alone prints the tables"
    ours = json.loads((tmp_path / "two.json").read_text())

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's ranks (OMP_NUM_THREADS=1), and no oversubscription of 2 cores
    try:
        reference = json.loads(json.dumps(Run(config(), Store(tmp_path / "one"), BATCH).tables))  # as stored
    finally:
        torch.set_num_threads(threads)
    assert_same(ours, {k: reference[k] for k in ours})

    def recompute(*args: object, **kwargs: object) -> None:
        raise AssertionError("recomputed instead of reading the 2-process entry")

    monkeypatch.setattr(Run, "compute_tables", recompute)
    monkeypatch.setattr("lib.tables.run.capture_tensors", recompute)
    later = Run(config(), Store(tmp_path / "two"), BATCH)
    assert_same(json.loads(json.dumps(later.tables)), reference)
    assert later.capture.delta_phi.shape == (6, N_TOKENS, 128)
    # a second 2-process run on that cache: rank 0 reads the entries and sends them to rank 1
    again = torchrun(tmp_path, "--json", str(tmp_path / "again.json"), "--cache-dir", str(tmp_path / "two"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "again.json").read_text()) == ours


def test_a_failing_rank_ends_the_run_without_a_cache_entry(shared_text, tmp_path):
    """Rank 1 raises in its first forward pass: the run exits non-zero with that error, promptly
    (rank 0, waiting in a collective, is stopped by torchrun), and no cache entry or JSON exists."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import lib.measure.capture\n"
        "    def token_nll(*args, **kwargs):\n"
        f"        raise RuntimeError({PLANTED!r})\n"
        "    lib.measure.capture.token_nll = token_nll\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    run = torchrun(tmp_path, "--json", str(tmp_path / "out.json"), "--cache-dir", str(tmp_path / "cache"), env=env)
    assert run.returncode != 0
    assert PLANTED in run.stderr
    # the boot's tokenized text (tokens-*) is a complete entry of its own, written before the passes
    entries = [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]
    assert [e for e in entries if not e.startswith("tokens-")] == [], entries
    assert not (tmp_path / "out.json").exists()


def test_shards_cover_every_step_once(monkeypatch):
    """shard(n) over all ranks is 0 .. n-1 in order, each rank a contiguous block (sizes differ by <= 1)."""
    for world in (1, 2, 3, 8):
        for n in (0, 1, 5, 17):
            blocks = []
            for r in range(world):
                monkeypatch.setattr(distributed, "rank", lambda r=r: r)
                monkeypatch.setattr(distributed, "world_size", lambda w=world: w)
                blocks.append(distributed.shard(n))
            assert [i for b in blocks for i in b] == list(range(n))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def _streamed_rank(rank: int, world: int, init: str, config: Any, out: str) -> None:
    """One rank of test_streamed_statistics_split_over_ranks: capture_stats over gloo, rank 0 saves."""
    import torch.distributed as dist

    from lib.measure.capture import capture_stats

    torch.set_num_threads(1)  # as under torchrun
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        run = Run(config, Store(Path(out).parent / f"cache{rank}"), 2)
        stats = capture_stats(run.bridge, run.selection, 2)
        if rank == 0:
            torch.save(stats.tensors(), out)
    finally:
        dist.destroy_process_group()


def test_streamed_statistics_split_over_ranks(make_model, make_config, text_file, tmp_path):
    """The streamed capture (past STREAM_ABOVE) split over 2 gloo ranks: norms, 7C sample and NLL equal
    one process bit for bit; the moments (float64 sums added in another order) within 1e-12 relative."""
    import torch.multiprocessing as mp

    from lib.measure.capture import capture_stats

    config = make_config(make_model(n_ctx=32), text_file, n_tokens=200)  # 7 chunks, 4 batches of 2
    out = tmp_path / "stats.pt"
    mp.spawn(_streamed_rank, args=(2, f"file://{tmp_path / 'rendezvous'}", config, str(out)), nprocs=2)
    ours = torch.load(out)
    run = Run(config, Store(tmp_path / "one"), 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks
    try:
        one = capture_stats(run.bridge, run.selection, 2).tensors()
    finally:
        torch.set_num_threads(threads)
    for name in ("count", "norms", "sample", "nll"):
        assert torch.equal(ours[name], one[name]), name
    for name in ("total", "outer"):
        torch.testing.assert_close(ours[name], one[name], rtol=1e-12, atol=1e-12 * float(one[name].abs().max()))
