"""The benchmark report: each ratio with its target, the figures, and what moved since the previous run.

    python benchmarks/ratios.py reports/benchmark.json                        # the ratios, in the terminal
    python benchmarks/ratios.py reports/benchmark.json --markdown reports/benchmarks.md \\
        --previous reports/benchmark-previous.json                             # what `make bench` runs

Reads pytest-benchmark's --benchmark-json. Each benchmark stores the plain alternative's time
and the ratio ours / plain in `extra_info` (benchmarks/test_pipeline.py, `record`). Against a
previous JSON a figure "moved" when it changed by more than its noise: the larger of
NOISE_FLOOR and the spread of its rounds in either run.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path
from typing import Any

TARGETS: dict[str, float] = {
    "test_capture_delta_phi": 1.15,
    "test_capture_streamed_statistics": 1.10,
    "test_tables_cold": 1.3,
    "test_tables_warm": 0.05,
    "test_attention_kernel_wrapping": 1.10,
    "test_cold_command": 1.0,
    "test_peak_memory_flat_in_tokens": 1.2,
    "test_family_capture[*]": 1.15,
    "test_family_tables_cold[*]": 1.3,
    # flat in positions: the largest size's time per position and peak RSS over the smallest's,
    # held to the same 1.2 as test_peak_memory_flat_in_tokens
    "test_scaling_per_position:time_ratio": 1.2,
    "test_scaling_per_position:peak_ratio": 1.2,
}
"""Benchmark name (fnmatch pattern; `name:key` for a ratio under another key) -> the ratio's ceiling."""
NOISE_FLOOR = 0.10
"""A single round varies by up to 10% on the 2-core machine these were measured on (docs/regression.md)."""


def target(name: str) -> float | None:
    return next((t for pattern, t in TARGETS.items() if fnmatch.fnmatchcase(name, pattern)), None)


