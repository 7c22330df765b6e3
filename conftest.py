"""The suite's pytest plugin: one option group, one config fixture, the cached run data.

Options -> RunConfig (resolved once, in pytest_configure, so bad values stop the run
before any heavy work) -> `dphi_run` (model, tokens, Δφ and tables, lazily, cached on
disk per config and device). Tests never read `request.config` directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from lib.errors import ConfigError, ResourceUnavailable
from lib.options import OPTIONS, cache_dir

if TYPE_CHECKING:
    from lib.config import RunConfig
    from lib.experiment import Run

RUN_CONFIG = pytest.StashKey["RunConfig"]()


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
    from lib.config import build_config

    values = option_values(config)
    if values["batch_size"] < 1:
        raise pytest.UsageError(f"--batch-size {values['batch_size']} must be at least 1")
    values.pop("batch_size")
    values.pop("cache_dir")
    try:
        config.stash[RUN_CONFIG] = build_config(**values)
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_report_header(config: pytest.Config) -> str:
    run = config.stash[RUN_CONFIG]
    lines = [f"dphi: {run.describe()}", f"dphi cache: {cache_dir(config.getoption('dphi_cache_dir'))}"]
    if run.unavailable:
        lines.append(f"dphi: model-dependent tests will skip: {run.unavailable}")
    return "\n".join(lines)


@pytest.fixture(scope="session")
def run_config(pytestconfig: pytest.Config) -> RunConfig:
    """The resolved run config of this session."""
    return pytestconfig.stash[RUN_CONFIG]


@pytest.fixture(scope="session")
def dphi_run(pytestconfig: pytest.Config, run_config: RunConfig) -> Run:
    """Model, tokens, captured Δφ and tables of the session's config, filled from the cache."""
    from lib.experiment import Run
    from lib.store import Store

    if run_config.unavailable:
        pytest.skip(run_config.unavailable)
    store = Store(cache_dir(pytestconfig.getoption("dphi_cache_dir")))
    return Run(run_config, store, batch_size=pytestconfig.getoption("dphi_batch_size"))


@pytest.fixture(scope="session")
def tables(dphi_run: Run) -> dict[str, Any]:
    """Tables 7A-7E of the session's run (JSON-shaped, see lib/experiment.py)."""
    try:
        return dphi_run.tables
    except ResourceUnavailable as e:
        pytest.skip(str(e))
