"""The write-up's claims: what each sentence says, and what decides it.

The claims are data, `lib/writeup/exp7/claims.toml` (one [[claim]] per sentence: id, section, the Japanese
phrase, the English sentence, a `check` expression over the tables (lib/writeup/expression.py,
docs/claim-language.md) or a predicate by name with its parameters, the verdict on the write-up's own
tables and its reason; [constants]: the thresholds the checks name, each with its reason), so a reviewer
checks every claim without reading Python, and `python -m lib claims --markdown` (docs/claims.md) lists
them. The predicates register with `@predicate` (lib/writeup/registry.py): lib/writeup/predicates/
restated.py and lowrank.py (sentences an expression cannot say), causal.py (causal sentences and
follow-ups); the layer roles lib/writeup/roles.py; the write-up's tables and cells lib/writeup/document.py.
This module loads the claims, checking every expression against the write-up's tables, tolerances and
constants, and keeps every name the suite imports.

A sentence's check or predicate runs on a tables dict: on the measured tables it checks the finding;
on the document's own it checks that the sentence follows from the write-up's numbers. A claim may
quote the phrase it tests in the original (`ja`): the original stands where the English rendering
differs. A sentence whose literal reading goes beyond the document's own tables while its qualified
reading holds is "overstated" (both readings are tested: `literal_check` or `literal`).
"""

from __future__ import annotations

import functools
import inspect
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lib.writeup.document import CELLS, DOCUMENT, DOCUMENT_TABLES, SETUP, THRESHOLDS, Cell, Document, Tables, cells_in
from lib.writeup.expression import Scope, check_constants, parse
from lib.writeup.predicates import causal as _causal  # noqa: F401  (its @predicate functions register)
from lib.writeup.predicates import lowrank as _lowrank  # noqa: F401
from lib.writeup.predicates import restated as _restated  # noqa: F401
from lib.writeup.predicates.causal import (
    attention_candidate,
    attention_similar_patterns,
    harmful_noise,
    inner_attention_lower,
    largest_std_ratio_k90_rises_without_outliers,
    layer2_k90_rises_without_outliers,
)
from lib.writeup.predicates.lowrank import rises_8_to_32
from lib.writeup.registry import FACTORIES, PREDICATES
from lib.writeup.roles import (
    NotApplicable,
    Outcome,
    combined_band,
    d_model,
    inner,
    middle,
    middle_wide,
    n_layers,
    tied,
)

__all__ = [
    "CELLS",
    "CLAIMS",
    "CLAIMS_FILE",
    "DOCUMENT_TABLES",
    "SECTIONS",
    "SETUP",
    "THRESHOLDS",
    "Cell",
    "Claim",
    "NotApplicable",
    "Outcome",
    "Tables",
    "attention_candidate",
    "attention_similar_patterns",
    "cells_in",
    "claims_in",
    "combined_band",
    "d_model",
    "harmful_noise",
    "inner",
    "inner_attention_lower",
    "largest_std_ratio_k90_rises_without_outliers",
    "layer2_k90_rises_without_outliers",
    "load_claims",
    "middle",
    "middle_wide",
    "n_layers",
    "rises_8_to_32",
    "tied",
]

CLAIMS_FILE = Path(__file__).parent / "exp7" / "claims.toml"
SECTIONS = DOCUMENT.section_ids
"""exp7's sections, in its order (write-up.toml [sections])."""


@dataclass(frozen=True)
class Claim:
    """One qualitative statement of the write-up."""

    id: str
    section: str
    sentence: str
    """The sentence as the English rendering gives it."""
    predicate: Callable[[Tables], Outcome] | None = None
    scope: str = "any"
    """any: phrased by layer role, applies to every model; gpt2: names GPT-2 small's layers or numbers."""
    untested: str | None = None
    """Why the suite cannot test it (then predicate is None)."""
    contradicted: str | None = None
    """Where the document's own tables contradict it: both sides quoted."""
    document_untestable: str | None = None
    """Why the document's own tables cannot decide it (it needs data the write-up does not give,
    or its verdict changes within the cells' tolerance: "within tolerance: not decided")."""
    literal: Callable[[Tables], Outcome] | None = None
    """The literal reading, where `predicate` is a qualified one (then `overstated` says why)."""
    overstated: str | None = None
    """Where the literal sentence goes beyond the document's own tables while the qualified
    reading (predicate) holds on them: both sides quoted."""
    ja: str = ""
    """The Japanese phrase tested, verbatim from exp7.ja.md."""
    followup: bool = False
    """Tested on the follow-up experiments' tables (7F-7H, lib/tables/followups.py), computed on request only."""
    predicate_name: str = ""
    """The predicate's name in claims.toml (with params), for listings."""
    params: tuple[tuple[str, Any], ...] = ()
    check: str = ""
    """The claim as an expression (lib/writeup/expression.py), where it has one instead of a predicate."""
    literal_check: str = ""
    """The literal reading as an expression."""


