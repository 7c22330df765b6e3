"""dphi-claims: Experiment 7 (residual-stream Δφ PCA) as executable claims.

One subpackage per stage of the data flow (docs/internals.md has the map and the import contract):

    setup/      options -> RunConfig: what a run is
    measure/    model -> statistics: the bridge, kernels, the Δφ capture, PCA, projected passes, the cache
    tables/     statistics -> tables: 7A-7E, the causes, the follow-ups; Run (one config's tables, cached)
    writeup/    what the write-up says (its tables, set-up and claims, as data) and how a sentence is decided
    fragility/  tables re-evaluated with positions left out: how many positions a verdict rests on
    report/     rows -> terminal, Markdown, JSON, baselines, snapshots, figure
    plugin, cli the pytest plugin and `python -m lib`; api: `lib.run(...)` for notebooks (docs/python-api.md)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lib.api import Results


def run(**options: Any) -> Results:
    """Measure and judge in Python (lib/api.py `run`): the command line's options, the tables, every
    claim's verdict and the provenance. Imported on first use, so `import lib` stays light."""
    from lib.api import run as run_

    return run_(**options)
