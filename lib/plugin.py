"""The suite's pytest plugin (registered by the root conftest.py): one option group, one Session.

Options -> `Session` (lib/session.py: built once, in pytest_configure, so bad values and sizes stop
the run before any model work) -> fixtures, each a line onto the session: `run` (a run's label),
`run_config`, `dphi_run` (model, tokens, Δφ and tables, lazily, cached on disk per config and
device), `tables`, `followup_tables`. The session holds the plugin's state (claim rows, tables for
the figure, fragility rows). Tests never read `request.config` directly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lib.errors import ConfigError, ResourceUnavailable
from lib.report.rows import Row
from lib.session import FOLLOW_UPS, Measured, Session
from lib.setup.options import OPTIONS, ROOT, cache_dir
from lib.setup.outputs import check_output
from lib.setup.progress import set_quiet
from lib.writeup.claims import Cell, Claim
from lib.writeup.judge import Status, Verdict

if TYPE_CHECKING:
    from lib.setup.config import RunConfig
    from lib.tables.run import Run

SESSION = pytest.StashKey["Session"]()
ROW = pytest.StashKey[Row]()
"""A claim test's row, on its item from the moment the judge is asked (Judge._decide)."""
NOTES = pytest.StashKey[list[str]]()
"""What the run said while it measured (the attention kernel it took, lib/measure/kernels.py), for the summary."""


def session(config: pytest.Config) -> Session:
    return config.stash[SESSION]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dphi", "Experiment 7 (residual-stream Δφ PCA) run options")
    for option in OPTIONS:
        if option.flag:
            group.addoption(f"--{option.name}", dest=option.dest, action="store_true", help=option.argparse_help)
            continue
        group.addoption(
            f"--{option.name}",
            dest=option.dest,
            default=option.default,
            type=option.type,
            choices=None if option.listed else option.choices,
            help=option.argparse_help,
        )
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
        "--claims-csv",
        dest="dphi_claims_csv",
        default=None,
        help="write the rows as CSV (one line per claim test and run, the JSON's columns) for a spreadsheet or pandas",
    )
    group.addoption(
        "--allow-unmatched",
        dest="dphi_allow_unmatched",
        action="store_true",
        help="with --claims-baseline: baseline rows without a counterpart in this session do not fail it "
        "(default: they fail the session, as syrupy's unused snapshots do)",
    )
    group.addoption(
        "--strict-baseline",
        dest="dphi_strict_baseline",
        action="store_true",
        help="with --claims-baseline: every changed verdict fails, within the bootstrap's noise too "
        "(default: a change within noise, where both results were bootstrapped, is reported, not failed)",
    )
    group.addoption(
        "--require-snapshots",
        dest="dphi_require_snapshots",
        action="store_true",
        help="a run without committed snapshots fails its snapshot tests (default: they skip, saying how to create them)",
    )


OUTPUTS = (
    ("--claims-json", "dphi_claims_json"),
    ("--claims-csv", "dphi_claims_csv"),
    ("--claims-report", "dphi_claims_report"),
)
"""The files a session writes, by option (lib/report/files.py writes the JSON first, the report last)."""


def option_values(config: pytest.Config) -> dict[str, Any]:
    return {o.key: config.getoption(o.dest) for o in OPTIONS}


def pytest_configure(config: pytest.Config) -> None:
    try:
        state = Session.from_options(
            option_values(config),
            baseline=config.getoption("dphi_claims_baseline"),
            strict_baseline=config.getoption("dphi_strict_baseline"),
        )
        for option, name in OUTPUTS:  # every file the session promises, checked before any model work
            if config.getoption(name):
                check_output(config.getoption(name), option)
        if config.getoption("dphi_claims_report"):
            check_output(Path(config.getoption("dphi_claims_report")).with_suffix(".png"), "--claims-report's figure")
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None
    if _only_claims_on_runs(config):
        try:
            state.check_available()
        except ConfigError as e:
            raise pytest.UsageError(str(e)) from None
    state.terminal = lambda: _terminal(config)
    set_quiet(config.getoption("verbose") < 0)  # -q: no progress lines either
    config.stash[SESSION] = state
    config.pluginmanager.register(_Rows(state), "dphi-rows")
    config.stash[NOTES] = _notes(config)


def _columns(config: pytest.Config) -> int:
    """The terminal's width as pytest's writer sees it (COLUMNS first), at least 80."""
    from lib.report.text import width

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return width(reporter._tw.fullwidth if reporter is not None else None)


