"""Claims as expressions: `check = "<expression>"` in a [[claim]], a small safe subset of Python's
expression syntax over a tables dict (docs/claim-language.md).

    all(attn_ffn.attn_k90 < attn_ffn.ffn_k90)
    argmax(norms.mean_norm) == last
    lowrank_ppl.individual_ratio[lowrank_ppl.k == 64] < 2

Parsed with `ast.parse(mode="eval")` and checked when the write-up loads, against a whitelist: the node
kinds below, the names in scope (tables, columns, layer roles, d_model, n_layers, the write-up's
tolerances and [constants]) and the functions of FUNCTIONS. Anything else (a dunder, an import, a call
outside the list, a lambda, a comprehension) is refused with one line naming the claim, the offending
name and what is allowed, before any model work. Evaluation walks the same tree: nothing is `eval`ed
and no attribute of a Python object is ever looked up (a column is a key of a table's rows).

Why our own evaluator: simpleeval decides names and attributes while it evaluates (an error surfaces on
the first run, after the model work) and looks up attributes on the Python objects it is given, guarded
by a list of refused names; asteval is a whole interpreter (statements, loops, function definitions,
numpy's namespace) whose surface is far larger than a comparison over table cells needs. A whitelist of
node kinds over a tree we walk ourselves refuses by default, and knows every table and column the
expression reads from its syntax alone (`Check.reads`: the fragility search uses them, no recorder).

The measured text is automatic: each part of the expression (every operand of a comparison, and
inside it every call, column and arithmetic) is shown with its value, the way pytest's assertion
rewriting shows operands.

An index past a selection's end, or min / max / mean / median / argmax / argmin of an empty selection, is
"does not apply to this model" (roles.NotApplicable), as a Python predicate says it: a K row or a layer
this model's tables do not have.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lib.writeup import roles
from lib.writeup.columns import COLUMNS, RECORD, ROWS, SCALAR
from lib.writeup.language import FUNCTIONS, ROLES, SHAPE, Vec, show

Tables = Mapping[str, Any]


class ExpressionError(ValueError):
    """A `check` expression refused at load: the message is one line naming the claim and what is allowed."""


NODES: dict[type[ast.AST], str] = {
    ast.Expression: "",
    ast.BoolOp: "and, or",
    ast.And: "and",
    ast.Or: "or",
    ast.UnaryOp: "not, -, ~",
    ast.Not: "not",
    ast.USub: "-",
    ast.UAdd: "+",
    ast.Invert: "~ (elementwise not)",
    ast.BinOp: "+ - * / // % **, & | (elementwise and, or)",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.Compare: "== != < <= > >= in, not in",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Call: "function calls",
    ast.Name: "names",
    ast.Attribute: "table.column",
    ast.Subscript: "indexing",
    ast.Slice: "slices",
    ast.Constant: "numbers",
    ast.Tuple: "tuples of values",
    ast.List: "lists of values",
    ast.IfExp: "a if condition else b",
    ast.Load: "",
}
ALLOWED_SYNTAX = (
    "numbers, table.column, indexing [layer, -1, a:b, role, mask], + - * / // % **, & | ~, "
    "== != < <= > >= in, and or not, a if c else b, and calls of the functions"
)
BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
    ast.BitAnd: lambda a, b: bool(a) and bool(b),
    ast.BitOr: lambda a, b: bool(a) or bool(b),
}
COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Scope:
    """What an expression may name: tables (name -> shape, columns), the write-up's tolerances
    (`<name>_rtol`, `<name>_atol`) and [constants] (name -> value), and where an error points."""

    tables: Mapping[str, tuple[str, tuple[str, ...]]]
    numbers: Mapping[str, float]
    where: str = ""

    @classmethod
    def of(
        cls,
        document_tables: Mapping[str, Any],
        tolerances: Mapping[str, Mapping[str, Any]],
        constants: Mapping[str, float],
        where: str = "",
    ) -> Scope:
        """The measured tables (COLUMNS) and the write-up's own (a table it gives that no run measures)."""
        tables = {name: (shape, columns) for name, (shape, _, columns) in COLUMNS.items()}
        for name, table in document_tables.items():
            if name not in tables:
                tables[name] = _shape_of(table)
        numbers: dict[str, float] = {}
        for name, tol in tolerances.items():
            numbers[f"{name}_rtol"], numbers[f"{name}_atol"] = tol["rtol"], tol["atol"]
        numbers.update(constants)
        return cls(tables, numbers, where)

    def allowed(self) -> str:
        """The names an expression may use, for an error line."""
        return (
            f"tables {', '.join(sorted(self.tables))}; roles {', '.join(ROLES)}; {', '.join(SHAPE)}; "
            f"tolerances and constants {', '.join(sorted(self.numbers)) or '(none)'}"
        )


