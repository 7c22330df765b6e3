"""Resolve `--device` to a torch device that exists here."""

from __future__ import annotations

from lib.errors import ConfigError
from lib.setup.options import DTYPES

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


def check_dtype(device: str, dtype: str) -> str:
    """--dtype, checked against the resolved device: ConfigError where the device cannot run it."""
    import torch

    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r} is not allowed; allowed: {', '.join(DTYPES)}")
    if device == "cuda" and dtype == "bfloat16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        name = torch.cuda.get_device_name()
        raise ConfigError(
            f"--dtype bfloat16 on {name}: this GPU has no bfloat16 arithmetic (it needs compute capability 8.0, "
            "Ampere, or later); use --dtype float16 or float32"
        )
    if device == "mps" and dtype != "float32":
        try:  # bfloat16 needs macOS 14; float16 works on every MPS device torch supports
            (
                torch.ones(2, 2, dtype=getattr(torch, dtype), device="mps")
                @ torch.ones(2, 2, dtype=getattr(torch, dtype), device="mps")
            ).cpu()
        except (RuntimeError, TypeError) as e:
            raise ConfigError(
                f"--dtype {dtype} is not supported on mps here ({str(e).splitlines()[0]}); use --dtype float16 or float32"
            ) from None
    return dtype
