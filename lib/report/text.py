"""The report's text helpers: one number formatter, one Markdown table, lines wrapped to a display width
(wide characters take two columns), paths relative to the working directory."""

from __future__ import annotations

import math
import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

MIN_WIDTH = 80
"""The narrowest terminal the suite writes for: a narrower COLUMNS still gets 80 columns, as pytest does."""


def num(value: float, digits: int = 4, sign: bool = False, grouping: bool = False, whole: bool = True) -> str:
    """A number as the suite prints it, the report's one formatter: `digits` significant digits; a whole number
    (`whole`; the cells' 354.1 and 1000 read as the write-up prints them) and a number of more than `digits`
    integer digits in full, below 1e9 (-3877, not -3.88e+03); with a sign or thousands separators."""
    spec = ("+" if sign else "") + ("," if grouping else "")
    in_full = math.isfinite(value) and abs(value) < 1e9
    if in_full and (whole and float(value).is_integer() or abs(value) >= 10**digits):
        return format(round(value), f"{spec}d")  # a large number in full: -3877, not -3.88e+03
    return format(value, f"{spec}.{digits}g")


def escape(text: Any) -> str:
    """A Markdown table cell's text: pipes escaped, on one line."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], aligned: bool = False) -> list[str]:
    """A Markdown table's lines. Cells are str()'d as given (escape or num them first); aligned: every
    column right-justified to its widest cell, for a terminal (`python -m lib tables`)."""
    body = [[str(c) for c in row] for row in rows]
    if not aligned:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return lines + ["| " + " | ".join(row) + " |" for row in body]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in body)]


def width(columns: int | None = None) -> int:
    """The width to print at: `columns` (pytest's terminal writer's fullwidth), else the terminal's
    (COLUMNS first, as shutil reads it), never under MIN_WIDTH."""
    import shutil

    return max(MIN_WIDTH, columns or shutil.get_terminal_size((MIN_WIDTH, 24)).columns)


def display_width(text: str) -> int:
    """The columns `text` takes on a terminal: a wide or full-width character (East Asian Width W or F:
    kanji, kana, full-width forms) two, a combining mark none, any other one. unicodedata's widths, not
    wcwidth's: the same for the suite's text (Japanese and Latin), with no dependency; emoji sequences and
    zero-width joiners, which wcwidth would handle, do not occur."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _cut(word: str, room: int) -> tuple[str, str]:
    """The longest head of `word` that fits in `room` columns (at least one character), and the rest."""
    used = 0
    for i, c in enumerate(word):
        used += display_width(c)
        if used > room:
            return word[: max(i, 1)], word[max(i, 1) :]
    return word, ""


def wrap(text: str, indent: str = "", columns: int = MIN_WIDTH, hang: str = "    ") -> list[str]:
    """text in lines of at most `columns` display columns (display_width: wide characters take two), broken
    between words (numbers stay whole); a continuation is indented `hang` more. A single word longer than
    a line is the only thing cut."""
    words = str(text).split()
    lines: list[str] = []
    line, prefix = "", indent
    for word in words:
        while True:
            candidate = f"{line} {word}" if line else prefix + word
            if display_width(candidate) <= columns:
                line = candidate
                break
            if line:  # the word goes to the next line
                lines.append(line)
                line, prefix = "", indent + hang
                continue
            head, word = _cut(word, columns - display_width(prefix))  # longer than a whole line: cut
            lines.append(prefix + head)
            prefix = indent + hang
            if not word:
                break
    if line:
        lines.append(line)
    return lines or [indent.rstrip()]


def ljust(text: str, columns: int) -> str:
    """text padded with spaces to `columns` display columns."""
    return text + " " * max(columns - display_width(text), 0)


NARROWEST_LAST = 30
"""plain_table: below this many columns beside the others, the last column goes under its row."""


def plain_table(header: Sequence[str], rows: Iterable[Sequence[Any]], columns: int = MIN_WIDTH) -> list[str]:
    """A table for the terminal in `columns`: a header row, then the columns left-justified two spaces
    apart, the last (the long text: a sentence, a fragility) wrapped in what is left of the line, or
    under its row, indented, where that would be narrower than NARROWEST_LAST."""
    body = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(display_width(r[i]) for r in body) for i in range(len(header) - 1)]
    left = sum(widths) + 2 * len(widths)
    beside = columns - left >= NARROWEST_LAST
    lines = []
    for row in body:
        head = "  ".join(ljust(x, w) for x, w in zip(row, widths))
        if beside:
            last = wrap(row[-1], "", columns - left, hang="")
            lines += [f"{head}  {last[0]}".rstrip(), *(" " * left + more for more in last[1:])]
        else:
            lines += [head.rstrip(), *(wrap(row[-1], "    ", columns, hang="") if row[-1] else [])]
    return lines


def relative(path: Any) -> str:
    """A path as a reader pastes it: relative to the working directory where it lies under it, else as given."""
    text = str(path)
    if not os.path.isabs(text):
        return text
    try:
        return str(Path(text).relative_to(Path.cwd()))
    except ValueError:
        return text
