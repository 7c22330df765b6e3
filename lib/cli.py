"""`python -m lib tables`: print tables 7A-7E in the write-up's layout, or write them as JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lib.errors import ConfigError, ResourceUnavailable
from lib.options import OPTIONS, cache_dir


WRITE_UP_TABLES = ("config", "norms", "layer_pca", "shared_pca", "reconstruction", "baseline_ppl", "lowrank_ppl", "attn_ffn")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lib", description="Experiment 7: residual-stream Δφ PCA")
    sub = p.add_subparsers(dest="command", required=True)
    tables = sub.add_parser("tables", help="compute (or read from the cache) and print tables 7A-7E")
    for o in OPTIONS:
        tables.add_argument(f"--{o.name}", default=o.default, type=o.type, choices=o.choices, help=o.help)
    tables.add_argument("--json", type=Path, default=None, help="also write the tables as JSON to this path")
    tables.add_argument("--plot", type=Path, default=None, help="also draw the 7B spectra and the 7D sweep as PNG")
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
            _table("7A: norms of Δφ(l)", ("Layer", "mean_norm", "std_norm"),
                   [(r["layer"], r["mean_norm"], r["std_norm"]) for r in t["norms"]]),
            _table("7B: per-layer PCA, K for the cumulative explained variance", ("Layer", "50%", "80%", "90%", "95%"),
                   [(r["layer"], r["k50"], r["k80"], r["k90"], r["k95"]) for r in t["layer_pca"]]),
            _table("7C: shared basis", ("Threshold", "Shared K"),
                   [(f"{p}%", s[f"k{p}"]) for p in (50, 80, 90, 95)]),
            _table("7C: reconstruction with K shared components", ("K", "cos_sim", "relative_L2"),
                   [(r["k"], r["cos_sim"], r["relative_l2"]) for r in t["reconstruction"]]),
            _table("7D: low-rank inference", ("K", "Individual PPL", "Ind. Ratio", "Shared PPL", "Sh. Ratio"),
                   [(r["k"], r["individual_ppl"], r["individual_ratio"], r["shared_ppl"], r["shared_ratio"])
                    for r in t["lowrank_ppl"]]),
            f"Baseline perplexity: {t['baseline_ppl']:.4g}\n",
            _table("7E: attention vs FFN", ("Layer", "Attn K(90%)", "FFN K(90%)", "Attn/FFN ratio"),
                   [(r["layer"], r["attn_k90"], r["ffn_k90"], r["ratio"]) for r in t["attn_ffn"]]),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from lib import distributed
    from lib.config import build_config, check_batch_size
    from lib.experiment import Run

    writer = int(os.environ.get("RANK", "0")) == 0  # under torchrun rank 0 alone prints and writes
    try:
        check_batch_size(args.batch_size)
        config = build_config(
            model=args.model, dataset=args.dataset, n_tokens=args.n_tokens, device=args.device,
            numerics=args.numerics, positions=args.positions, pca=args.pca, attention=args.attention,
            ks=args.ks,
        )
        if writer:
            print(f"dphi: {config.describe()}", file=sys.stderr)
        if config.unavailable:
            raise ResourceUnavailable(config.unavailable)
        with distributed.process_group(config.device):  # torchrun: every rank computes, rank 0 writes
            tables = Run(config, distributed.SharedStore(cache_dir(args.cache_dir)),
                         check_batch_size(args.batch_size, config.device)).tables
    except (ConfigError, ResourceUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not writer:
        return 0
    print(format_tables(tables))
    if args.json:
        # the write-up's tables first, then the suite's own measurements (README: "The tables from the command line")
        keys = [*WRITE_UP_TABLES, *(k for k in tables if k not in WRITE_UP_TABLES)]
        args.json.write_text(json.dumps({k: tables[k] for k in keys}, indent=2) + "\n")
    if args.plot:
        from lib.plots import plot_tables

        print(f"plot written to {plot_tables(tables, args.plot)}", file=sys.stderr)
    return 0
