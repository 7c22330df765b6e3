"""The one judge: a table cell or a sentence decided on a tables dict, as a typed Verdict.

Three callers, one decision:
- `decide` (the bare decision on any tables dict) is what the drop-k search (lib/robustness/dropk.py)
  recomputes under drop sets;
- `on_run` adds what the run is (a config dict, RunConfig.to_json: the write-up's set-up? GPT-2
  small?) for the claim tests (claims/conftest.py);
- `on_document` checks a sentence against the write-up's own tables and the marks claims.toml
  gives it (contradicted, overstated, not decidable), for the claim tests and the catalogue.

"Undecided" has one definition, UNDECIDED: a predicate says it cannot decide these tables by raising
NotApplicable (lib/writeup/roles.py), with the reason; a claim scoped to GPT-2 small (it names layer 11
or K = 768) cannot be decided on tables that lack that row, so a LookupError from it is undecided on
any model but GPT-2 small. Every other exception is a bug in a predicate or in the tables, and
propagates: ValueError, ZeroDivisionError or statistics.StatisticsError ("undecided" to the search
before) would have hidden such a bug as a verdict that does not flip.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lib.writeup.claims import Cell, Claim, NotApplicable
from lib.writeup.document import DOCUMENT, Document

Tables = Mapping[str, Any]
Measure = Callable[[Cell, Tables], "float | None"]

UNDECIDED: tuple[type[Exception], ...] = (NotApplicable,)
"""What a predicate raises to say these tables cannot decide it (GPT-2-scoped claims: LookupError too)."""
NO_ROW = "this model's table has no such row"
NOT_GPT2 = "names GPT-2 small's layers or numbers; this run's model is not GPT-2 small"


class Status(enum.Enum):
    """What a claim test found. The values are the claims JSON's words, so old results still load."""

    HOLDS = "holds"
    OVERSTATED = "overstated by the document"
    """The qualified reading holds on the document's tables, the literal one does not (the reason says why)."""
    DOES_NOT_HOLD = "does not hold"
    """Not true of this run. How pytest shows it (xfail with --claims-xfail, else a failure) is presentation:
    the row says DOES_NOT_HOLD either way, so results with and without the flag compare clean."""
    CONTRADICTED = "contradicted by the document"
    """The write-up's own tables contradict the sentence, as claims.toml records."""
    SKIPPED = "skipped"
    """Not judged: not tested, not decidable on these tables, or the run is not the write-up's set-up."""
    FAILS = "fails"
    """The test failed for another reason than its verdict: an error, a mark claims.toml gives that the
    document's tables do not bear out."""


ALIASES = {"does not hold (xfail)": Status.DOES_NOT_HOLD.value}
"""Verdict words of claims JSON files written before the verdict was told apart from pytest's rendering."""
SHOWS_REASON = (Status.SKIPPED, Status.OVERSTATED)
"""The verdicts whose text carries their reason ("skipped: not tested: ..."); the others' reason is
the test's failure or xfail message."""


@dataclass(frozen=True)
class Verdict:
    status: Status
    measured: str = ""
    """What the predicate measured, in words and numbers (a sentence's; a cell's is `value`)."""
    reason: str = ""
    value: float | None = None
    """A table cell's measured value, kept where the cell is not judged (another set-up)."""

    @property
    def holds(self) -> bool | None:
        """True or False where decided (the search's flip test), None where not."""
        return {Status.HOLDS: True, Status.DOES_NOT_HOLD: False}.get(self.status)

    def text(self) -> str:
        """The claims JSON's verdict: "holds", "skipped: not judged: ...", "overstated by the document: ..."."""
        shown = self.status in SHOWS_REASON and self.reason
        return f"{self.status.value}: {self.reason}" if shown else self.status.value

    @classmethod
    def from_text(cls, text: str) -> Verdict:
        """The inverse of `text` (a verdict read back from a claims JSON): the status and the reason it shows."""
        word, _, reason = text.partition(": ")
        try:
            status = Status(ALIASES.get(word, word))
        except ValueError:
            raise ValueError(f"unknown verdict {text!r}; known: {[s.value for s in Status]}") from None
        return cls(status, reason=reason if status in SHOWS_REASON else "")


def _predicate(claim: Claim, tables: Tables, gpt2: bool | None) -> Verdict:
    """The claim's predicate on the tables; gpt2: whether the run is GPT-2 small (None: not known)."""
    assert claim.predicate is not None
    try:
        holds, measured = claim.predicate(tables)  # type: ignore[arg-type]
    except (NotApplicable, LookupError) as e:
        if claim.scope == "gpt2" and gpt2 is False:
            return Verdict(Status.SKIPPED, reason=NOT_GPT2)
        if isinstance(e, UNDECIDED):
            return Verdict(Status.SKIPPED, reason=f"does not apply to this model: {e}")
        if claim.scope == "gpt2" and gpt2 is None:
            return Verdict(Status.SKIPPED, reason=f"names GPT-2 small's layers or numbers: {type(e).__name__}: {e}")
        raise
    return Verdict(Status.HOLDS if holds else Status.DOES_NOT_HOLD, measured)


