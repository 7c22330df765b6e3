"""The suite's pytest plugin: one option group, one config fixture, the cached run data.

Options -> RunConfig (resolved once, in pytest_configure, so bad values stop the run
before any heavy work) -> `dphi_run` (model, tokens, Δφ and tables, lazily, cached on
disk per config and device). Tests never read `request.config` directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lib.errors import ConfigError, ResourceUnavailable
from lib.setup.options import FRAGILITY_HELP, OPTIONS, REFRESH_HELP, ROOT, cache_dir

if TYPE_CHECKING:
    from lib.measure.store import Store
    from lib.setup.config import RunConfig
    from lib.tables.run import Run

RUNS = pytest.StashKey["dict[str, RunConfig]"]()
"""The session's runs by label (lib.setup.runs.label): the product of the option lists, times the windows."""
SHARED = pytest.StashKey["Shared"]()
BASELINE = pytest.StashKey[Any]()
"""The --claims-baseline result (lib.report.compare.Result), or None."""
TABLES_BY_RUN: dict[str, dict[str, Any]] = {}
"""label -> tables of every run whose tables were computed, for the session's figure."""
FRAGILITY_BY_RUN: dict[str, dict[str, dict[str, Any]]] = {}
"""label -> claim or cell id -> its fragility row (lib/fragility/search.py), with --fragility."""
CLAIM_ROWS: dict[str, Any] = {}
"""nodeid -> lib.report.summary.Row of every claim test that ran, for the summary."""
SNAPSHOT_REFERENCES: set[str] = set()
"""Which snapshot a run on another device was compared with (claims/test_snapshots.py), for the summary."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dphi", "Experiment 7 (residual-stream Δφ PCA) run options")
    for option in OPTIONS:
        group.addoption(
            f"--{option.name}",
            dest=option.dest,
            default=option.default,
            type=option.type,
            choices=None if option.listed else option.choices,
            help=f"{option.help} (default: {option.default})",
        )
    group.addoption("--refresh", dest="dphi_refresh", action="store_true", help=REFRESH_HELP)
    group.addoption(
        "--claims-xfail",
        dest="dphi_claims_xfail",
        action="store_true",
        help="report a claim that does not hold for this model as xfail with its values, not a failure",
    )
    group.addoption(
        "--claims-report",
        dest="dphi_claims_report",
        default=None,
        help="write the claims summary as Markdown to this path (with several runs: the claim x run matrix, "
        "window spreads, and a figure beside it)",
    )
    group.addoption(
        "--claims-json",
        dest="dphi_claims_json",
        default=None,
        help='write the results as JSON: {"meta": provenance (library versions, commit, date, device, options), '
        '"runs": label -> config, "rows": one object per claim test and run (claim, section, kind, run, document, '
        "measured, value, verdict)}",
    )
    group.addoption(
        "--claims-baseline",
        dest="dphi_claims_baseline",
        default=None,
        help="a previous --claims-json file: a claim whose verdict differs from the baseline's (same run label, or "
        "the only run) fails, naming both verdicts and values; cells that moved beyond their tolerance are reported",
    )
    group.addoption(
        "--require-snapshots",
        dest="dphi_require_snapshots",
        action="store_true",
        help="a run without committed snapshots fails its snapshot tests (default: they skip, saying how to create them)",
    )
    group.addoption(
        "--follow-ups",
        dest="dphi_follow_ups",
        action="store_true",
        help="also run the follow-up experiments 7F-7H (claims/test_followups.py); about as many passes again as 7D",
    )
    group.addoption("--fragility", dest="dphi_fragility", action="store_true", help=FRAGILITY_HELP)


def option_values(config: pytest.Config) -> dict[str, Any]:
    return {o.name.replace("-", "_"): config.getoption(o.dest) for o in OPTIONS}


def pytest_configure(config: pytest.Config) -> None:
    from lib.measure.store import check_cache_dir
    from lib.setup.config import check_batch_size
    from lib.setup.runs import build_runs, labels
    from lib.tables.run import Shared

    values = option_values(config)
    values.pop("cache_dir")
    try:
        check_batch_size(values.pop("batch_size"))
        windows = values.pop("windows")
        runs = build_runs(values, windows)
        check_cache_dir(cache_dir(config.getoption("dphi_cache_dir")))
        check_sizes(config, runs, windows)
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[RUNS] = dict(zip(labels(runs), runs))
    config.stash[SHARED] = Shared()
    config.stash[BASELINE] = None
    if config.getoption("dphi_claims_baseline"):
        from lib.report.compare import load

        try:
            config.stash[BASELINE] = load(config.getoption("dphi_claims_baseline"))
        except ConfigError as e:
            raise pytest.UsageError(f"--claims-baseline: {e}") from None


def check_sizes(config: pytest.Config, runs: list[RunConfig], windows: int) -> None:
    """Sizes that cannot fit the text or the memory guard stop the session before any model work
    (as `python -m lib tables` does), not one error per test; a run whose tables are cached (and
    not --refresh'ed), or whose model or text cannot be had, is left to its tests."""
    from lib.setup.config import check_batch_size
    from lib.tables.run import Run

    store = run_store(config)
    for c in runs:
        if c.unavailable or c.window != windows - 1:
            continue
        run = Run(c, store, check_batch_size(config.getoption("dphi_batch_size"), c.device))
        with contextlib.suppress(ResourceUnavailable):
            if not run.cached(config.getoption("dphi_follow_ups")):
                run.check_sizes(windows)


def run_store(config: pytest.Config) -> Store:
    """The session's cache: --cache-dir (or $DPHI_CACHE_DIR, or the user cache), --refresh."""
    from lib.measure.store import Store

    return Store(cache_dir(config.getoption("dphi_cache_dir")), refresh=config.getoption("dphi_refresh"))


def pytest_report_header(config: pytest.Config) -> str:
    runs = config.stash[RUNS]
    lines = [f"dphi: {len(runs)} run(s)"] if len(runs) > 1 else []
    for name, run in runs.items():
        lines.append(f"dphi: {name}: {run.describe()}" if len(runs) > 1 else f"dphi: {run.describe()}")
        if run.unavailable:
            lines.append(f"dphi: {name}: model-dependent tests will skip: {run.unavailable}")
    lines.append(f"dphi cache: {cache_dir(config.getoption('dphi_cache_dir'))}")
    return "\n".join(lines)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Claim tests that take `run` run once per run of the session; their ids name it. (Only under
    claims/: the benchmarks have a `run` fixture of their own.)"""
    claims = ROOT / "claims"
    if "run" in metafunc.fixturenames and claims in Path(metafunc.definition.path).resolve().parents:
        names = list(metafunc.config.stash[RUNS])
        metafunc.parametrize("run", names, ids=names, scope="session")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """The one place a claim test's outcome is decided: its row, with the verdict of its deciding
    phase, checked against the --claims-baseline. A verdict that differs from the baseline's turns
    the report into a failure naming both; the row travels in the report (pytest-xdist too)."""
    from lib.report.compare import change_for, index, run_map
    from lib.report.rows import Row
    from lib.writeup.judge import Status, Verdict

    report = yield
    props = [v for k, v in report.user_properties if k == "claim"]
    decided = report.when == "call" or report.outcome != "passed"
    if not props or not decided:
        return report
    row = Row.from_json(props[-1])
    if report.outcome == "failed":  # a claim that does not hold without --claims-xfail, or an error
        row.verdict = Verdict(Status.FAILS)
    elif row.verdict is None:  # a fixture skipped the test before the judge decided (follow-ups not computed)
        skip = report.longrepr[2] if report.skipped and isinstance(report.longrepr, tuple) else ""
        row.verdict = Verdict(Status.SKIPPED, reason=skip.removeprefix("Skipped: "))
    if row.kind in ("cell", "measured") and row.status is not Status.SKIPPED:  # a decided verdict on a run
        row.fragility = FRAGILITY_BY_RUN.get(row.run, {}).get(row.id)
    baseline = item.config.stash[BASELINE]
    if baseline is not None:
        runs = run_map(baseline.run_labels, list(item.config.stash[RUNS]))
        changed, moved = change_for(row, index(baseline.rows), runs)
        if moved is not None:
            row.moved = moved.movement()
        if changed is not None:
            before = changed.before
            row.baseline = f"{before.verdict_text}; measured {before.measured or '-'} ({baseline.path})"
            report.outcome = "failed"
            report.longrepr = (
                f"{row.id}: verdict changed against the baseline {baseline.path}: "
                f"{before.verdict_text!r} (measured {before.measured or '-'}) -> "
                f"{row.verdict_text!r} (measured {row.measured or '-'})"
            )
            if hasattr(report, "wasxfail"):
                del report.wasxfail
    report.user_properties = [*report.user_properties, ("claim_outcome", row.to_json())]
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep each claim test's row (decided in pytest_runtest_makereport), on the controller under xdist."""
    from lib.report.rows import Row

    for key, value in report.user_properties:
        if key == "claim_outcome":
            CLAIM_ROWS[report.nodeid] = Row.from_json(value)
        if key == "snapshot_reference" and report.when == "call":
            SNAPSHOT_REFERENCES.add(value)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    import json

    from lib.report.summary import json_document, markdown, terminal_summary
    from lib.setup.provenance import describe, meta
    from lib.setup.runs import label

    for line in sorted(SNAPSHOT_REFERENCES):
        terminalreporter.write_line(f"snapshots: {line}")
    rows = list(CLAIM_ROWS.values())
    if not rows:
        return
    terminalreporter.section("Experiment 7 claims")
    for line in terminal_summary(rows, verbose=config.getoption("verbose") > 0):
        terminalreporter.write_line(line)
    report_path, json_path = config.getoption("dphi_claims_report"), config.getoption("dphi_claims_json")
    if not (report_path or json_path):
        return
    options = {
        **option_values(config),
        **{k: config.getoption(f"dphi_{k}") for k in ("claims_xfail", "follow_ups", "claims_baseline")},
    }
    provenance = meta(options)
    runs = {name: {**r.to_json(), "group": label(r).rsplit("-w", 1)[0]} for name, r in config.stash[RUNS].items()}
    if report_path:
        out = Path(report_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        figure = None
        if TABLES_BY_RUN:
            from lib.report.plots import plot_runs

            figure = plot_runs({n: TABLES_BY_RUN[n] for n in runs if n in TABLES_BY_RUN}, out.with_suffix(".png")).name
        out.write_text(markdown(rows, runs, figure, describe(provenance)), encoding="utf-8")
        terminalreporter.write_line(
            f"claims report written to {report_path}" + (f" (figure: {figure})" if figure else "")
        )
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        document = json_document(rows, runs, provenance)
        Path(json_path).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        terminalreporter.write_line(f"claims JSON written to {json_path}")


@pytest.fixture(scope="session")
def run(pytestconfig: pytest.Config) -> str:
    """The session's first run, for tests outside claims/ (claims/ tests run once per run: their
    `run` is parametrized by pytest_generate_tests)."""
    return next(iter(pytestconfig.stash[RUNS]))


@pytest.fixture(scope="session")
def run_config(pytestconfig: pytest.Config, run: str) -> RunConfig:
    """The resolved config of the test's run (`run`: its label, one per run of the session)."""
    return pytestconfig.stash[RUNS][run]


@pytest.fixture(scope="session")
def dphi_run(pytestconfig: pytest.Config, run_config: RunConfig) -> Run:
    """Model, tokens, captured Δφ and tables of the session's config, filled from the cache."""
    from lib.setup.config import check_batch_size
    from lib.tables.run import Run

    if run_config.unavailable:
        pytest.skip(run_config.unavailable)
    store = run_store(pytestconfig)
    batch_size = check_batch_size(pytestconfig.getoption("dphi_batch_size"), run_config.device)
    last = pytestconfig.getoption("dphi_windows") - 1
    if run_config.window < last:  # a window that does not fit stops the session before any capture
        try:
            Run(dataclasses.replace(run_config, window=last), store, shared=pytestconfig.stash[SHARED]).selection
        except ConfigError as e:
            pytest.exit(f"error: {e}", returncode=pytest.ExitCode.USAGE_ERROR)
    return Run(run_config, store, batch_size=batch_size, shared=pytestconfig.stash[SHARED])


@pytest.fixture(scope="session")
def followup_tables(dphi_run: Run, pytestconfig: pytest.Config) -> dict[str, Any]:
    """The follow-up experiments 7F-7H of the session's run (lib/tables/followups.py), only with --follow-ups."""
    if not pytestconfig.getoption("dphi_follow_ups"):
        pytest.skip("a follow-up experiment (7F-7H), computed on request only: rerun with --follow-ups")
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        return dphi_run.followups


@pytest.fixture(scope="session")
def tables(dphi_run: Run, pytestconfig: pytest.Config, run: str) -> dict[str, Any]:
    """Tables 7A-7E of the session's run (JSON-shaped, see lib/tables/run.py).

    Output capture is suspended while they are computed, so the progress bars of the
    capture and the 7D passes reach the terminal.
    """
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            tables = dphi_run.tables
    except ResourceUnavailable as e:
        pytest.skip(str(e))
    TABLES_BY_RUN[run] = tables
    from lib.fragility.search import fragility_of

    if pytestconfig.getoption("dphi_fragility") and run not in FRAGILITY_BY_RUN:
        FRAGILITY_BY_RUN[run] = {}
        try:
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                rows = fragility_of(dphi_run, pytestconfig.getoption("dphi_follow_ups"))
                FRAGILITY_BY_RUN[run] = {r["claim"]: r for r in rows}
        except Exception as e:  # a streamed run, or the search failed: the claims are judged all the same
            warnings.warn(
                f"{run}: --fragility: {type(e).__name__}: {e}; the claims are judged without it", stacklevel=1
            )
    return tables
