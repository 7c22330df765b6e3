"""The claim language's functions, layer roles and shape names (docs/claim-language.md lists them from
here), and its one value type beside numbers: a column, elementwise (lib/writeup/expression.py evaluates)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lib.writeup import roles

Tables = Mapping[str, Any]


class Vec(tuple):  # type: ignore[type-arg]
    """A column (or a selection of one): its values in row order; arithmetic and comparisons elementwise."""

    def __repr__(self) -> str:
        return "[" + ", ".join(show(v) for v in self) + "]"


def show(v: Any) -> str:
    """A value as the measured text prints it: floats to 4 significant digits, K and layers as integers."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, Vec) and v and all(isinstance(x, bool) for x in v):  # a mask: where it holds
        true = [i for i, x in enumerate(v) if x]
        false = [i for i, x in enumerate(v) if not x]
        return f"true at {true or 'none'}, false at {false or 'none'}"
    if isinstance(v, Vec):
        return repr(v)
    return str(v)


# ---------------------------------------------------------------- the functions
def _values(args: tuple[Any, ...], name: str) -> list[Any]:
    if len(args) == 1 and isinstance(args[0], Vec):
        if not args[0] and name not in ("sum", "len"):
            raise roles.NotApplicable(f"{name}() of an empty selection: no row of this model's table is selected")
        return list(args[0])
    if len(args) == 1:
        raise TypeError(f"{name}() of one number {show(args[0])}: give it a column or several numbers")
    return list(args)


def _one(args: tuple[Any, ...], name: str) -> Any:
    if len(args) != 1:
        raise TypeError(f"{name}() takes one argument, got {len(args)}")
    return args[0]


def _truth(args: tuple[Any, ...], name: str, combine: Callable[[Iterable[bool]], bool]) -> bool:
    v = _one(args, name)
    return combine(bool(x) for x in v) if isinstance(v, Vec) else bool(v)


def _arg(args: tuple[Any, ...], name: str, best: Callable[[list[Any]], Any]) -> int:
    values = _values(args, name)
    return values.index(best(values))


FUNCTIONS: dict[str, tuple[Callable[..., Any], str]] = {
    "min": (lambda *a: min(_values(a, "min")), "the smallest value of a column, or of several numbers"),
    "max": (lambda *a: max(_values(a, "max")), "the largest value of a column, or of several numbers"),
    "mean": (lambda *a: statistics.mean(_values(a, "mean")), "the arithmetic mean"),
    "median": (lambda *a: statistics.median(_values(a, "median")), "the median (the mean of the middle two)"),
    "sum": (lambda *a: sum(_values(a, "sum")), "the sum (of a mask: how many are true)"),
    "len": (lambda *a: len(_one(a, "len")), "how many values (rows, layers of a role)"),
    "round": (lambda *a: round(_one(a, "round")), "the nearest whole number (halves to even, as Python)"),
    "abs": (
        lambda *a: Vec(abs(x) for x in v) if isinstance(v := _one(a, "abs"), Vec) else abs(v),
        "the absolute value, elementwise",
    ),
    "all": (lambda *a: _truth(a, "all", all), "every value true (a comparison of columns is elementwise)"),
    "any": (lambda *a: _truth(a, "any", any), "some value true"),
    "argmax": (lambda *a: _arg(a, "argmax", max), "the index (layer, row) of the largest value, the first if tied"),
    "argmin": (lambda *a: _arg(a, "argmin", min), "the index of the smallest value, the first if tied"),
    "rank_correlation": (
        lambda *a: roles.rank_correlation(list(_one(a, "rank_correlation"))),
        "Spearman's rank correlation of a column with its index (depth); 0 when every value is equal",
    ),
}


# ---------------------------------------------------------------- the names
ROLES: dict[str, tuple[Callable[[Tables], Any], str]] = {
    "first": (lambda t: 0, "layer 0"),
    "last": (lambda t: roles.n_layers(t) - 1, "layer L-1"),
    "early": (lambda t: Vec(roles.early(t)), "layers 0 .. L//4-1 (「初期層」; 0-2 on GPT-2)"),
    "middle": (lambda t: Vec(roles.middle(t)), "layers L//4 .. 2L//3 (3-8 on GPT-2)"),
    "middle_wide": (lambda t: Vec(roles.middle_wide(t)), "layers L//4 .. 3L//4, never the last (3-9 on GPT-2)"),
    "inner": (lambda t: Vec(roles.inner(t)), "layers L//4 .. L-2 (3-10 on GPT-2)"),
    "largest_norm_layer": (roles.largest_norm_layer, "the layer of the largest mean ‖Δφ‖"),
    "dominated_layers": (
        lambda t: Vec(roles.dominated_layers(t)),
        "the layers whose mean norm is at most a fifth of the largest's",
    ),
}
"""Layer roles (lib/writeup/roles.py): an index (first, last) or a set of layers; `col[middle]` selects."""
SHAPE: dict[str, tuple[Callable[[Tables], int], str]] = {
    "d_model": (roles.d_model, "the model's width (the last K of the 7D sweep)"),
    "n_layers": (roles.n_layers, "the number of layers (rows of 7A)"),
}


def markdown_names() -> str:
    """docs/claim-language.md's tables of functions, roles and shape names (a test checks the page holds it)."""
    lines = ["| function | what |", "|---|---|"]
    lines += [f"| `{name}` | {what} |" for name, (_, what) in FUNCTIONS.items()]
    lines += ["", "| name | what |", "|---|---|"]
    lines += [f"| `{name}` | {what} |" for name, (_, what) in {**ROLES, **SHAPE}.items()]
    return "\n".join(lines)
