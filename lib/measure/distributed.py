"""Runs split over processes launched by torchrun (`torch.distributed`): every rank runs the
same program (SPMD) on a contiguous share of the forward passes, and the results are combined
exactly so that every rank holds the single-process tables.

- Launch: torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; `process_group` initialises gloo on
  the CPU, or gloo for CPU tensors plus nccl for CUDA tensors with one GPU per rank
  (cuda:LOCAL_RANK). Without those variables nothing is initialised and every helper is the
  identity of a single process.
- Split: `shard(n)` is this rank's contiguous block of n steps (batches of the capture,
  (variant, chunk) steps of 7D).
- Combine: each rank writes its steps into a full-size zero tensor and `sum_` all-reduces it;
  every element has one non-zero contribution, so the sum is exact (x + 0 = x) and equals the
  single-process tensor bit for bit. Only the streamed moments (sums over every position) are
  added in another order than in one process (float64 rounding, ~1e-16 relative).
- Store: rank 0 alone reads and writes the cache (`SharedStore`), under the single-process
  key and file lock, and broadcasts a hit to the other ranks; on a miss all ranks compute
  together and rank 0 writes the entry once the whole result is there.
- Failure: a rank that raises exits; torchrun then stops the other ranks (they may be waiting
  in a collective) and exits non-zero. An entry is written only after its compute returned,
  through a temporary file renamed into place, so a failed run leaves none behind. A rank
  that hangs without failing is ended by the collective timeout (TIMEOUT_S).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from lib.measure.store import Store

TIMEOUT_S = float(os.environ.get("DPHI_DIST_TIMEOUT_S", 1800))
"""Seconds a collective waits for the other ranks before the run fails ($DPHI_DIST_TIMEOUT_S)."""


def launched() -> bool:
    """Whether this process was started by torchrun (or torch.distributed.run)."""
    return all(v in os.environ for v in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_world_size() -> int:
    """Processes of this run on this machine (torchrun's LOCAL_WORLD_SIZE; 1 alone)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if dist.is_initialized() else 1


def active() -> bool:
    """More than one process shares the run."""
    return world_size() > 1


def is_writer() -> bool:
    """Rank 0 prints, writes the cache and the output files; the others only compute. Known before the
    process group exists too (torchrun's RANK), so a front end decides it once, at start-up."""
    if not dist.is_initialized() and launched():
        return os.environ["RANK"] == "0"
    return rank() == 0


@contextmanager
def process_group(device: str) -> Iterator[None]:
    """Initialise the process group when launched by torchrun (nothing otherwise); destroy it on exit.

    device: the run's resolved device (cpu, cuda, mps). CUDA ranks take one GPU each.
    """
    if not launched() or dist.is_initialized():
        yield
        return
    backend = "gloo"
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))  # "cuda" now means this rank's GPU
        backend = "cpu:gloo,cuda:nccl"  # CPU tensors (float64 moments, NLL) over gloo, CUDA ones over nccl
    dist.init_process_group(backend, timeout=timedelta(seconds=TIMEOUT_S))
    try:
        yield
    finally:
        dist.destroy_process_group()


def shard(n: int) -> range:
    """This rank's contiguous block of steps 0 .. n-1 (blocks differ in size by at most one)."""
    r, w = rank(), world_size()
    return range(n * r // w, n * (r + 1) // w)


def sum_(t: torch.Tensor) -> torch.Tensor:
    """All-reduce (sum) t in place across ranks; t itself when alone."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: Any) -> Any:
    """Rank 0's obj (picklable) on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_tensors(tensors: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Rank 0's dict of CPU tensors on every rank (others pass None)."""
    layout = broadcast_object({k: (v.shape, v.dtype) for k, v in tensors.items()} if tensors is not None else None)
    out = tensors if tensors is not None else {k: torch.empty(s, dtype=d) for k, (s, d) in layout.items()}
    for k in sorted(out):
        t = out[k].contiguous()
        dist.broadcast(t, src=0)
        out[k] = t
    return out


class SharedStore(Store):
    """A Store that only rank 0 reads and writes; the other ranks follow its decision.

    get_or_compute(_json) must be called by every rank in the same order (as every rank runs
    the same program). On a hit rank 0 broadcasts the entry; on a miss every rank runs
    `compute` (which does its collectives) and rank 0 saves the result under the file lock it
    has held since the lookup.
    """

    def get_or_compute(
        self, name: str, key: str, meta: dict[str, Any], compute: Callable[[], dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        if not active():
            return super().get_or_compute(name, key, meta, compute)
        return _rank0_decides(
            lambda c: Store.get_or_compute(self, name, key, meta, c),
            compute,
            broadcast_tensors,
            lambda: broadcast_tensors(None),
        )

    def get_or_compute_json(
        self, name: str, key: str, meta: dict[str, Any], compute: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        if not active():
            return super().get_or_compute_json(name, key, meta, compute)
        return _rank0_decides(
            lambda c: Store.get_or_compute_json(self, name, key, meta, c),
            compute,
            broadcast_object,
            lambda: broadcast_object(None),
        )


def _rank0_decides(
    lookup: Callable[[Callable[[], Any]], Any],
    compute: Callable[[], Any],
    send: Callable[[Any], Any],
    receive: Callable[[], Any],
) -> Any:
    """Rank 0 looks the entry up (lookup(compute) reads it, or computes and writes it) and tells
    the others whether it was there: on a hit it sends the entry, on a miss every rank computes."""
    if not is_writer():
        return receive() if broadcast_object(None) else compute()
    missed = _announce_miss(compute)
    value = lookup(missed)
    if not missed.called:
        broadcast_object(True)
        send(value)
    return value


class _announce_miss:  # noqa: N801 - used as a function
    """compute, preceded by telling the other ranks that the entry was missing (rank 0)."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute, self.called = compute, False

    def __call__(self) -> Any:
        self.called = True
        broadcast_object(False)
        return self.compute()