def _collects(config: pytest.Config, folder: str) -> bool:
    """Whether the session may collect tests of ROOT/folder: an argument names it, or a directory above it."""
    wanted = ROOT / folder
    for arg in config.args:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if path == wanted or wanted in path.parents or path in wanted.parents:
            return True
    return False


def _only_claims_on_runs(config: pytest.Config) -> bool:
    """The session runs claims/ with nothing that could deselect its claims on a run (-k, -m, a test id):
    a run that cannot be had then stops it before the header, in one line."""
    return (
        bool(config.args)
        and all(_collects_only(config, arg) for arg in config.args)
        and not config.getoption("keyword")
        and not config.getoption("markexpr")
        and not _informational(config)
    )


def _informational(config: pytest.Config) -> bool:
    """--help, --fixtures, --markers, --version, --collect-only: pytest runs no test."""
    names = ("help", "showfixtures", "show_fixtures_per_test", "markers", "version", "collectonly")
    return any(getattr(config.option, name, False) for name in names)


def _collects_only(config: pytest.Config, arg: str) -> bool:
    path = (config.invocation_params.dir / arg).resolve()
    return "::" not in arg and path == ROOT / "claims"


@pytest.hookimpl(wrapper=True)
def pytest_report_header(config: pytest.Config) -> Generator[None, list[str | list[str]], list[str | list[str]]]:
    """The run header, every plugin's lines (pytest's own "plugins:" too) wrapped to the terminal's width.
    pytest-benchmark's line (its settings) is dropped unless the session may run a benchmark: the header
    is printed before collection, so the paths given decide (`pytest benchmarks/` or the repository root
    keep it; claims/ and tests/ do not)."""
    from lib.report.text import wrap
    from lib.setup.provenance import version_line

    others = yield
    columns, benchmarks = _columns(config), _collects(config, "benchmarks")

    def fit(part: str | list[str]) -> list[str]:
        kept = [
            line for line in ([part] if isinstance(part, str) else part) if benchmarks or "benchmark: " != line[:11]
        ]
        return [wrapped for line in kept for wrapped in wrap(line, "", columns)]

    runs = session(config).runs
    lines = [f"dphi: {version_line()}"] + ([f"dphi: {len(runs)} run(s)"] if len(runs) > 1 else [])
    for name, run in runs.items():
        lines.append(f"dphi: {name}: {run.describe()}" if len(runs) > 1 else f"dphi: {run.describe()}")
        if run.unavailable:  # without --skip-unavailable the session stops after collection, saying why
            skips = session(config).skip_unavailable
            lines.append(f"dphi: {name}: {'its tests skip' if skips else 'cannot be had'}: {run.unavailable}")
    lines.append(f"dphi cache: {cache_dir(config.getoption('dphi_cache_dir'))}")
    return [fit(lines), *map(fit, others)]  # pytest prints the hooks' parts reversed: ours after its own