def _shape_of(table: Any) -> tuple[str, tuple[str, ...]]:
    if isinstance(table, list):
        return ROWS, tuple(sorted({k for row in table if isinstance(row, Mapping) for k in row}))
    if isinstance(table, Mapping):
        return RECORD, tuple(table)
    return SCALAR, ()


def _src(source: str, node: ast.AST) -> str:
    return ast.get_source_segment(source, node) or ast.unparse(node)


# ---------------------------------------------------------------- checked at load
@dataclass
class _Reads:
    columns: dict[str, set[str]] = field(default_factory=dict)
    rows: dict[str, set[Any]] = field(default_factory=dict)
    """table -> the rows read: an int, a role's name, or None (every row)."""

    def add(self, table: str, column: str | None, row: Any) -> None:
        self.columns.setdefault(table, set())
        if column is not None:
            self.columns[table].add(column)
        self.rows.setdefault(table, set()).add(row)


def _static_index(node: ast.AST) -> Any:
    """The row a subscript names from its syntax: an int (negative too) or a role's name; None: any row."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value if type(node.operand.value) is int else None
    if isinstance(node, ast.Name) and node.id in ROLES:
        return node.id
    return None


class _Checker:
    def __init__(self, source: str, scope: Scope) -> None:
        self.source, self.scope, self.reads = source, scope, _Reads()

    def refuse(self, what: str, allowed: str) -> ExpressionError:
        return ExpressionError(f"{self.scope.where}: {what}; allowed: {allowed}")

    def visit(self, node: ast.AST, row: Any = None) -> None:
        if type(node) not in NODES:
            raise self.refuse(
                f"{type(node).__name__} ({_src(self.source, node)!r}) is not part of the claim language",
                ALLOWED_SYNTAX,
            )
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            raise self.refuse(f"the constant {node.value!r} is not a number", "numbers, True, False")
        if isinstance(node, ast.Call):
            self.call(node)
            return
        if isinstance(node, ast.Attribute):
            self.attribute(node, row)
            return
        if isinstance(node, ast.Name):
            self.name(node)
            return
        if isinstance(node, ast.Subscript):
            self.visit(node.value, _static_index(node.slice))
            self.visit(node.slice)
            return
        for child in ast.iter_child_nodes(node):
            self.visit(child)

    def call(self, node: ast.Call) -> None:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise self.refuse(
                f"the call {_src(self.source, node.func)!r}(...) is refused: not a function of the claim language",
                f"{', '.join(FUNCTIONS)}",
            )
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.refuse(f"{node.func.id}() with keywords or *args", "positional arguments")
        for a in node.args:
            self.visit(a)

    def attribute(self, node: ast.Attribute, row: Any) -> None:
        if node.attr.startswith("_"):
            raise self.refuse(f"the attribute {node.attr!r} is refused (no dunders, nothing private)", "table.column")
        if not isinstance(node.value, ast.Name) or node.value.id not in self.scope.tables:
            raise self.refuse(
                f"{_src(self.source, node)!r}: an attribute is a column of a table",
                f"tables {', '.join(sorted(self.scope.tables))}",
            )
        table = node.value.id
        shape, columns = self.scope.tables[table]
        if node.attr not in columns:
            raise self.refuse(
                f"{node.attr!r} is not a column of table {table}", f"{', '.join(columns) or '(none: a number)'}"
            )
        self.reads.add(table, node.attr, row if shape == ROWS else None)

    def name(self, node: ast.Name) -> None:
        name = node.id
        if name in ("True", "False"):
            return
        if name.startswith("_"):
            raise self.refuse(f"the name {name!r} is refused (no dunders, nothing private)", self.scope.allowed())
        if name in self.scope.tables:
            shape = self.scope.tables[name][0]
            if shape != SCALAR:
                raise self.refuse(
                    f"table {name} is not a number: name one of its columns ({name}.column)", "table.column"
                )
            self.reads.add(name, None, None)
        elif name == "d_model":
            self.reads.add("lowrank_ppl", "k", -1)  # roles.d_model: the sweep's last K
        elif name in FUNCTIONS:
            raise self.refuse(f"the function {name} is not a value: call it", f"{name}(...)")
        elif name not in ROLES and name not in SHAPE and name not in self.scope.numbers:
            raise self.refuse(f"unknown name {name!r}", self.scope.allowed())


# ---------------------------------------------------------------- evaluation
def _elementwise(f: Callable[[Any, Any], Any], a: Any, b: Any, what: str) -> Any:
    if isinstance(a, Vec) and isinstance(b, Vec):
        if len(a) != len(b):
            raise ValueError(f"{what}: columns of different lengths ({len(a)} and {len(b)})")
        return Vec(f(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Vec):
        return Vec(f(x, b) for x in a)
    if isinstance(b, Vec):
        return Vec(f(a, y) for y in b)
    return f(a, b)


def _index(v: Any, i: Any, what: str) -> Any:
    if not isinstance(v, Vec):
        raise TypeError(f"{what}: only a column can be indexed, not {show(v)}")
    if isinstance(i, slice):
        return Vec(v[i])
    if isinstance(i, Vec):
        if len(i) == len(v) and all(isinstance(x, bool) for x in i):
            return Vec(x for x, keep in zip(v, i, strict=True) if keep)
        return Vec(v[int(j)] for j in i)
    if isinstance(i, bool) or not isinstance(i, int):
        raise TypeError(f"{what}: an index is a layer, a slice, a role or a mask, not {show(i)}")
    if not -len(v) <= i < len(v):
        raise roles.NotApplicable(f"{what}: no row {i} in a selection of {len(v)}")
    return v[i]


class _Evaluator:
    def __init__(self, source: str, tables: Tables, numbers: Mapping[str, float]) -> None:
        self.source, self.tables, self.numbers = source, tables, numbers
        self.values: dict[int, Any] = {}

    def run(self, node: ast.AST) -> Any:
        value = self.eval(node)
        self.values[id(node)] = value
        return value

    def eval(self, node: ast.AST) -> Any:
        what = _src(self.source, node)
        if isinstance(node, ast.Expression):
            return self.run(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.Attribute):
            assert isinstance(node.value, ast.Name)  # the load check allows table.column only
            return _column(self.tables, node.value.id, node.attr)
        if isinstance(node, ast.Subscript):
            return _index(self.run(node.value), self.run(node.slice), what)
        if isinstance(node, ast.Slice):
            parts = [None if p is None else self.run(p) for p in (node.lower, node.upper, node.step)]
            return slice(*parts)
        if isinstance(node, (ast.Tuple, ast.List)):
            return Vec(self.run(e) for e in node.elts)
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            return FUNCTIONS[node.func.id][0](*(self.run(a) for a in node.args))
        if isinstance(node, ast.UnaryOp):
            v = self.run(node.operand)
            if isinstance(node.op, ast.Not):
                return not self.truth(v, what)
            if isinstance(node.op, ast.Invert):
                return Vec(not x for x in v) if isinstance(v, Vec) else not v
            return _elementwise(lambda x, _: -x if isinstance(node.op, ast.USub) else +x, v, 0, what)
        if isinstance(node, ast.BinOp):
            return _elementwise(BINARY[type(node.op)], self.run(node.left), self.run(node.right), what)
        if isinstance(node, ast.BoolOp):
            # every operand evaluated, so that the measured text shows each part
            truths = [self.truth(self.run(v), _src(self.source, v)) for v in node.values]
            return all(truths) if isinstance(node.op, ast.And) else any(truths)
        if isinstance(node, ast.Compare):
            return self.compare(node, what)
        if isinstance(node, ast.IfExp):
            return self.run(node.body) if self.truth(self.run(node.test), what) else self.run(node.orelse)
        raise AssertionError(f"{type(node).__name__} passed the load check")  # NODES lists what eval handles

    def truth(self, v: Any, what: str) -> bool:
        if isinstance(v, Vec):
            if len(v) != 1:
                raise TypeError(f"{what}: a column of {len(v)} values is neither true nor false; use all() or any()")
            return bool(v[0])
        return bool(v)

    def compare(self, node: ast.Compare, what: str) -> Any:
        left = self.run(node.left)
        result: Any = True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.run(right_node)
            if isinstance(op, (ast.In, ast.NotIn)):
                inside = (
                    _elementwise(lambda x, _, r=right: x in r, left, 0, what)
                    if isinstance(left, Vec)
                    else left in right
                )
                step = inside if isinstance(op, ast.In) else _elementwise(lambda x, _: not x, inside, 0, what)
            else:
                step = _elementwise(COMPARE[type(op)], left, right, what)
            result = step if result is True else _elementwise(lambda a, b: bool(a) and bool(b), result, step, what)
            left = right
        return result

    def name(self, name: str) -> Any:
        if name in ("True", "False"):
            return name == "True"
        if name in self.numbers:
            return self.numbers[name]
        if name in ROLES:
            return ROLES[name][0](self.tables)
        if name in SHAPE:
            return SHAPE[name][0](self.tables)
        return self.tables[name]  # a scalar table (the checker allows no other bare table)


def _column(tables: Tables, table: str, column: str) -> Any:
    """A column of a measured table: a Vec for a table of rows, a number for a record."""
    value = tables[table]
    if isinstance(value, Sequence) and not isinstance(value, str):  # rows (a list, or a recorder's view)
        return Vec(row[column] for row in value)
    v = value[column]
    return Vec(v) if isinstance(v, list) else v


# ---------------------------------------------------------------- the measured text
def _parts(tree: ast.Expression, source: str, numbers: Mapping[str, float]) -> list[ast.AST]:
    """The parts the measured text shows: each operand of a comparison (or of and / or / not / all / any
    when it is no comparison), then inside it every call, column, index and arithmetic, outermost first;
    never a number written in the expression, a constant or a tolerance."""
    shown: list[ast.AST] = []

    def silent(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) or (isinstance(node, ast.Name) and node.id in ("True", "False"))

    def measured(node: ast.AST) -> bool:
        """Whether it reads the tables (a column, a scalar table, a role, d_model, n_layers)."""
        quiet = set(numbers) | set(FUNCTIONS) | {"True", "False"}
        return any(
            isinstance(n, ast.Attribute) or (isinstance(n, ast.Name) and n.id not in quiet) for n in ast.walk(node)
        )

    def inside(node: ast.AST) -> None:
        if silent(node) or isinstance(node, (ast.Tuple, ast.List, ast.Slice)):
            return
        if not measured(node):  # a threshold of constants and tolerances: its value, not its parts
            shown.append(node)
            return
        if isinstance(node, (ast.Compare, ast.BoolOp)) or (
            isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
        ):
            walk(node)
            return
        shown.append(node)
        if isinstance(node, ast.BinOp):
            inside(node.left)
            inside(node.right)
        elif isinstance(node, ast.UnaryOp):
            inside(node.operand)
        elif isinstance(node, ast.Call):
            for a in node.args:
                inside(a)
        elif isinstance(node, ast.Subscript):  # the selection indexed, a role's layers, a mask's rows
            if isinstance(node.value, ast.Subscript):
                inside(node.value)
            if measured(node.slice):
                inside(node.slice)
        elif isinstance(node, ast.IfExp):
            inside(node.test)
            inside(node.body)
            inside(node.orelse)

    def walk(node: ast.AST) -> None:
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                inside(operand)
        elif isinstance(node, ast.BoolOp):
            for v in node.values:
                walk(v)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            walk(node.operand)
        elif isinstance(node, ast.Call) and node.func.id in ("all", "any") and node.args:  # type: ignore[attr-defined]
            shown.append(node.args[0])  # the mask: where it holds and where not
            walk(node.args[0])
        else:
            inside(node)

    walk(tree.body)
    return shown


@dataclass(frozen=True)
class Check:
    """A claim's `check` (or `literal_check`): callable on a tables dict as a predicate is, returning
    (holds, the measured text)."""

    source: str
    tree: ast.Expression = field(repr=False, compare=False)
    numbers: Mapping[str, float] = field(repr=False, compare=False)
    read: _Reads = field(repr=False, compare=False)

    def __call__(self, tables: Tables) -> tuple[bool, str]:
        ev = _Evaluator(self.source, tables, self.numbers)
        value = ev.run(self.tree)
        holds = ev.truth(value, self.source)
        seen: dict[str, None] = {}
        for node in _parts(self.tree, self.source, self.numbers):
            if id(node) in ev.values:
                seen.setdefault(f"{_src(self.source, node)} = {show(ev.values[id(node)])}")
        return holds, "; ".join(seen)

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables it reads, from its syntax alone."""
        return tuple(sorted(self.read.columns))

    def reads(self, tables: Tables) -> dict[str, tuple[set[str], set[int | None]]]:
        """table -> (columns, rows) it reads on these tables: a row named by its syntax (an int, a role)
        resolved against them, None for every row (a column used whole, a mask, a computed index)."""
        out: dict[str, tuple[set[str], set[int | None]]] = {}
        for table, columns in self.read.columns.items():
            rows: set[int | None] = set()
            n = len(tables[table]) if isinstance(tables.get(table), list) else 0
            for r in self.read.rows[table]:
                if isinstance(r, str):
                    value = ROLES[r][0](tables)
                    rows.update(int(i) for i in (value if isinstance(value, Vec) else (value,)))
                elif isinstance(r, int) and n:
                    rows.add(r % n)
                else:
                    rows.add(None)
            out[table] = (set(columns), rows)
        return out


