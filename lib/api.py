"""The Python API, for notebooks: `lib.run(model=..., dataset=..., **options)` takes the options of the
command line (lib/setup/options.py, names with underscores) and returns the tables, every claim's row
with its verdict (and fragility, with fragility=True) and the provenance: what `pytest claims/` and
`python -m lib tables` give, through the same Session and the same judge (docs/python-api.md).

    import lib
    result = lib.run(model="tiny-wikitext", device="cpu")
    result.tables["tiny-wikitext-w0"]["layer_pca"]     # 7B, as the tables JSON
    result.to_pandas().query("kind == 'measured'")     # one row per claim and run
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lib.errors import ConfigError
from lib.measure.stats import KEYS, Write
from lib.report.rows import SHORT, Row
from lib.session import Session
from lib.setup.progress import set_quiet
from lib.setup.provenance import meta

if TYPE_CHECKING:
    import pandas
    import torch


COLUMNS = (
    "claim", "section", "sentence", "kind", "run", "status", "holds", "verdict", "document", "measured", "value",
    "interval_lo", "interval_hi", "stability", "fragility_k",
)  # fmt: skip
"""to_pandas()'s columns, in order: `status` is the verdict's word (holds, does not hold, skipped, ...),
`holds` True / False / None (undecided), `verdict` its full text (a skip's reason)."""


@dataclass
class Results:
    """One session's results: per run its config and tables, every claim's row, where they came from."""

    runs: dict[str, dict[str, Any]]
    """label -> the run's config (RunConfig.to_json)."""
    tables: dict[str, dict[str, Any]]
    """label -> its tables (7A-7E, the causes; the follow-ups with follow_ups=True), as `python -m lib tables --json`."""
    rows: list[Row] = field(default_factory=list)
    """Every cell and sentence judged on every run, then every sentence on the write-up's own tables."""
    provenance: dict[str, Any] = field(default_factory=dict)
    session: Session | None = field(default=None, repr=False, compare=False)
    """The session that measured them: delta_phi reads its cache."""

    def __repr__(self) -> str:
        counts = Counter(SHORT[r.status] for r in self.rows if r.status is not None)
        verdicts = ", ".join(f"{n} {word}" for word, n in counts.most_common())
        return f"Results({len(self.runs)} run(s): {', '.join(self.runs)}; {len(self.rows)} rows: {verdicts})"

    def to_json(self) -> dict[str, Any]:
        """The --claims-json document: {"meta", "runs", "rows"} (python -m lib compare reads it)."""
        return {"meta": self.provenance, "runs": self.runs, "rows": [r.to_json() for r in self.rows]}

    def _label(self, run: str | None) -> str:
        if run is None:
            if len(self.tables) != 1:
                raise ValueError(f"several runs measured; name one of {sorted(self.tables)}")
            return next(iter(self.tables))
        if run not in self.tables:
            raise ValueError(f"run {run!r} was not measured; measured: {sorted(self.tables)}")
        return run

    def to_pandas(self) -> pandas.DataFrame:
        """The rows as a DataFrame, one per claim and run (COLUMNS); needs pandas."""
        pandas = _pandas("to_pandas")
        sentences = {c.id: c.sentence for c in self.session.write_up.claims} if self.session else {}
        records = []
        for r in self.rows:
            lo, hi = r.interval if r.interval else (None, None)
            records.append(
                {
                    "claim": r.id,
                    "section": r.section,
                    "sentence": sentences.get(r.id, ""),
                    "kind": r.kind,
                    "run": r.run,
                    "status": r.status.value if r.status else None,
                    "holds": r.verdict.holds if r.verdict else None,
                    "verdict": r.verdict_text,
                    "document": r.document,
                    "measured": r.measured,
                    "value": r.value,
                    "interval_lo": lo,
                    "interval_hi": hi,
                    "stability": r.stability,
                    "fragility_k": (r.fragility or {}).get("k"),
                }
            )
        return pandas.DataFrame.from_records(records, columns=list(COLUMNS))

    def table(self, name: str, run: str | None = None) -> pandas.DataFrame:
        """One table of a run as a DataFrame (`r.table("layer_pca")`: 7B, a row per layer); run: its label,
        needed only where several runs were measured. A table of one value per column is one row."""
        pandas = _pandas("table")
        tables = self.tables[self._label(run)]
        if name not in tables:
            raise KeyError(f"no table {name!r}; this run has {sorted(tables)}")
        table = tables[name]
        if isinstance(table, list):
            return pandas.DataFrame.from_records(table)
        if isinstance(table, dict):
            return pandas.DataFrame([table])
        return pandas.DataFrame({name: [table]})

    def delta_phi(self, run: str | None = None, layer: int | None = None, write: Write = "delta_phi") -> torch.Tensor:
        """The run's captured Δφ, from the cache: (n_layers, n_positions, d_model) float32, or layer's
        (n_positions, d_model). write: delta_phi (resid_post - resid_pre), attn (hook_attn_out), ffn (hook_mlp_out).
        A run measured past the held capture's size streamed its statistics and holds no Δφ: ValueError."""
        if write not in KEYS:
            raise ValueError(f"write {write!r} is not allowed; allowed: {', '.join(KEYS)}")
        if self.session is None:
            raise ValueError("these results were read back, not measured: no Δφ to give")
        label = self._label(run)
        try:
            self.session.check_held(label, "delta_phi")
        except ConfigError as e:
            raise ValueError(str(e)) from None
        capture = self.session.run(label).capture  # (n_layers, n_positions, d_model) each
        tensor = capture.write(write)
        if layer is None:
            return tensor
        n_layers = tensor.shape[0]
        if not -n_layers <= layer < n_layers:
            raise ValueError(f"layer {layer} is not allowed; this model has layers 0..{n_layers - 1}")
        return tensor[layer]


def _pandas(what: str) -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(f"Results.{what} needs pandas: pip install pandas") from None
    return pandas


def run(*, baseline: str | None = None, strict_baseline: bool = False, quiet: bool = False, **options: Any) -> Results:
    """Measure and judge, as `pytest claims/` does, through the same Session (lib/session.py): the same
    rows, with their intervals, stability and fragility where asked, and the baseline's judgement.
    `options` are the command line's (model, dataset, n_tokens, device, windows, follow_ups, fragility,
    bootstrap, write_up, cache_dir, ...; lists as comma-separated text); baseline, strict_baseline: a kept
    claims JSON, as --claims-baseline and --strict-baseline; quiet: no progress on stderr. ConfigError names a bad value before any
    model work, or a run that cannot be had (unless skip_unavailable=True)."""
    session = Session.from_options(options, baseline=baseline, strict_baseline=strict_baseline)
    set_quiet(quiet)
    skipped = session.check_available()
    write_up = session.write_up
    results = Results({}, {}, provenance={**meta(dict(options)), "complete": True}, session=session)
    for label, config in session.runs.items():
        results.runs[label] = config.to_json()
        if label not in skipped:
            m = session.measure(label)
            results.tables[label] = {**m.tables, **m.followups}
        results.rows += [session.judged_row(item, label) for item in [*write_up.claims, *write_up.cells]]
    # as the suite: the follow-ups are judged on runs only
    results.rows += [session.judged_row(claim) for claim in write_up.claims if not claim.followup]
    return results


__all__ = ["ConfigError", "Results", "run"]
