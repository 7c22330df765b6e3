"""`python -m lib tables`: print tables 7A-7E in the write-up's layout, or write them as JSON;
`python -m lib compare A.json B.json`: a claims result against a baseline (lib/report/compare.py).

List options (--model, --dataset, --numerics, --positions) and --windows give several runs
(lib/setup/runs.py): one table set per run, printed under the run's label; --json then writes
{"runs": {label: tables}} (one run: its tables at the top level, as before).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lib.errors import ConfigError, ResourceUnavailable
from lib.setup.options import FRAGILITY_HELP, OPTIONS, REFRESH_HELP, cache_dir


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lib", description="Experiment 7: residual-stream Δφ PCA")
    sub = p.add_subparsers(dest="command", required=True)
    tables = sub.add_parser("tables", help="compute (or read from the cache) and print tables 7A-7E")
    for o in OPTIONS:
        tables.add_argument(
            f"--{o.name}", default=o.default, type=o.type, choices=None if o.listed else o.choices, help=o.help
        )
    tables.add_argument("--json", type=Path, default=None, help="also write the tables as JSON to this path")
    tables.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="also draw document vs measured (7A norms, 7B K90, 7D ratios, 7E K90) for the runs as PNG",
    )
    tables.add_argument("--refresh", action="store_true", help=REFRESH_HELP)
    tables.add_argument(
        "--follow-ups",
        action="store_true",
        help="also run the follow-up experiments 7F-7H (about as many passes again as 7D)",
    )
    tables.add_argument("--fragility", action="store_true", help=FRAGILITY_HELP)
    claims = sub.add_parser("claims", help="list the claims: id, section, kind, verdict on the document, sentence")
    claims.add_argument("--markdown", action="store_true", help="the catalogue as Markdown (docs/claims.md)")
    compare = sub.add_parser(
        "compare",
        help="compare two --claims-json results: changed verdicts, then cells that moved; exit 1 when a verdict changed",
    )
    compare.add_argument("baseline", help="the earlier --claims-json file")
    compare.add_argument("current", help="the later --claims-json file")
    return p


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:,.4g}" if isinstance(v, float) else str(v)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"## {title}", "", line(header), sep, *(line(r) for r in body), ""])


def format_tables(t: dict[str, Any]) -> str:
    """The five tables as Markdown, in the write-up's layout."""
    s = t["shared_pca"]
    return "\n".join(
        [
            _table(
                "7A: norms of Δφ(l)",
                ("Layer", "mean_norm", "std_norm"),
                [(r["layer"], r["mean_norm"], r["std_norm"]) for r in t["norms"]],
            ),
            _table(
                "7B: per-layer PCA, K for the cumulative explained variance",
                ("Layer", "50%", "80%", "90%", "95%"),
                [(r["layer"], r["k50"], r["k80"], r["k90"], r["k95"]) for r in t["layer_pca"]],
            ),
            _table("7C: shared basis", ("Threshold", "Shared K"), [(f"{p}%", s[f"k{p}"]) for p in (50, 80, 90, 95)]),
            _table(
                "7C: reconstruction with K shared components",
                ("K", "cos_sim", "relative_L2"),
                [(r["k"], r["cos_sim"], r["relative_l2"]) for r in t["reconstruction"]],
            ),
            _table(
                "7D: low-rank inference",
                ("K", "Individual PPL", "Ind. Ratio", "Shared PPL", "Sh. Ratio"),
                [
                    (r["k"], r["individual_ppl"], r["individual_ratio"], r["shared_ppl"], r["shared_ratio"])
                    for r in t["lowrank_ppl"]
                ],
            ),
            f"Baseline perplexity: {t['baseline_ppl']:.4g}\n",
            _table(
                "7E: attention vs FFN",
                ("Layer", "Attn K(90%)", "FFN K(90%)", "Attn/FFN ratio"),
                [(r["layer"], r["attn_k90"], r["ffn_k90"], r["ratio"]) for r in t["attn_ffn"]],
            ),
        ]
    )


def format_fragility(rows: Sequence[dict[str, Any]]) -> str:
    """Fragility (lib/fragility/search.py) of the decidable claims as Markdown: k, its share, the first witnesses."""
    from lib.report.summary import fragility_text

    body = [(r["claim"], r["kind"], r["holds"], fragility_text(r)) for r in rows if r["holds"] is not None]
    return _table("Fragility: positions dropped to flip each verdict", ("claim", "kind", "holds", "fragility"), body)


def _ordered(tables: dict[str, Any]) -> dict[str, Any]:
    """The write-up's tables first, then the suite's own measurements (docs/usage.md)."""
    from lib.tables.registry import write_up_order

    first = write_up_order()
    return {k: tables[k] for k in [*first, *(k for k in tables if k not in first)]}


def _one_line(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "claims":
        from lib.writeup import catalogue

        print(catalogue.markdown() if args.markdown else catalogue.plain(), end="")
        return 0
    warnings.formatwarning = _one_line  # a cache warning is one line on the terminal, not a source excerpt
    if args.command == "compare":
        from lib.report.compare import main as compare

        return compare(args.baseline, args.current)
    from lib.fragility.search import fragility_of
    from lib.measure import distributed
    from lib.setup.config import check_batch_size
    from lib.setup.runs import build_runs, labels
    from lib.tables.run import Run, Shared

    writer = int(os.environ.get("RANK", "0")) == 0  # under torchrun rank 0 alone prints and writes
    values = {o.name.replace("-", "_"): getattr(args, o.name.replace("-", "_")) for o in OPTIONS}
    for name in ("cache_dir", "batch_size", "windows"):
        values.pop(name)
    results: dict[str, dict[str, Any]] = {}
    try:
        check_batch_size(args.batch_size)
        configs = build_runs(values, args.windows)
        runs = dict(zip(labels(configs), configs))
        shared, store = Shared(), distributed.SharedStore(cache_dir(args.cache_dir), refresh=args.refresh)
        with distributed.process_group(
            next(iter(runs.values())).device
        ):  # torchrun: every rank computes, rank 0 writes
            for name, config in runs.items():
                if writer:
                    print(f"dphi: {name}: {config.describe()}", file=sys.stderr)
                if config.unavailable:
                    raise ResourceUnavailable(config.unavailable)
            selected = {
                n: Run(c, store, check_batch_size(args.batch_size, c.device), shared=shared) for n, c in runs.items()
            }
            # A run whose tables are cached loads no model (it fit when they were made). The others:
            # sizes that cannot fit stop the command before any model work, then the exact check of
            # the last window's tokens before any capture.
            to_compute = [run for run in selected.values() if not run.cached(args.follow_ups)]
            for run in to_compute:
                run.check_sizes(args.windows)
            for run in to_compute:
                if run.config.window == args.windows - 1:
                    run.selection
            for name, run in selected.items():
                results[name] = {**run.tables, **(run.followups if args.follow_ups else {})}
                if args.fragility:
                    results[name]["fragility"] = fragility_of(run, args.follow_ups)
    except (ConfigError, ResourceUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not writer:
        return 0
    for name, tables in results.items():
        print(f"# {name}\n\n{format_tables(tables)}" if len(results) > 1 else format_tables(tables))
        if "fragility" in tables:
            print(format_fragility(tables["fragility"]))
    if args.json:
        data = (
            _ordered(*results.values()) if len(results) == 1 else {"runs": {n: _ordered(t) for n, t in results.items()}}
        )
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    if args.plot:
        from lib.report.plots import plot_runs

        print(f"plot written to {plot_runs(results, args.plot)}", file=sys.stderr)
    return 0