@pytest.hookimpl(trylast=True)  # after -k and -m deselected: the claims on the document's own tables need no run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A run whose model or text cannot be had stops a session that selected claim tests on a run (a
    usage error naming it), unless --skip-unavailable; the library's own tests (tests/) need no run."""
    claims = ROOT / "claims"
    if _informational(config):
        return
    if any(claims in item.path.resolve().parents and "run" in getattr(item, "fixturenames", ()) for item in items):
        try:
            session(config).check_available()
        except ConfigError as e:
            raise pytest.UsageError(str(e)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Claim tests that take `run` run once per run of the session; their ids name it. (Only under
    claims/: the benchmarks have a `run` fixture of their own.)"""
    if "run" in metafunc.fixturenames and ROOT / "claims" in metafunc.definition.path.resolve().parents:
        names = list(session(metafunc.config).runs)
        metafunc.parametrize("run", names, ids=names, scope="session")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A claim test's row (lib/session.py Session.complete_row) with the verdict of its deciding phase;
    a verdict that changed against the --claims-baseline turns the report into a failure naming both.
    The row is serialised once, into the report (pytest-xdist hands it to the controller)."""
    report = yield
    row = item.stash.get(ROW, None)
    if row is None or not (report.when == "call" or report.outcome != "passed"):
        return report
    if report.outcome == "failed" and row.status is not Status.DOES_NOT_HOLD:  # an error, not a verdict
        row.verdict = Verdict(Status.FAILS)
    elif row.verdict is None:  # a fixture skipped the test before the judge decided
        skip = report.longrepr[2] if report.skipped and isinstance(report.longrepr, tuple) else ""
        row.verdict = Verdict(Status.SKIPPED, reason=skip.removeprefix("Skipped: "))
    failure = session(item.config).complete_row(row)
    if failure is not None:
        report.outcome, report.longrepr = "failed", failure
        if hasattr(report, "wasxfail"):
            del report.wasxfail
    report.user_properties = [*report.user_properties, ("claim_outcome", row.to_json())]
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The files first (a Ctrl-C during the summary loses none of them), then the summary and the
    baseline's line."""
    from lib.report.terminal import terminal_summary
    from lib.report.text import wrap

    state = session(config)
    columns = _columns(config)
    for line in sorted(state.snapshot_references):
        for wrapped in wrap(f"snapshots: {line}", "", columns):
            terminalreporter.write_line(wrapped)
    rows = list(state.rows.values())
    if not rows:
        return
    written = write_outputs(config, state, rows) if any(config.getoption(n) for _, n in OUTPUTS) else []
    terminalreporter.section(f"claims: {state.write_up.title}")
    notes = [wrapped for note in config.stash[NOTES] for wrapped in wrap(note, "", columns)]
    for line in [
        *notes,
        *([""] if notes else []),
        *terminal_summary(rows, config.getoption("verbose") > 0, columns, write_up=state.write_up),
    ]:
        terminalreporter.write_line(line)
    ending = list(written)
    if state.comparison is not None:  # a baseline session ends with one line: what it was compared with
        if state.comparison.unmatched and not config.getoption("dphi_allow_unmatched"):
            ending += ["baseline rows without a counterpart (--allow-unmatched accepts them):"]
            ending += state.comparison.unmatched_lines()
        ending.append(state.comparison.summary(state.baseline.path if state.baseline else ""))
    for line in ending:
        for wrapped in wrap(line, line[: len(line) - len(line.lstrip())], columns):
            terminalreporter.write_line(wrapped)


def write_outputs(config: pytest.Config, state: Session, rows: list[Row]) -> list[str]:
    """The claims files (lib/report/files.py); the JSON's meta says whether the session ran to its end."""
    from lib.report.files import write_claims_files
    from lib.setup.matrix import label
    from lib.setup.provenance import meta

    options = {
        **option_values(config),
        **{k: config.getoption(f"dphi_{k}") for k in ("claims_xfail", "claims_baseline")},
    }
    provenance = {**meta(options), "complete": state.complete, **({"stopped": state.stopped} if state.stopped else {})}
    runs = {name: {**r.to_json(), "group": label(r).rsplit("-w", 1)[0]} for name, r in state.runs.items()}
    paths = {option: config.getoption(name) for option, name in OUTPUTS}
    lines = (
        []
        if state.complete
        else [f"claims: the session did not run to its end ({state.stopped}): files marked incomplete"]
    )
    return lines + write_claims_files(paths, rows, runs, provenance, state.tables, state.write_up)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Whether the session ran to its end (the claims JSON says so), and the --claims-baseline's end: its
    rows without a counterpart fail the session unless --allow-unmatched."""
    from lib.report.compare import Result, cell_tolerances, compare

    state = session.config.stash.get(SESSION, None)
    if state is None:
        return
    ended = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED)
    state.stopped = (
        (session.shouldstop or session.shouldfail or None)
        if ended
        else f"exit status {pytest.ExitCode(exitstatus).name}"
    )
    state.complete = not state.stopped
    if state.baseline is not None:
        tolerances = cell_tolerances(state.write_up)
        state.comparison = compare(state.baseline, Result("", rows=list(state.rows.values())), tolerances)
        if state.comparison.unmatched and not session.config.getoption("dphi_allow_unmatched"):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _notes(config: pytest.Config) -> list[str]:
    """The lines logged to the "dphi" logger while the session runs, kept for the summary: printed as they
    come they would land among the progress dots (lib/measure/kernels.py prints them itself elsewhere)."""
    notes: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: notes.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("dphi")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    config.add_cleanup(lambda: (logger.removeHandler(handler), logger.setLevel(level)))
    return notes


class _Rows:
    """Keeps each claim test's row (decided in pytest_runtest_makereport) on the session, on the
    controller under xdist (a hook of its own object: pytest_runtest_logreport is given no config)."""

    def __init__(self, state: Session) -> None:
        self.session = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from lib.report.rows import Row

        for key, value in report.user_properties:
            if key == "claim_outcome":
                self.session.rows[report.nodeid] = Row.from_json(value)
            if key == "snapshot_reference" and report.when == "call":
                self.session.snapshot_references.add(value)


@contextlib.contextmanager
def _terminal(config: pytest.Config) -> Iterator[None]:
    """Output capture suspended, so the progress bars of the capture and the projected passes show."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        yield


@pytest.fixture(scope="session")
def run(pytestconfig: pytest.Config) -> str:
    """The session's first run, for tests outside claims/ (claims/ tests run once per run: their
    `run` is parametrized by pytest_generate_tests)."""
    return next(iter(session(pytestconfig).runs))


@pytest.fixture(scope="session")
def run_config(pytestconfig: pytest.Config, run: str) -> RunConfig:
    """The resolved config of the test's run (`run`: its label, one per run of the session)."""
    return session(pytestconfig).runs[run]


@pytest.fixture(scope="session")
def dphi_run(pytestconfig: pytest.Config, run: str, run_config: RunConfig) -> Run:
    """Model, tokens, captured Δφ and tables of the session's config, filled from the cache."""
    if run_config.unavailable:
        pytest.skip(run_config.unavailable)
    return session(pytestconfig).run(run)


def _measured(config: pytest.Config, run: str) -> Measured:
    """The run's measurements (Session.measure); a window or an analysis that cannot fit stops the session."""
    try:
        return session(config).measure(run)
    except ConfigError as e:
        pytest.exit(f"error: {e}", returncode=pytest.ExitCode.USAGE_ERROR)
    except ResourceUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def followup_tables(dphi_run: Run, pytestconfig: pytest.Config, run: str) -> dict[str, Any]:
    """The follow-up experiments 7F-7H of the session's run (lib/tables/followups.py), only with --follow-ups."""
    if not session(pytestconfig).follow_ups:
        pytest.skip(FOLLOW_UPS)
    return _measured(pytestconfig, run).followups


@pytest.fixture(scope="session")
def tables(dphi_run: Run, pytestconfig: pytest.Config, run: str) -> dict[str, Any]:
    """Tables 7A-7E of the session's run (JSON-shaped, see lib/tables/run.py), measured once with what the
    session asks of every run (follow-ups, bootstrap, fragility: lib/session.py Session.measure)."""
    return _measured(pytestconfig, run).tables


class Judge:
    """Asks the session for a claim test's row and verdict, and turns the verdict into the test's outcome."""

    def __init__(self, request: pytest.FixtureRequest, lenient: bool) -> None:
        self.request, self.lenient = request, lenient
        self.session = session(request.config)

    def _decide(self, item: Claim | Cell, label: str = "") -> None:
        """The row is kept on the test item first, so a test that raises still has one (lib/plugin.py
        pytest_runtest_makereport completes it)."""
        row = self.request.node.stash[ROW] = self.session.row(item, label)
        try:
            verdict = self.session.verdict(item, label)
        except ConfigError as e:
            pytest.exit(f"error: {e}", returncode=pytest.ExitCode.USAGE_ERROR)
        row.record(verdict)
        if verdict.status is Status.SKIPPED:
            pytest.skip(verdict.reason)
        if verdict.status is Status.CONTRADICTED:
            pytest.xfail(f"contradicted by the document itself: {verdict.reason}")
        if verdict.status is Status.DOES_NOT_HOLD and self.lenient and row.kind != "document":
            pytest.xfail(f"does not hold for this run: {verdict.reason}")
        if verdict.status in (Status.DOES_NOT_HOLD, Status.FAILS):
            pytest.fail(verdict.reason, pytrace=False)

    def cell(self, cell: Cell) -> None:
        self._decide(cell, self.request.getfixturevalue("run"))

    def sentence(self, claim: Claim) -> None:
        self._decide(claim, self.request.getfixturevalue("run"))

    def document(self, claim: Claim) -> None:
        self._decide(claim)


@pytest.fixture
def judge(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Judge:
    return Judge(request, lenient=pytestconfig.getoption("dphi_claims_xfail"))


@pytest.fixture
def table_snapshot(snapshot: Any, run_config: Any) -> Any:
    """syrupy's snapshot, filed under snapshots/<run id>/ (run_config: a RunConfig) with float tolerance."""
    from lib.report.snapshot import extension_for

    return snapshot.use_extension(extension_for(run_config.run_id))