FIELDS = {
    "id",
    "section",
    "ja",
    "sentence",
    "predicate",
    "params",
    "literal",
    "check",
    "literal_check",
    "scope",
    "followup",
    "untested",
    "document_untestable",
    "contradicted",
    "overstated",
}
REQUIRED = ("id", "section", "sentence")


def _predicate(where: str, name: str, params: dict[str, Any], document: Document) -> Callable[[Tables], Outcome]:
    """The registered predicate `name` (made from `params` where it is a factory); one with a `document`
    parameter gets the write-up's document bound (its tolerances and set-up, not exp7's)."""
    if name in FACTORIES:
        return FACTORIES[name](**params)
    if name not in PREDICATES:
        raise ValueError(f"{where}: unknown predicate {name!r}; known: {', '.join(sorted(PREDICATES))}")
    if params:
        raise ValueError(f"{where}: predicate {name!r} takes no params, got {params}")
    fn = PREDICATES[name]
    if "document" in inspect.signature(fn).parameters:
        return functools.partial(fn, document=document)
    return fn


def _claim(entry: dict[str, Any], path: Path, scope: Scope, sections: tuple[str, ...], document: Document) -> Claim:
    where = f"{path.name}: claim {entry.get('id', '(without an id)')}"
    unknown = set(entry) - FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(FIELDS)}")
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}; every [[claim]] has {', '.join(REQUIRED)}")
    if sections and entry["section"] not in sections:
        raise ValueError(f"{where}: section {entry['section']!r} is not one of the write-up's {', '.join(sections)}")
    for python, expression in (("predicate", "check"), ("literal", "literal_check")):
        if python in entry and expression in entry:
            raise ValueError(f"{where}: give {python} or {expression}, not both")
    params = entry.get("params", {})
    name = entry.get("predicate")
    check = entry.get("check")
    predicate: Callable[[Tables], Outcome] | None = None
    if check is not None:
        predicate = parse(check, replace(scope, where=f"{where}: check"))
    elif name:
        predicate = _predicate(where, name, params, document)
    literal: Callable[[Tables], Outcome] | None = None
    if "literal_check" in entry:
        literal = parse(entry["literal_check"], replace(scope, where=f"{where}: literal_check"))
    elif "literal" in entry:
        literal = _predicate(where, entry["literal"], {}, document)
    return Claim(
        id=entry["id"],
        section=entry["section"],
        sentence=entry["sentence"],
        predicate=predicate,
        scope=entry.get("scope", "any"),
        untested=entry.get("untested"),
        contradicted=entry.get("contradicted"),
        document_untestable=entry.get("document_untestable"),
        literal=literal,
        overstated=entry.get("overstated"),
        ja=entry.get("ja", ""),
        followup=entry.get("followup", False),
        predicate_name=name or "",
        params=tuple(params.items()),
        check=check or "",
        literal_check=entry.get("literal_check", ""),
    )


def load_claims(
    path: Path = CLAIMS_FILE, document: Document = DOCUMENT, sections: tuple[str, ...] = SECTIONS
) -> tuple[Claim, ...]:
    """The claims of a claims file, in its order; its `check` expressions checked against the write-up's
    tables, tolerances and [constants] (ValueError: one line naming the file, the claim and what is allowed).
    sections: the write-up's (empty: any)."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: is not TOML ({e})") from None
    unknown = set(data) - {"claim", "constants"}
    if unknown:
        raise ValueError(f"{path}: unknown tables {sorted(unknown)}; allowed: [[claim]], [constants]")
    constants = check_constants(data.get("constants", {}), path.name)
    scope = Scope.of(document.tables, document.tolerances, constants)
    claims = tuple(_claim(entry, path, scope, sections, document) for entry in data.get("claim", []))
    seen: set[str] = set()
    for c in claims:
        if c.id in seen:
            raise ValueError(f"{path.name}: claim {c.id}: the id is given twice; ids are unique")
        seen.add(c.id)
    return claims


CLAIMS: tuple[Claim, ...] = load_claims()


def claims_in(*sections: str) -> list[Claim]:
    return [c for c in CLAIMS if c.section in sections]