def ratios(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per ratio: name, what it compares, ours, plain, ratio, target, whether it meets it."""
    out = []
    for b in report["benchmarks"]:
        info, name = b.get("extra_info", {}), b["name"]
        if "plain_s" in info:
            out.append(
                {
                    "name": name,
                    "what": info["plain"],
                    "ours": f"{info['ours_s']:.4g} s",
                    "plain": f"{info['plain_s']:.4g} s",
                    "ratio": info["ratio"],
                    "target": target(name),
                }
            )
        elif "peak_kb_1e5" in info:
            out.append(
                {
                    "name": name,
                    "what": "peak RSS, 1e5 positions (streamed) over 1e3 (held)",
                    "ours": f"{info['peak_kb_1e5'] / 1024:.0f} MiB",
                    "plain": f"{info['peak_kb_1e3'] / 1024:.0f} MiB",
                    "ratio": info["ratio"],
                    "target": target(name),
                }
            )
        for key in ("time_ratio", "peak_ratio"):
            if key in info:
                what = "per-position time" if key == "time_ratio" else "peak RSS"
                out.append(
                    {
                        "name": f"{name}:{key}",
                        "what": f"{what}, largest size over smallest",
                        "ours": "",
                        "plain": "",
                        "ratio": info[key],
                        "target": target(f"{name}:{key}"),
                    }
                )
    for row in out:
        row["meets"] = None if row["target"] is None else row["ratio"] <= row["target"]
    return out


def noise(stats: dict[str, Any]) -> float:
    """The relative spread of a benchmark's rounds, (max - min) / min (0 for one round)."""
    return (stats["max"] - stats["min"]) / stats["min"] if stats.get("min") else 0.0


def moved(previous: dict[str, Any], current: dict[str, Any]) -> list[dict[str, Any]]:
    """Benchmarks whose fastest time or ratio changed by more than their noise, against the previous run."""
    before = {b["name"]: b for b in previous["benchmarks"]}
    out = []
    for b in current["benchmarks"]:
        old = before.get(b["name"])
        if old is None:
            continue
        limit = max(NOISE_FLOOR, noise(old["stats"]), noise(b["stats"]))
        figures = [("fastest (s)", old["stats"]["min"], b["stats"]["min"])]
        for key in ("ratio", "time_ratio", "peak_ratio"):
            if key in old.get("extra_info", {}) and key in b.get("extra_info", {}):
                figures.append((key, old["extra_info"][key], b["extra_info"][key]))
        for figure, a, c in figures:
            change = (c - a) / a if a else 0.0
            if abs(change) > limit:
                out.append(
                    {"name": b["name"], "figure": figure, "before": a, "after": c, "change": change, "noise": limit}
                )
    return out


def _mark(meets: bool | None) -> str:
    return "" if meets is None else " ✓" if meets else " ✗"


def markdown(report: dict[str, Any], previous: dict[str, Any] | None, command: str) -> str:
    """reports/benchmarks.md: provenance, each ratio with its target, the figures, what moved."""
    machine, commit = report.get("machine_info", {}), report.get("commit_info", {})
    cpu = machine.get("cpu", {})
    lines = [
        "# Benchmarks",
        "",
        f"- date: {report.get('datetime', 'unknown')}; command: `{command}`",
        f"- machine: {cpu.get('brand_raw', machine.get('processor', 'unknown'))}, {cpu.get('count', '?')} cores, "
        f"{machine.get('system', '')} {machine.get('release', '')}; python {machine.get('python_version', '?')}",
        f"- commit: {commit.get('id', 'unknown')}{' (uncommitted changes)' if commit.get('dirty') else ''}",
        "",
        "## Ratios",
        "",
        "| benchmark | ours | plain alternative | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for r in ratios(report):
        plain = f"{r['what']} {r['plain']}".strip()
        goal = f"≤ {r['target']:g}{_mark(r['meets'])}" if r["target"] is not None else "—"
        lines.append(f"| {r['name']} | {r['ours']} | {plain} | {r['ratio']:.3g} | {goal} |")
    lines += ["", "## Figures", ""]
    scaling = next((b for b in report["benchmarks"] if "rows" in b.get("extra_info", {})), None)
    if scaling:
        lines += [
            "![time per position and peak RSS against positions](scaling.png)",
            "",
            "| positions | path | tables (s) | s per 1000 positions | peak RSS |",
            "|---|---|---|---|---|",
        ]
        for row in scaling["extra_info"]["rows"]:
            lines.append(
                f"| {row['positions']:,} | {'streamed' if row['streamed'] else 'held'} | {row['seconds']:.3g} | "
                f"{row['seconds_per_1k']:.3g} | {row['peak_kb'] / 1024:.0f} MiB |"
            )
        lines.append("")
    lines += ["| benchmark | rounds | fastest (s) | median (s) | slowest (s) |", "|---|---|---|---|---|"]
    for b in report["benchmarks"]:
        s = b["stats"]
        lines.append(f"| {b['name']} | {s['rounds']} | {s['min']:.4g} | {s['median']:.4g} | {s['max']:.4g} |")
    lines += ["", "## Against the previous run", ""]
    if previous is None:
        lines.append("No previous benchmark JSON given (`--previous`); nothing compared.")
    else:
        changes = moved(previous, report)
        lines.append(
            f"Previous run: {previous.get('datetime', 'unknown')}, commit {previous.get('commit_info', {}).get('id', '?')}. "
            f"A figure moved when it changed by more than its noise: the larger of {NOISE_FLOOR:.0%} and the spread "
            f"of its rounds in either run. Moved: {len(changes)}."
        )
        if changes:
            lines += ["", "| benchmark | figure | before | after | change | noise |", "|---|---|---|---|---|---|"]
            lines += [
                f"| {c['name']} | {c['figure']} | {c['before']:.4g} | {c['after']:.4g} | {c['change']:+.1%} | {c['noise']:.0%} |"
                for c in changes
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", type=Path, help="pytest-benchmark's --benchmark-json report")
    p.add_argument("--markdown", type=Path, default=None, help="write the report here (e.g. reports/benchmarks.md)")
    p.add_argument("--previous", type=Path, default=None, help="a previous --benchmark-json report to compare with")
    p.add_argument("--command", default="make bench", help="the command that produced the JSON, for the report")
    args = p.parse_args(argv)
    if not args.json.is_file():
        print(f"error: no benchmark JSON at {args.json} (the benchmark run did not finish?)", file=sys.stderr)
        return 2
    report = json.loads(args.json.read_text())
    previous = json.loads(args.previous.read_text()) if args.previous and args.previous.is_file() else None
    print(f"{'benchmark':50s} {'ratio':>7s} {'target':>8s}  plain alternative")
    for r in ratios(report):
        goal = f"<= {r['target']:g}{_mark(r['meets'])}" if r["target"] is not None else "-"
        print(f"{r['name'][:50]:50s} {r['ratio']:7.3g} {goal:>8s}  {r['what']}")
    if previous is not None:
        changes = moved(previous, report)
        print(f"against {args.previous}: {len(changes)} figure(s) moved beyond their noise")
        for c in changes:
            print(
                f"  {c['name']} {c['figure']}: {c['before']:.4g} -> {c['after']:.4g} ({c['change']:+.1%}, noise {c['noise']:.0%})"
            )
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(report, previous, args.command), encoding="utf-8")
        print(f"benchmark report written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
