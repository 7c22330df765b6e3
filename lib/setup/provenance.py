"""Where a result came from: library versions, the project's commit, date, device, options.

A claims JSON is a result a user keeps and a later session compares against (DESIGN.md,
"Results over time"), so it carries what produced it, as lm-eval's and pytest-benchmark's
JSON do. The same block heads the Markdown report.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from lib.setup.options import ROOT

LIBRARIES = ("torch", "transformers", "transformer-lens", "numpy")
"""The libraries whose versions decide the numbers (with python)."""


def versions() -> dict[str, str]:
    """python and LIBRARIES -> version ('not installed' where absent)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_state(root: Path = ROOT) -> dict[str, Any]:
    """{'commit': sha, 'dirty': bool} of the checkout at root; commit 'unknown: why' outside git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        # tracked files only: an untracked file is most often an output (a figure, a claims JSON, a
        # report) written into the checkout, and the code a run executes is tracked
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError) as e:
        return {"commit": f"unknown: {type(e).__name__}: {str(e).strip()[:200]}", "dirty": None}
    return {"commit": commit, "dirty": dirty}


def version_line() -> str:
    """`dphi-claims 0.1.0 (commit 1a2b3c4d, modified)`: for --version and the run header."""
    try:
        version = metadata.version("dphi-claims")
    except metadata.PackageNotFoundError:
        version = "not installed"
    state = git_state()
    commit = state["commit"] if str(state["commit"]).startswith("unknown") else state["commit"][:8]
    return f"dphi-claims {version} (commit {commit}{', modified' if state['dirty'] else ''})"


def host_device() -> str:
    """The accelerator this host offers (what --device auto would use), with its name where known."""
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if torch.backends.mps.is_available():
        return f"mps ({platform.machine()})"
    return f"cpu ({platform.machine()}, {_processor()}, {os.cpu_count()} cores)"


def _processor() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo, where platform.processor() is often empty)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        name = ""
    return name or platform.processor() or "unknown processor"


def meta(options: dict[str, Any]) -> dict[str, Any]:
    """The provenance block: versions, git, UTC date, host, device and the session's options."""
    return {
        "versions": versions(),
        "git": git_state(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "device": host_device(),
        "options": options,
    }


def describe(block: dict[str, Any]) -> list[str]:
    """A meta block as short lines, for the Markdown header and `python -m lib compare`."""
    if not block:
        return ["(no provenance: a claims JSON written before provenance was recorded)"]
    v = block.get("versions", {})
    git = block.get("git", {})
    dirty = {True: " (uncommitted changes)", False: "", None: ""}.get(git.get("dirty"), "")
    options = block.get("options", {})
    return [
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"commit: {git.get('commit', 'unknown')}{dirty}",
        f"date: {block.get('date', 'unknown')}; host: {block.get('device', 'unknown')}, {block.get('platform', '')}",
        "options: "
        + " ".join(f"--{k.replace('_', '-')}={val}" for k, val in options.items() if val not in (None, False)),
    ]
