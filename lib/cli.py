"""`python -m lib tables`: print tables 7A-7E in the write-up's layout, or write them as JSON;
`python -m lib compare A.json B.json`: a claims result against a baseline (lib/report/compare.py).

List options (--model, --dataset, --numerics, --positions) and --windows give several runs
(lib/setup/matrix.py): one table set per run, printed under the run's label; --json then writes
{"runs": {label: tables}} (one run: its tables at the top level, as before).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lib.errors import ConfigError, ResourceUnavailable
from lib.setup.options import OPTIONS, cache_dir, option
from lib.setup.outputs import check_output, write_atomic
from lib.setup.progress import set_quiet
from lib.writeup.catalogue import VERDICTS


class _Version(argparse.Action):
    """--version: the version and the commit, read only when asked (it runs git)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from lib.setup.provenance import version_line

        print(version_line())
        parser.exit()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lib", description="Experiment 7: residual-stream Δφ PCA")
    p.add_argument("--version", action=_Version, nargs=0, help="print the version and the checkout's commit, and exit")
    sub = p.add_subparsers(dest="command", required=True)
    tables = sub.add_parser("tables", help="compute (or read from the cache) and print tables 7A-7E")
    for o in OPTIONS:
        if o.flag:
            tables.add_argument(f"--{o.name}", action="store_true", help=o.argparse_help)
        else:
            tables.add_argument(
                f"--{o.name}",
                default=o.default,
                type=o.type,
                choices=None if o.listed else o.choices,
                help=o.argparse_help,
            )
    tables.add_argument("--json", type=Path, default=None, help="also write the tables as JSON to this path")
    tables.add_argument(
        "-q", "--quiet", action="store_true", help="no progress (a bar on a terminal, else one line per long stage)"
    )
    tables.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="also draw the runs' 7A norms, 7B K90, 7D ratios and 7E K90, as the extension names: .png, .pdf or .svg",
    )
    tables.add_argument("--no-overlay", action="store_true", help="with --plot: leave out the write-up's own numbers")
    claims = sub.add_parser("claims", help="list the claims: id, section, kind, verdict on the document, sentence")
    claims.add_argument("--markdown", action="store_true", help="the catalogue as Markdown (docs/claims.md)")
    claims.add_argument(
        "--write-up", default=None, help=option("write-up").argparse_help.split(" (default")[0] + " (default: exp7)"
    )
    claims.add_argument("--section", help="only the claims of this section of the write-up (its [sections] ids)")
    claims.add_argument("--verdict", choices=VERDICTS, help="only the claims with this verdict on the document")
    compare = sub.add_parser(
        "compare",
        help="compare two --claims-json results: changed verdicts, then cells that moved; exit 1 when a verdict changed",
    )
    compare.add_argument("baseline", help="the earlier --claims-json file")
    compare.add_argument("current", help="the later --claims-json file")
    compare.add_argument(
        "--allow-unmatched",
        action="store_true",
        help="baseline rows without a counterpart in the current result do not fail the comparison",
    )
    cache = sub.add_parser("cache", help="what the cache holds (list) and what can go (prune): docs/cache.md")
    cache.add_argument("action", choices=("list", "prune"))
    cache.add_argument("--cache-dir", default=None, help="the cache directory (default: as the runs use it)")
    cache.add_argument("--older-than", type=float, default=None, metavar="DAYS", help="prune: entries older than this")
    cache.add_argument("--unread", action="store_true", help="prune: entries no current process reads")
    cache.add_argument("--dry-run", action="store_true", help="prune: say what would go, remove nothing")
    compare.add_argument(
        "--strict-baseline",
        action="store_true",
        help="every changed verdict fails, within the bootstrap's noise too (default: only changes beyond noise)",
    )
    return p


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    from lib.report.text import markdown_table, num

    body = [[num(v, grouping=True, whole=False) if isinstance(v, float) else v for v in row] for row in rows]
    return "\n".join([f"## {title}", "", *markdown_table(header, body, aligned=True), ""])


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
    """Fragility (lib/robustness/dropk.py) of the decidable claims at the terminal's width: k, its share, the
    first witnesses."""
    from lib.report.summary import fragility_text
    from lib.report.text import plain_table, width

    body = [(r["claim"], r["kind"], r["holds"], fragility_text(r)) for r in rows if r["holds"] is not None]
    table = plain_table(("claim", "kind", "holds", "fragility"), body, width())
    return "\n".join(["## Fragility: positions dropped to flip each verdict", "", *table, ""])


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
        from lib.report.text import plain_table, width
        from lib.writeup import catalogue
        from lib.writeup.write_up import load_write_up

        try:
            write_up = load_write_up(args.write_up)
        except ValueError as e:
            print(f"error: --write-up: {e}", file=sys.stderr)
            return 2
        if args.section is not None and args.section not in write_up.section_ids:
            allowed = ", ".join(write_up.section_ids)
            print(
                f"error: --section {args.section!r} is not a section of this write-up; allowed: {allowed}",
                file=sys.stderr,
            )
            return 2
        rows = catalogue.listing(args.section, args.verdict, write_up)
        listed = plain_table(catalogue.HEADER, rows, width())
        print(catalogue.markdown(write_up) if args.markdown else "\n".join(listed) + "\n", end="")
        return 0
    warnings.formatwarning = _one_line  # a cache warning is one line on the terminal, not a source excerpt
    if args.command == "cache":
        return _cache(args)
    if args.command == "compare":
        from lib.report.compare import main as compare

        return compare(args.baseline, args.current, args.allow_unmatched, args.strict_baseline)
    from lib.report.text import width, wrap
    from lib.robustness.bootstrap import describe, uncertainty_json
    from lib.session import Session

    values = {o.key: getattr(args, o.key) for o in OPTIONS}
    set_quiet(args.quiet)
    results: dict[str, dict[str, Any]] = {}
    json_out = plot_out = None
    try:
        session = Session.from_options(values, shared_store=True)
        if session.writer:  # every promised file checked writable before any model work
            json_out = check_output(args.json, "--json") if args.json else None
            plot_out = check_output(_figure(args.plot), "--plot") if args.plot else None
        skipped = session.check_available()
        with session.processes():  # torchrun: every rank computes, rank 0 writes
            for name, config in session.runs.items():
                if session.writer:
                    print("\n".join(wrap(f"dphi: {name}: {config.describe()}", "", width())), file=sys.stderr)
                    if name in skipped:
                        print(f"dphi: {name}: skipped (--skip-unavailable): {config.unavailable}", file=sys.stderr)
            measured = [name for name in session.runs if name not in skipped]
            for name in measured:  # the exact check of the last window's tokens, before any capture
                session.check_window_fits(name)
            for name in measured:
                m = session.measure(name)
                results[name] = {**m.tables, **m.followups}
                if m.fragility is not None:
                    results[name]["fragility"] = m.fragility
                if m.bootstrap is not None:
                    results[name].update(uncertainty_json(m.bootstrap, session.bootstrap_interval))
                    if session.writer:
                        print(f"dphi: {name}: {describe(m.bootstrap, session.bootstrap_interval)}", file=sys.stderr)
    except (ConfigError, ResourceUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not session.writer:
        return 0
    for name, tables in results.items():
        print(f"# {name}\n\n{format_tables(tables)}" if len(results) > 1 else format_tables(tables))
        if "fragility" in tables:
            print(format_fragility(tables["fragility"]))
    status = 0
    if json_out:
        data = (
            _ordered(*results.values()) if len(results) == 1 else {"runs": {n: _ordered(t) for n, t in results.items()}}
        )
        status |= _write(lambda: write_atomic(json_out, json.dumps(data, indent=2) + "\n"), "tables JSON")
    if plot_out:
        from lib.report.plots import plot_runs

        configs = {n: c.to_json() for n, c in session.runs.items()}
        status |= _write(lambda: plot_runs(results, plot_out, configs, session.write_up, not args.no_overlay), "plot")
    return 2 if status else 0


def _figure(path: Path) -> Path:
    """--plot's file: named as given, in the format its extension names (lib/report/plots.py FORMATS: a
    path without a suffix gains .png); another extension is a ConfigError, before any model work."""
    from lib.report.plots import figure_format

    figure_format(path)
    return path if path.suffix else path.with_suffix(".png")


def _cache(args: argparse.Namespace) -> int:
    """`python -m lib cache list|prune` (lib/measure/inventory.py), on the cache the runs use."""
    from lib.measure import inventory
    from lib.robustness.bootstrap import BOOTSTRAP_VERSION
    from lib.robustness.dropk import FRAGILITY_VERSION
    from lib.tables.followups import FOLLOWUPS_VERSION
    from lib.tables.run import CAPTURE_VERSION, TABLES_VERSION

    root = cache_dir(args.cache_dir)
    formats = {"capture": CAPTURE_VERSION, "tables": TABLES_VERSION, "followups": FOLLOWUPS_VERSION}
    formats |= {"bootstrap": BOOTSTRAP_VERSION, "bootstrap-followups": BOOTSTRAP_VERSION}
    formats |= {"fragility": FRAGILITY_VERSION, "fragility-followups": FRAGILITY_VERSION}
    if args.action == "list":
        print("\n".join(inventory.listing(root, formats)))
        return 0
    try:
        lines = inventory.prune(root, args.older_than, args.unread, formats, args.dry_run)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def _write(write: Callable[[], Path], what: str) -> int:
    """One output written on its own: a failure is one line (the others are still written); 1 if it failed."""
    try:
        print(f"{what} written to {write()}", file=sys.stderr)
    except OSError as e:
        print(f"error: the {what} could not be written: {e}", file=sys.stderr)
        return 1
    return 0
