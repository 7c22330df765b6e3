"""README.md's excerpt of a claims summary: the embedded model's, as `make test` prints it at 80 columns.

`python docs/excerpt.py` runs the claims suite on the embedded model and rewrites the block between the
README's excerpt markers; tests/test_report.py checks the block against the summary of its own run, so
the README cannot drift from what a user sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- excerpt: python docs/excerpt.py (the embedded model's claims summary at 80 columns) -->"
END = "<!-- /excerpt -->"
ARGS = ["claims/", "--model", "tiny-wikitext", "--device", "cpu", "--claims-xfail", "-p", "no:cacheprovider"]
SKIPPED = "  ..."
KEPT = ("this run:", "findings that carry over:", "do not hold on a run", "the write-up's own tables:", "totals:")
"""The summary's parts the excerpt keeps (each with its wrapped lines); an entry list between them is elided."""


def summary(stdout: str) -> list[str]:
    """The claims summary's lines: after pytest's "claims: <title>" rule, before its next rule."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("=") and " claims: " in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(("=", "-")))
    return lines[start + 1 : end]


def excerpt(lines: list[str]) -> list[str]:
    """The KEPT parts of a summary, in order, "  ..." where lines between them are left out."""
    out: list[str] = []
    keep = first_entry = False
    for line in lines:
        if line.startswith(KEPT) or (line.split(" ", 1)[0].isdigit() and KEPT[2] in line):
            keep, first_entry = True, line.startswith(KEPT[1])
        elif first_entry and line.startswith("  ") and not line.startswith("    "):  # its first finding
            keep, first_entry = True, False
        elif not line.startswith("    "):  # a new part or entry (wrapped lines are indented by four)
            keep = line == "" and keep
        if keep:
            out.append(line)
        elif out and out[-1] != SKIPPED and line:
            out.append(SKIPPED)
    while out and out[-1] in ("", SKIPPED):
        out.pop()
    return out


def block(readme: str) -> list[str]:
    """The README's excerpt, without its fences."""
    inner = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n").splitlines()
    return inner[1:-1]  # within ``` and ```


def main() -> int:
    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run([sys.executable, "-m", "pytest", *ARGS], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], file=sys.stderr)
        return done.returncode
    path = ROOT / "README.md"
    text = path.read_text(encoding="utf-8")
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    lines = excerpt(summary(done.stdout))
    path.write_text(before + BEGIN + "\n```\n" + "\n".join(lines) + "\n```\n" + END + after, encoding="utf-8")
    print(f"README.md: the excerpt's {len(lines)} lines rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
