"""Resolve `--device` to a torch device that exists here."""

from __future__ import annotations

from lib.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str) -> str:
    """`auto` picks cuda, then mps, then cpu; an explicit accelerator must be available."""
    import torch

    if name not in DEVICES:
        raise ConfigError(f"--device {name!r} is not a device; allowed: {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda" and not cuda:
        raise ConfigError("--device 'cuda' was asked for but CUDA is not available here; use --device cpu or auto")
    if name == "mps" and not mps:
        raise ConfigError(
            "--device 'mps' was asked for but MPS is not available here (Apple Silicon with a "
            "torch build that has MPS); use --device cpu or auto"
        )
    return name
