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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lib.errors import ConfigError, ResourceUnavailable
from lib.measure import distributed
from lib.measure.store import Store
from lib.setup.config import RunConfig, check_batch_size
from lib.setup.model_source import EMBEDDED, HUB_ALIASES
from lib.setup.options import OPTIONS, cache_dir, option
from lib.setup.runs import build_runs, check_count, check_windows, labels
from lib.tables.run import Run, Shared
from lib.writeup.write_up import WriteUp, load_write_up

if TYPE_CHECKING:
    from lib.report.compare import Comparison, Result

RUN_OPTIONS = tuple(o.name.replace("-", "_") for o in OPTIONS if o.run)
"""The option values that make a run's identity (RunConfig); the others are the session's settings."""


def check_interval(kind: Any) -> str:
    """--bootstrap-interval's value, or ConfigError naming it and the allowed kinds."""
    allowed = option("bootstrap-interval").choices or ()
    if kind not in allowed:
        raise ConfigError(f"--bootstrap-interval {kind!r} is not allowed; allowed: {', '.join(allowed)}")
    return str(kind)


def defaults() -> dict[str, Any]:
    """Every option's default value, by its name with underscores (`n_tokens`)."""
    return {o.name.replace("-", "_"): o.default for o in OPTIONS}


@dataclass
class Session:
    """The runs of one invocation and what they share. Build it with `Session.from_options`."""

    runs: dict[str, RunConfig]
    """The runs by label (lib/setup/runs.py label): the product of the list options, times the windows."""
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
    writer: bool = True
    """Rank 0 (or the only process): prints and writes; under torchrun the other ranks only compute."""
    shared: Shared = field(default_factory=Shared)
    """Models and tokenized texts shared by the runs."""
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    """label -> the tables of every run whose tables were read in this session (the report's figure)."""
    fragility_rows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """label -> claim or cell id -> its fragility row (lib/fragility/search.py), with --fragility."""
    rows: dict[str, Any] = field(default_factory=dict)
    """pytest: test id -> the claim row (lib/report) of every claim test that ran, for the summary."""
    complete: bool = True
    """pytest: whether the session ran to its end (an interrupted one's claims JSON says so)."""
    stopped: str | None = None
    """pytest: why it did not (Ctrl-C, -x, an internal error), or None."""
    comparison: Comparison | None = None
    """pytest: the session's rows against the --claims-baseline, at its end."""
    snapshot_references: set[str] = field(default_factory=set)
    """pytest: which CPU snapshot a run on another device was compared with, for the summary."""
    _runs: dict[str, Run] = field(default_factory=dict, repr=False)
    _fragility: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    bootstraps: dict[str, dict[str, Any]] = field(default_factory=dict)
    """label -> the run's bootstrap (lib/fragility/bootstrap.py bootstrap_of: intervals, stability), with --bootstrap."""

    @classmethod
    def from_options(
        cls, values: Mapping[str, Any], *, baseline: str | None = None, shared_store: bool = False
    ) -> Session:
        """Validate `values` (option names with underscores; missing ones take their defaults), build
        the runs, open the cache and load the baseline; ConfigError names the first bad value.

        shared_store: the cache of a torchrun launch (rank 0 reads and writes, lib/measure/distributed.py).
        """
        unknown = set(values) - set(defaults())
        if unknown:
            raise ConfigError(f"unknown options {sorted(unknown)}; known: {sorted(defaults())}")
        v = {**defaults(), **values}
        check_batch_size(v["batch_size"])
        windows = check_windows(v["windows"])
        configs = build_runs({k: v[k] for k in RUN_OPTIONS}, windows)
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
            bootstrap=check_count(v["bootstrap"], "--bootstrap", 0),
            bootstrap_block=check_count(v["bootstrap_block"], "--bootstrap-block", 0),
            bootstrap_interval=check_interval(v["bootstrap_interval"]),
            bootstrap_refit=bool(v["bootstrap_refit"]),
            skip_unavailable=v["skip_unavailable"],
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
            run = self.run(label)
            with contextlib.suppress(ResourceUnavailable):
                if not run.cached(self.follow_ups):
                    run.check_sizes(self.windows)

    def check_window_fits(self, label: str) -> None:
        """ConfigError when the session's last token window does not fit this run's text (counted
        exactly, in tokens), before any capture; nothing to check when the run's tables are cached."""
        config = self.runs[label]
        last = self.windows - 1
        if config.window < last and not self.run(label).cached(self.follow_ups):
            Run(dataclasses.replace(config, window=last), self.store, shared=self.shared).selection

    def tables_of(self, label: str) -> dict[str, Any]:
        """Tables 7A-7E and the causes of the run (computed or read from the cache); kept for the report."""
        self.tables[label] = self.run(label).tables
        return self.tables[label]

    def followups_of(self, label: str) -> dict[str, Any]:
        """The follow-up tables 7F-7H of the run (computed on request only)."""
        return self.run(label).followups

    def fragility_of(self, label: str) -> list[dict[str, Any]]:
        """The run's fragility rows (lib/fragility/search.py), one per claim and cell; searched once per
        session, and kept by id in `fragility_rows`."""
        from lib.robustness.dropk import fragility_of

        if label not in self._fragility:
            self._fragility[label] = fragility_of(self.run(label), self.follow_ups, self.write_up)
            self.fragility_rows[label] = {r["claim"]: r for r in self._fragility[label]}
        return self._fragility[label]

    def bootstrap_of(self, label: str) -> dict[str, Any]:
        """The run's bootstrap: {"intervals", "stability", "replicates", "block", "seed"}; once per session."""
        from lib.robustness.bootstrap import bootstrap_of

        if label not in self.bootstraps:
            run = self.run(label)
            self.bootstraps[label] = bootstrap_of(
                run,
                self.bootstrap,
                self.bootstrap_block,
                write_up=self.write_up,
                follow_ups=self.follow_ups,
                refit=self.bootstrap_refit,
            )
        return self.bootstraps[label]

    def uncertainty_of(self, label: str, claim_id: str, kind: str) -> tuple[list[float] | None, float | None]:
        """(a cell's 95% interval, a cell's or sentence's stability) on the run, where it was bootstrapped."""
        from lib.robustness.bootstrap import interval_of

        b = self.bootstraps.get(label) or {}
        stability = (b.get("stability") or {}).get(claim_id)
        cell = next((c for c in self.write_up.cells if c.id == claim_id), None) if kind == "cell" else None
        if cell is None or not b or label not in self.tables:
            return None, stability
        u = interval_of(b, self.tables[label], cell, self.bootstrap_interval)
        return (None if u is None else u["interval"]), stability

    @contextlib.contextmanager
    def processes(self) -> Iterator[None]:
        """torchrun: the process group around the session's work (every rank computes, rank 0 writes)."""
        with distributed.process_group(next(iter(self.runs.values())).device):
            yield
