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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lib.errors import ConfigError
from lib.report.rows import Row
from lib.session import Session
from lib.setup.provenance import meta

if TYPE_CHECKING:
    import pandas


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

    def to_json(self) -> dict[str, Any]:
        """The --claims-json document: {"meta", "runs", "rows"} (python -m lib compare reads it)."""
        return {"meta": self.provenance, "runs": self.runs, "rows": [r.to_json() for r in self.rows]}

    def to_pandas(self) -> pandas.DataFrame:
        """The rows as a DataFrame, one per claim and run (the claims JSON's columns); needs pandas."""
        try:
            import pandas
        except ImportError:
            raise ImportError("Results.to_pandas needs pandas: pip install pandas") from None
        return pandas.DataFrame([r.to_json() for r in self.rows])


def run(*, baseline: str | None = None, strict_baseline: bool = False, **options: Any) -> Results:
    """Measure and judge, as `pytest claims/` does, through the same Session (lib/session.py): the same
    rows, with their intervals, stability and fragility where asked, and the baseline's judgement.
    `options` are the command line's (model, dataset, n_tokens, device, windows, follow_ups, fragility,
    bootstrap, write_up, cache_dir, ...; lists as comma-separated text); baseline, strict_baseline: a kept
    claims JSON, as --claims-baseline and --strict-baseline. ConfigError names a bad value before any
    model work, or a run that cannot be had (unless skip_unavailable=True)."""
    session = Session.from_options(options, baseline=baseline, strict_baseline=strict_baseline)
    skipped = session.check_available()
    write_up = session.write_up
    results = Results({}, {}, provenance={**meta(dict(options)), "complete": True})
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
