"""Two claims JSONs of one session, before and after claims moved from predicates to `check` expressions:
every row identical but its measured text (`measured`, `document`, and a failure's `note` quoting them),
and each number the old text printed found in the new one, to the digits the old printed.

    python tests/compare_measured.py before.json after.json

Prints one line per row whose text changed (claim, kind, run, the old numbers the new text lacks), then
totals; exits 1 where a verdict or another field differs, or a row is missing.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e[-+]?\d+)?")
"""Unsigned: "layers 3-8" and "25.8%-30.6%" are ranges, not negative numbers."""
TEXTS = ("measured", "document", "note")


def numbers(text: str) -> list[str]:
    return NUMBER.findall(text or "")


def same_digits(old: str, new: float) -> bool:
    """new printed to old's digits is old (old '0.845' matches 0.8451; '7' matches 7.0), or within 0.05%."""
    decimals = len(old.split(".")[1]) if "." in old and "e" not in old else 0
    if "e" in old:
        return abs(float(old) - new) <= 1e-3 * abs(float(old))
    step = 10.0**-decimals
    return abs(float(old) - new) <= step / 2 + 1e-12 or abs(float(old) - new) <= 5e-4 * abs(float(old))


def missing(old: str, new: str) -> list[str]:
    """The old text's numbers that no number of the new text equals to the old's digits (a percentage
    as its fraction: "25.8%" is 0.2578)."""
    found = [float(n) for n in numbers(new)]
    found += [100 * f for f in found]
    return [n for n in numbers(old) if not any(same_digits(n, f) for f in found)]


def key(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["claim"], row["kind"], row["run"]


def main(before: str, after: str) -> int:
    old = {key(r): r for r in json.load(open(before))["rows"]}
    new = {key(r): r for r in json.load(open(after))["rows"]}
    bad, changed, complete = [], 0, 0
    for k in sorted(set(old) | set(new)):
        if k not in old or k not in new:
            bad.append(f"{k}: only in {'after' if k in new else 'before'}")
            continue
        a, b = old[k], new[k]
        others = [f for f in sorted(set(a) | set(b)) if f not in TEXTS and a.get(f) != b.get(f)]
        if others:
            bad.append(f"{k}: {', '.join(f'{f}: {a.get(f)!r} -> {b.get(f)!r}' for f in others)}")
        if all(a.get(f) == b.get(f) for f in TEXTS):
            continue
        changed += 1
        lost = [n for f in TEXTS for n in missing(a.get(f) or "", b.get(f) or "")]
        complete += not lost
        print(f"{' '.join(k):60.60} {'every number kept' if not lost else 'lacks ' + ', '.join(lost)}")
    print(
        f"{len(old)} rows before, {len(new)} after; {changed} rows' measured text changed, {complete} of them "
        f"carry every number the old text printed; {len(bad)} rows differ otherwise"
    )
    for line in bad:
        print("DIFFERS", line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
