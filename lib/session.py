"""One session: the option values validated once, the runs they make, the cache, rank 0 and the baseline.

The command line (lib/cli.py) and the pytest plugin (lib/plugin.py) build one `Session` from the
option table's values (lib/setup/options.py OPTIONS) and ask it for each run's tables, follow-ups
and fragility. Neither front end repeats a check: a bad value, a size that cannot fit the text or
the memory guard, an unwritable cache or an unreadable baseline raise ConfigError here, before any
model work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lib.errors import ConfigError, ResourceUnavailable
from lib.measure import distributed
from lib.measure.store import Store
from lib.report.rows import Row, claim_row
from lib.setup.config import RunConfig, check_batch_size
from lib.setup.matrix import build_matrix, labels
from lib.setup.model_source import EMBEDDED, HUB_ALIASES, model_shape
from lib.setup.options import OPTIONS, cache_dir, option, validate
from lib.tables.run import Run, Shared
from lib.writeup import judge
from lib.writeup.claims import Cell, Claim
from lib.writeup.judge import Status, Verdict
from lib.writeup.write_up import WriteUp, load_write_up

if TYPE_CHECKING:
    from lib.report.compare import Comparison, Result

RUN_OPTIONS = tuple(o.key for o in OPTIONS if o.run)
"""The option values that make a run's identity (RunConfig); the others are the session's settings."""


FOLLOW_UPS = "a follow-up experiment (7F-7H), computed on request only: rerun with --follow-ups"


def defaults() -> dict[str, Any]:
    """Every option's default value, by its name with underscores (`n_tokens`)."""
    return {o.key: o.default for o in OPTIONS}


@dataclass
class Measured:
    """One run's measurements (Session.measure): what the claims, the tables command and lib.run read."""

    tables: dict[str, Any]
    """Tables 7A-7E and the causes (lib/tables/registry.py stage "tables"), JSON-shaped."""
    followups: dict[str, Any] = field(default_factory=dict)
    """The follow-up tables 7F-7H with --follow-ups; empty without."""
    bootstrap: dict[str, Any] | None = None
    """With --bootstrap: lib/robustness/bootstrap.py bootstrap_of (intervals, stability, replicates, block, seed)."""
    fragility: list[dict[str, Any]] | None = None
    """With --fragility: one row per claim and cell (lib/robustness/dropk.py fragility_rows)."""

    @property
    def fragility_by_id(self) -> dict[str, dict[str, Any]]:
        return {r["claim"]: r for r in self.fragility or ()}