def parse(source: str, scope: Scope) -> Check:
    """The expression checked against the scope; ExpressionError (one line) where it steps outside."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError(f"{scope.where}: a check is a non-empty string; allowed: {ALLOWED_SYNTAX}")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as e:
        raise ExpressionError(
            f"{scope.where}: {source!r} is not an expression ({e.msg}, column {e.offset}); allowed: {ALLOWED_SYNTAX}"
        ) from None
    checker = _Checker(source.strip(), scope)
    for node in ast.walk(tree):  # a dunder anywhere is named first, whatever encloses it
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            checker.name(node)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            checker.attribute(node, None)
    checker.visit(tree)
    return Check(source.strip(), tree, dict(scope.numbers), checker.reads)


def check_constants(constants: Mapping[str, Any], where: str) -> dict[str, float]:
    """[constants]: name -> {value, reason}; each a number with its reason, its name free."""
    out: dict[str, float] = {}
    taken = set(FUNCTIONS) | set(ROLES) | set(SHAPE) | set(COLUMNS)
    for name, entry in constants.items():
        if not name.isidentifier() or name.startswith("_") or name in taken:
            raise ExpressionError(
                f"{where}: [constants] {name!r}: a constant's name is an identifier that is no table, role, "
                "function, d_model or n_layers"
            )
        if not isinstance(entry, Mapping) or set(entry) != {"value", "reason"}:
            raise ExpressionError(f'{where}: [constants] {name}: give {{value = <number>, reason = "..."}}')
        value = entry["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ExpressionError(f"{where}: [constants] {name}: value {value!r} is not a finite number")
        out[name] = value
    return out
