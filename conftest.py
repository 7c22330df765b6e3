"""The suite's pytest plugin: one option group, one config fixture, the cached run data.

Options -> RunConfig (resolved once, in pytest_configure, so bad values stop the run
before any heavy work) -> `dphi_run` (model, tokens, Δφ and tables, lazily, cached on
disk per config and device). Tests never read `request.config` directly.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from lib.errors import ConfigError, ResourceUnavailable
from lib.options import OPTIONS, cache_dir

if TYPE_CHECKING:
    from lib.config import RunConfig
    from lib.experiment import Run

RUN_CONFIG = pytest.StashKey["RunConfig"]()
CLAIM_ROWS: dict[str, Any] = {}
"""nodeid -> lib.report.Row of every claim test that ran, for the summary."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dphi", "Experiment 7 (residual-stream Δφ PCA) run options")
    for option in OPTIONS:
        group.addoption(
            f"--{option.name}", dest=option.dest, default=option.default, type=option.type,
            choices=option.choices, help=f"{option.help} (default: {option.default})",
        )
    group.addoption(
        "--claims-xfail", dest="dphi_claims_xfail", action="store_true",
        help="report a claim that does not hold for this model as xfail with its values, not a failure",
    )
    group.addoption("--claims-report", dest="dphi_claims_report", default=None, help="write the claims summary as Markdown to this path")


def option_values(config: pytest.Config) -> dict[str, Any]:
    return {o.name.replace("-", "_"): config.getoption(o.dest) for o in OPTIONS}


def pytest_configure(config: pytest.Config) -> None:
    from lib.config import build_config, check_batch_size
    from lib.store import check_cache_dir

    values = option_values(config)
    values.pop("cache_dir")
    try:
        check_batch_size(values.pop("batch_size"))
        config.stash[RUN_CONFIG] = build_config(**values)
        check_cache_dir(cache_dir(config.getoption("dphi_cache_dir")))
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_report_header(config: pytest.Config) -> str:
    run = config.stash[RUN_CONFIG]
    lines = [f"dphi: {run.describe()}", f"dphi cache: {cache_dir(config.getoption('dphi_cache_dir'))}"]
    if run.unavailable:
        lines.append(f"dphi: model-dependent tests will skip: {run.unavailable}")
    return "\n".join(lines)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep each claim test's row, with the verdict of its deciding phase."""
    from lib.report import Row, verdict

    props = [v for k, v in report.user_properties if k == "claim"]
    decided = report.when == "call" or report.outcome != "passed"
    if not props or not decided:
        return
    row = Row(**props[-1])
    xfail = getattr(report, "wasxfail", None)
    skip = report.longrepr[2].removeprefix("Skipped: ") if report.skipped and isinstance(report.longrepr, tuple) else None
    row.verdict = verdict(report.outcome, row.kind, xfail, skip, row.note)
    CLAIM_ROWS[report.nodeid] = row


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    from pathlib import Path

    from lib.report import markdown, terminal_table

    rows = list(CLAIM_ROWS.values())
    if not rows:
        return
    terminalreporter.section("Experiment 7 claims")
    for line in terminal_table(rows):
        terminalreporter.write_line(line)
    path = config.getoption("dphi_claims_report")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(markdown(rows, config.stash[RUN_CONFIG].to_json()), encoding="utf-8")
        terminalreporter.write_line(f"claims report written to {path}")


@pytest.fixture(scope="session")
def run_config(pytestconfig: pytest.Config) -> RunConfig:
    """The resolved run config of this session."""
    return pytestconfig.stash[RUN_CONFIG]


@pytest.fixture(scope="session")
def dphi_run(pytestconfig: pytest.Config, run_config: RunConfig) -> Run:
    """Model, tokens, captured Δφ and tables of the session's config, filled from the cache."""
    from lib.config import check_batch_size
    from lib.experiment import Run
    from lib.store import Store

    if run_config.unavailable:
        pytest.skip(run_config.unavailable)
    store = Store(cache_dir(pytestconfig.getoption("dphi_cache_dir")))
    return Run(run_config, store, batch_size=check_batch_size(pytestconfig.getoption("dphi_batch_size"), run_config.device))


@pytest.fixture(scope="session")
def tables(dphi_run: Run, pytestconfig: pytest.Config) -> dict[str, Any]:
    """Tables 7A-7E of the session's run (JSON-shaped, see lib/experiment.py).

    Output capture is suspended while they are computed, so the progress bars of the
    capture and the 7D passes reach the terminal.
    """
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            return dphi_run.tables
    except ResourceUnavailable as e:
        pytest.skip(str(e))