@dataclass
class Session:
    """The runs of one invocation and what they share. Build it with `Session.from_options`."""

    runs: dict[str, RunConfig]
    """The runs by label (lib/setup/matrix.py label): the product of the list options, times the windows."""
    store: Store
    batch_size: int | str
    """--batch-size as given: a whole number, or auto (resolved per run for its device)."""
    windows: int
    write_up: WriteUp
    """The write-up whose claims are judged (--write-up; default exp7)."""
    follow_ups: bool = False
    fragility: bool = False
    bootstrap: int = 0
    """--bootstrap: the replicates of the positions' bootstrap (0: none)."""
    bootstrap_block: int = option("bootstrap-block").default
    """--bootstrap-block: 0, by rule (lib/robustness/bootstrap.py block_rule), or N positions."""
    bootstrap_interval: str = option("bootstrap-interval").default
    bootstrap_refit: bool = option("bootstrap-refit").default
    skip_unavailable: bool = False
    """--skip-unavailable: a run whose model or text cannot be had is skipped, not an error."""
    baseline: Result | None = None
    """The --claims-baseline result (lib/report/compare.py), or None."""
    strict_baseline: bool = False
    """--strict-baseline: every changed verdict fails, within the bootstrap's noise too."""
    writer: bool = True
    """Rank 0 (or the only process): prints and writes; under torchrun the other ranks only compute."""
    shared: Shared = field(default_factory=Shared)
    """Models and tokenized texts shared by the runs."""
    measured: dict[str, Measured] = field(default_factory=dict)
    """label -> the run's measurements (`measure`), for every run measured in this session."""
    terminal: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    """Around long work: pytest's plugin suspends its output capture there, so progress bars show."""
    rows: dict[str, Row] = field(default_factory=dict)
    """pytest: test id -> the claim row of every claim test that ran, for the summary."""
    complete: bool = True
    """pytest: whether the session ran to its end (an interrupted one's claims JSON says so)."""
    stopped: str | None = None
    """pytest: why it did not (Ctrl-C, -x, an internal error), or None."""
    comparison: Comparison | None = None
    """pytest: the session's rows against the --claims-baseline, at its end."""
    snapshot_references: set[str] = field(default_factory=set)
    """pytest: which CPU snapshot a run on another device was compared with, for the summary."""
    _runs: dict[str, Run] = field(default_factory=dict, repr=False)

    @classmethod
    def from_options(
        cls,
        values: Mapping[str, Any],
        *,
        baseline: str | None = None,
        strict_baseline: bool = False,
        shared_store: bool = False,
    ) -> Session:
        """Validate `values` (option names with underscores; missing ones take their defaults), build
        the runs, open the cache and load the baseline; ConfigError names the first bad value.

        baseline, strict_baseline: a kept claims JSON every row is judged against (--claims-baseline,
        --strict-baseline).
        shared_store: the cache of a torchrun launch (rank 0 reads and writes, lib/measure/distributed.py).
        """
        unknown = set(values) - set(defaults())
        if unknown:
            raise ConfigError(f"unknown options {sorted(unknown)}; known: {sorted(defaults())}")
        v = validate({**defaults(), **values})
        windows = v["windows"]
        configs = build_matrix({k: v[k] for k in RUN_OPTIONS}, windows)
        store_type = distributed.SharedStore if shared_store else Store
        store = store_type(cache_dir(v["cache_dir"]), refresh=v["refresh"])
        try:
            write_up = load_write_up(v["write_up"])
        except ValueError as e:
            raise ConfigError(str(e)) from None
        session = cls(
            dict(zip(labels(configs), configs)),
            store,
            v["batch_size"],
            windows,
            write_up,
            follow_ups=v["follow_ups"],
            fragility=v["fragility"],
            bootstrap=v["bootstrap"],
            bootstrap_block=v["bootstrap_block"],
            bootstrap_interval=v["bootstrap_interval"],
            bootstrap_refit=v["bootstrap_refit"],
            skip_unavailable=v["skip_unavailable"],
            strict_baseline=strict_baseline,
            writer=distributed.is_writer(),
        )
        session.check_sizes()
        if baseline:
            from lib.report.compare import load

            try:
                session.baseline = load(baseline)
            except ConfigError as e:
                raise ConfigError(f"--claims-baseline: {e}") from None
        return session

    def run(self, label: str) -> Run:
        """The run of that label (one object per session: its model, tokens and tables are loaded once)."""
        if label not in self._runs:
            config = self.runs[label]
            batch_size = check_batch_size(self.batch_size, config.device)
            self._runs[label] = Run(config, self.store, batch_size, shared=self.shared)
        return self._runs[label]

    def check_available(self) -> list[str]:
        """The labels of the runs whose model or text cannot be had here, when --skip-unavailable; else
        ConfigError naming the first one, why, and a near name: a run that can measure nothing is not a
        green run."""
        missing = [label for label, config in self.runs.items() if config.unavailable]
        if missing and not self.skip_unavailable:
            config = self.runs[missing[0]]
            given = config.model if config.model_revision.startswith("unavailable") else config.dataset
            near = difflib.get_close_matches(given, [*EMBEDDED, *HUB_ALIASES, *HUB_ALIASES.values()], n=1)
            what = "--model" if given == config.model else "--dataset"
            raise ConfigError(
                f"{what} {given!r} cannot be had here: {config.unavailable}"
                + (f"; did you mean {near[0]}?" if near and near[0] != given else "")
                + " (--skip-unavailable skips its tests instead)"
            )
        return missing

    def check_sizes(self) -> None:
        """Sizes that cannot fit the text or the memory guard stop the session before any model work
        (decided from the text's bytes and the model's config.json). A run whose tables are cached (and
        not --refresh'ed) loaded no model when they were made here, and a run whose model or text cannot
        be had is left to its front end; only the last window is checked (the others fit if it does)."""
        for label, config in self.runs.items():
            if config.unavailable or config.window != self.windows - 1:
                continue
            self.check_held(label)
            run = self.run(label)
            with contextlib.suppress(ResourceUnavailable):
                if not run.cached(self.follow_ups):
                    run.check_sizes(self.windows)

    def check_held(self, label: str, *needs: str) -> None:
        """--bootstrap and --fragility re-weight every position's Δφ (and `needs` name what else reads
        them), so the run must hold them in memory (lib/tables/run.py STREAM_ABOVE, HOLD_BYTES):
        ConfigError before any model work where it would stream them (decided from the model's config.json)."""
        asked = [name for name, on in (("--bootstrap", self.bootstrap), ("--fragility", self.fragility)) if on]
        asked += needs
        config, run = self.runs[label], self.run(label)
        shape = model_shape(config.model, config.model_revision) if asked else None
        if shape is not None and not run.held(shape.n_layers, shape.d_model):
            raise ConfigError(
                f"{' and '.join(asked)} need every position's Δφ held in memory (at most {run.stream_above:,} "
                f"positions and {run.hold_bytes / 2**30:.0f} GiB); got --n-tokens {config.n_tokens:,}: lower it"
            )

    def check_window_fits(self, label: str) -> None:
        """ConfigError when the session's last token window does not fit this run's text (counted
        exactly, in tokens), before any capture; nothing to check when the run's tables are cached."""
        config = self.runs[label]
        last = self.windows - 1
        if config.window < last and not self.run(label).cached(self.follow_ups):
            Run(dataclasses.replace(config, window=last), self.store, shared=self.shared).check_selection()

    def measure(self, label: str) -> Measured:
        """The run's measurements, made once per session under one policy: its tables (computed or read
        from the cache), the follow-ups with --follow-ups, the bootstrap with --bootstrap, the fragility
        search with --fragility. Every front door reads them from here. A window that does not fit the
        text is a ConfigError before any capture; an analysis the run cannot hold was refused by
        `check_sizes`; anything else that goes wrong propagates (it is a bug, not a missing number)."""
        if label not in self.measured:
            self.check_window_fits(label)
            run = self.run(label)
            with self.terminal():
                tables = run.tables
                followups = run.followups if self.follow_ups else {}
                boot = self._bootstrap(run) if self.bootstrap else None
                fragility = self._fragility(run) if self.fragility else None
            self.measured[label] = Measured(tables, followups, boot, fragility)
        return self.measured[label]

    def _bootstrap(self, run: Run) -> dict[str, Any]:
        from lib.robustness.bootstrap import bootstrap_of

        return bootstrap_of(
            run,
            self.bootstrap,
            self.bootstrap_block,
            write_up=self.write_up,
            follow_ups=self.follow_ups,
            refit=self.bootstrap_refit,
        )

    def _fragility(self, run: Run) -> list[dict[str, Any]]:
        from lib.robustness.dropk import fragility_of

        return fragility_of(run, self.follow_ups, self.write_up)

    @property
    def tables(self) -> dict[str, dict[str, Any]]:
        """label -> tables 7A-7E and the causes, of every run measured in this session (the report's figure)."""
        return {label: m.tables for label, m in self.measured.items()}

    def row(self, item: Claim | Cell, label: str = "") -> Row:
        """The row a claim test starts from, before its verdict: on the run `label` (marked where the run
        is the write-up's own set-up), or with no label on the write-up's own tables."""
        document = self.write_up.document
        row = claim_row(item, label, document)
        if label and judge.set_up_differs(self.runs[label].to_json(), document) is None:
            row.own_set_up = True
        return row

    def verdict(self, item: Claim | Cell, label: str = "") -> Verdict:
        """The one judge's verdict of a cell or sentence on the run `label` (measured on first need), or
        with no label a sentence on the write-up's own tables. A run whose model or text cannot be had, a
        follow-up not asked for, and tables that cannot be made here are undecided, with the reason."""
        document = self.write_up.document
        if not label:
            assert isinstance(item, Claim), item
            return judge.on_document(item, document)
        config = self.runs[label]
        if config.unavailable:
            return Verdict(Status.SKIPPED, reason=config.unavailable)
        followup = isinstance(item, Claim) and item.followup
        if followup and not self.follow_ups:
            return Verdict(Status.SKIPPED, reason=FOLLOW_UPS)

        def tables() -> dict[str, Any]:
            m = self.measure(label)
            return {**m.tables, **m.followups} if followup else m.tables

        try:
            return judge.on_run(item, tables, config.to_json(), document)
        except ResourceUnavailable as e:
            return Verdict(Status.SKIPPED, reason=str(e))

    def judged_row(self, item: Claim | Cell, label: str = "") -> Row:
        """row(), its verdict recorded, completed: what every front door reports for one claim test."""
        row = self.row(item, label)
        row.record(self.verdict(item, label))
        self.complete_row(row)
        return row

    def complete_row(self, row: Row) -> str | None:
        """A decided row, completed once: a cell's interval (shown where the cell is not judged too), a
        decided verdict's stability and fragility, the baseline's judgement (lib/report/compare.py).
        Returns why the row fails against the baseline, or None."""
        measured = self.measured.get(row.run) if row.run else None
        if measured is not None and row.kind in ("cell", "measured"):
            u, stability = self._uncertainty(measured, row.id, row.kind)
            if u is not None and row.value is not None:
                row.interval, row.interval_kind, row.sd, row.shift = u["interval"], u["kind"], u["sd"], u["shift"]
            if row.status is not Status.SKIPPED:
                row.stability = stability
                row.fragility = measured.fragility_by_id.get(row.id) if measured.fragility is not None else None
        if self.baseline is None:
            return None
        from lib.report.compare import cell_tolerances, judge_against

        tolerances = cell_tolerances(self.write_up)
        return judge_against(row, self.baseline, list(self.runs), tolerances, strict=self.strict_baseline)

    def _uncertainty(self, measured: Measured, claim_id: str, kind: str) -> tuple[dict[str, Any] | None, float | None]:
        """(a cell's uncertainty: interval, its kind, SD, shift; a cell's or sentence's stability) on the
        run, where it was bootstrapped (lib/robustness/bootstrap.py interval_of)."""
        from lib.robustness.bootstrap import interval_of

        b = measured.bootstrap or {}
        stability = (b.get("stability") or {}).get(claim_id)
        cell = next((c for c in self.write_up.cells if c.id == claim_id), None) if kind == "cell" else None
        if cell is None or not b:
            return None, stability
        return interval_of(b, measured.tables, cell, self.bootstrap_interval), stability

    @contextlib.contextmanager
    def processes(self) -> Iterator[None]:
        """torchrun: the process group around the session's work (every rank computes, rank 0 writes)."""
        with distributed.process_group(next(iter(self.runs.values())).device):
            yield