def decide(item: Claim | Cell, tables: Tables, measure: Measure = Cell.measured) -> Verdict:
    """The bare decision on a tables dict, whatever run they come from: HOLDS or DOES_NOT_HOLD, or
    SKIPPED where the tables cannot decide it. measure: how a cell's value is read (the search reads
    a per-layer table's row by index)."""
    if isinstance(item, Cell):
        value = measure(item, tables)
        if value is None:
            return Verdict(Status.SKIPPED, reason=NO_ROW)
        return Verdict(Status.HOLDS if item.within(value) else Status.DOES_NOT_HOLD, value=value)
    return _predicate(item, tables, gpt2=None)


def document_side(claim: Claim, document: Document = DOCUMENT) -> str:
    """What a sentence's predicate measures on the write-up's own tables (a row's `document`)."""
    if claim.document_untestable:
        return f"(not decidable: {claim.document_untestable})"
    return claim.predicate(document.tables)[1] if claim.predicate else ""


def set_up_differs(config: Mapping[str, Any], document: Document = DOCUMENT) -> str | None:
    """Why the write-up's numbers do not apply to this run (config: RunConfig.to_json), or None when they do."""
    setup = document.setup
    off = setup.differs(config)
    if not off:
        return None
    return f"the write-up's numbers are for {setup.describe()}; this run differs in {', '.join(off)}"


def on_run(
    item: Claim | Cell, tables: Callable[[], Tables], config: Mapping[str, Any], document: Document = DOCUMENT
) -> Verdict:
    """A cell or sentence on a run's measured tables (read only where the claim is tested: a follow-up's
    are computed on request). A cell's value is kept where it is not judged: comparing it with the
    write-up is what a user who changed the run came for."""
    if isinstance(item, Cell):
        verdict = decide(item, tables())
        off = set_up_differs(config, document)
        if verdict.value is None or not off:
            if verdict.status is Status.DOES_NOT_HOLD:
                return _cell_off(item, verdict)
            return verdict
        return Verdict(Status.SKIPPED, reason=f"not judged: {off}", value=verdict.value)
    if item.untested or item.predicate is None:
        return Verdict(Status.SKIPPED, reason=f"not tested: {item.untested}")
    gpt2 = document.setup.is_model(config)
    verdict = _predicate(item, tables(), gpt2)
    if verdict.status is Status.SKIPPED:
        return verdict
    if item.scope == "gpt2" and not gpt2:
        return Verdict(Status.SKIPPED, verdict.measured, f"not judged: {NOT_GPT2}")
    if verdict.status is Status.DOES_NOT_HOLD:
        why = f"{item.id}: «{item.sentence}» does not hold: measured {verdict.measured}; the document's own tables: "
        return Verdict(Status.DOES_NOT_HOLD, verdict.measured, why + document_side(item, document))
    return verdict


def _cell_off(cell: Cell, verdict: Verdict) -> Verdict:
    measured = verdict.value
    assert measured is not None
    return Verdict(
        Status.DOES_NOT_HOLD,
        reason=f"{cell.id}: document {cell.value:g}, measured {measured:.6g}, tolerance rtol={cell.rtol:g} "
        f"atol={cell.atol:g} (|diff| {abs(measured - cell.value):.4g}; why this tolerance: {cell.reason})",
        value=measured,
    )


def on_document(claim: Claim, document: Document = DOCUMENT) -> Verdict:
    """A sentence on the write-up's own tables, against claims.toml's marks. `measured` is the document
    side as a row shows it; FAILS where a mark does not match what the tables give."""
    if claim.untested or claim.predicate is None:
        return Verdict(Status.SKIPPED, reason=f"not tested: {claim.untested}")
    if claim.document_untestable:
        return Verdict(Status.SKIPPED, reason=claim.document_untestable)
    holds, on_document = claim.predicate(document.tables)
    if claim.contradicted:
        if holds:
            why = f"{claim.id} is marked contradicted, but follows from the document's own tables: {on_document}"
            return Verdict(Status.FAILS, on_document, why)
        return Verdict(Status.CONTRADICTED, on_document, claim.contradicted)
    if not holds:
        why = f"«{claim.sentence}» does not follow from the document's own tables: {on_document}"
        return Verdict(Status.DOES_NOT_HOLD, on_document, why)
    if not claim.overstated:
        return Verdict(Status.HOLDS, on_document)
    if claim.literal is None:
        return Verdict(Status.FAILS, on_document, f"{claim.id}: an overstated claim needs its literal reading")
    literal_holds, literal = claim.literal(document.tables)
    if literal_holds:
        why = f"{claim.id} is marked overstated, but its literal reading holds on the document's own tables: {literal}"
        return Verdict(Status.FAILS, on_document, why)
    return Verdict(Status.OVERSTATED, f"qualified: {on_document}; literal: {literal}", claim.overstated)
