"""Every front door's --help: `python -m lib` and each of its subcommands, `pytest --help` with the
suite's plugin, from the repository root and from claims/. A help text is data: a literal `%` in it
(the bootstrap's "95% interval") must reach the user as written, not as an argparse format."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from lib.cli import parser
from lib.setup.options import OPTIONS

ROOT = Path(__file__).resolve().parent.parent


def _subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: sub for a in actions for name, sub in a.choices.items()}


def test_python_m_lib_has_every_subcommand_in_its_help():
    subcommands = _subcommands(parser())
    assert {"tables", "claims", "compare"} <= subcommands.keys()
    text = parser().format_help()
    assert all(name in text for name in subcommands)


@pytest.mark.parametrize("name", sorted(_subcommands(parser())))
def test_every_subcommands_help_formats_and_shows_each_percent_as_written(name):
    sub = _subcommands(parser())[name]
    text = " ".join(sub.format_help().split())  # argparse wraps the lines
    if name == "tables":
        for option in OPTIONS:
            assert f"--{option.name}" in text
            words = " ".join(option.help.split()[:6])
            assert words in text, (option.name, words)


@pytest.mark.parametrize("where", [".", "claims"])
def test_pytest_help_with_the_suites_options(where):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        cwd=ROOT / where,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = " ".join(done.stdout.split())
    for option in OPTIONS:
        assert f"--{option.name}" in text
    assert "95% interval" in text  # the bootstrap's help, its percent sign as written
    for flag in ("--claims-xfail", "--claims-json", "--claims-baseline", "--strict-baseline"):
        assert flag in text


@pytest.mark.parametrize("args", [["--help"], ["tables", "--help"], ["claims", "--help"], ["compare", "--help"]])
def test_python_m_lib_help_exits_zero(args):
    done = subprocess.run([sys.executable, "-m", "lib", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: python -m lib")


@pytest.mark.parametrize("flag", ["--fixtures", "--markers", "--collect-only"])
def test_pytest_information_flags_run_offline_on_the_default_model(flag):
    """No test runs under these, so GPT-2 small, which cannot be had here, stops nothing."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "claims/", flag, "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
