"""One claim test's outcome, as every consumer reads it: the summary, the report, compare, the JSON.

A Row travels as its JSON (`to_json`/`from_json`): in pytest's report.user_properties (so pytest-xdist
workers hand it to the controller), in --claims-json and in a baseline read back. `from_json` reads
every claims JSON written so far (rows lacking run, value or measured: their defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from lib.report.text import num
from lib.writeup.claims import Cell, Claim
from lib.writeup.document import Document
from lib.writeup.judge import Status, Verdict, document_side

SHORT = {
    Status.HOLDS: "holds",
    Status.OVERSTATED: "overstated",
    Status.DOES_NOT_HOLD: "does not hold",
    Status.CONTRADICTED: "contradicted",
    Status.SKIPPED: "skipped",
    Status.FAILS: "fails",
}
"""A verdict in one word or two, for the claim x run matrix."""
OPTIONAL = (
    "interval",
    "interval_kind",
    "sd",
    "shift",
    "stability",
    "sentence",
    "report_section",
    "reading",
    "own_set_up",
)
"""Row fields a claims JSON row carries only where they have a value (--bootstrap; a cell has no sentence)."""
HELD = (Status.HOLDS, Status.OVERSTATED)
"""Verdicts that count as "holds" (an overstated sentence's qualified reading holds)."""


@dataclass
class Row:
    """One claim test's outcome."""

    id: str
    section: str
    kind: str
    """cell, measured (a sentence on the measured tables) or document (on the write-up's own)."""
    document: str = ""
    measured: str = ""
    ja: str = ""
    """The Japanese phrase the sentence tests (exp7.ja.md); empty for table cells."""
    note: str = ""
    """'overstated: why' where the literal sentence goes beyond the document's tables and the qualified reading holds."""
    run: str = ""
    """The run's label (lib.setup.matrix.label); empty for claims on the document's own tables."""
    value: float | None = None
    """A table cell's measured value, shown even where the cell's tolerance check does not apply."""
    verdict: Verdict | None = None
    """The test's verdict, as its text shows it (None while the test runs)."""
    baseline: str = ""
    """Where the verdict differs from the --claims-baseline's: the baseline's verdict and measured value."""
    moved: str = ""
    """Where a cell's measured value moved beyond its tolerance against the --claims-baseline: by how much."""
    fragility: dict[str, Any] | None = None
    """With --fragility: the claim's row of Run.fragility (lib/robustness/dropk.py); None without."""
    interval: list[float] | None = None
    """With --bootstrap: a cell's 95 percent interval [lo, hi] (lib/robustness/bootstrap.py interval_of)."""
    interval_kind: str | None = None
    """Which interval: "prediction" (where a fresh sample of as many positions would land) or "population";
    ", lower bound" added for a table of projected passes (bases held at the full fit)."""
    sd: float | None = None
    """With --bootstrap: a cell's bootstrap SD."""
    shift: float | None = None
    """With --bootstrap: a cell's bootstrap shift (the replicates' mean minus the estimate)."""
    stability: float | None = None
    """With --bootstrap: the share of replicate pairs (estimate + t*_i - t*_j) giving the verdict of all positions."""
    sentence: str = ""
    """The sentence the claim tests (claims.toml); empty for table cells."""
    report_section: str = ""
    """The report section the row goes to (report_section): its write-up section, follow-ups or causes."""
    own_set_up: bool | None = None
    """True where the run is the write-up's own set-up (model, text, positions, conventions): a claim that
    does not hold there is not reproduced; None elsewhere (a finding that does not hold does not carry over)."""
    reading: str = ""
    """What decides the sentence (its predicate and parameters): claims with the same reading are one
    finding, printed once (empty for table cells)."""

    @property
    def status(self) -> Status | None:
        return self.verdict.status if self.verdict else None

    @property
    def verdict_text(self) -> str:
        return self.verdict.text() if self.verdict else ""

    def record(self, verdict: Verdict) -> None:
        """What the judge found, as the row shows it: a cell's value, a sentence's measured text, or on
        the document's tables the document side (a row the document does not decide leaves it and `ja` empty)."""
        if self.kind == "document":
            self.document, self.ja = verdict.measured, self.ja if verdict.status is not Status.SKIPPED else ""
            marked = verdict.status in (Status.OVERSTATED, Status.CONTRADICTED)
            self.note = f"{verdict.status.name.lower()}: {verdict.reason}" if marked else ""
        elif verdict.value is not None:
            self.measured, self.value = num(verdict.value), verdict.value
        else:
            self.measured = verdict.measured
        self.verdict = Verdict.from_text(verdict.text())  # what its text shows: a failure's message stays with pytest

    def to_json(self) -> dict[str, Any]:
        """The claims JSON's row: the fields in their order, `claim` for id (last), the verdict as text."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "id"}
        for name in OPTIONAL:  # absent without a value: the rows of a session without --bootstrap are as before
            if data[name] in (None, ""):
                del data[name]
        return {**data, "verdict": self.verdict_text, "claim": self.id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        """A row of any claims JSON; ValueError names a row that lacks claim, kind or verdict."""
        if not isinstance(data, dict) or not {"claim", "kind", "verdict"} <= data.keys():
            raise ValueError(f"row {data!r} lacks claim, kind or verdict")
        known = {f.name for f in fields(cls)} - {"id", "verdict"}
        verdict = Verdict.from_text(data["verdict"]) if data["verdict"] else None
        return cls(
            id=data["claim"],
            section=data.get("section", ""),
            kind=data["kind"],
            verdict=verdict,
            **{k: v for k, v in data.items() if k in known and k not in ("section", "kind") and v is not None},
        )


FOLLOW_UPS, CAUSES = "follow-ups", "causes"
"""The report sections after the write-up's own: sentences tested on the follow-up experiments (computed on
request), and sentences that need the suite's own measurements (the write-up's tables cannot decide them)."""


def report_section(item: Claim | Cell) -> str:
    """The report section of a claim or cell: its write-up section, or follow-ups, or causes."""
    if isinstance(item, Claim) and item.followup:
        return FOLLOW_UPS
    if isinstance(item, Claim) and item.document_untestable:
        return CAUSES
    return item.section


def claim_row(item: Claim | Cell, run: str = "", document: Document | None = None) -> Row:
    """The row a claim's test starts from, before the judge decides: a cell on a run (the write-up's
    value), a sentence on a run (what it measures on `document`, the write-up's own tables, its Japanese),
    or, with no run, a sentence on the write-up's own tables. Each carries its sentence and report section."""
    part = report_section(item)
    if isinstance(item, Cell):
        return Row(item.id, item.section, "cell", num(item.value), run=run, report_section=part)
    said = {"ja": item.ja, "sentence": item.sentence, "report_section": part, "reading": reading(item)}
    if run:
        if document is None:
            raise TypeError(f"claim_row({item.id!r}, run={run!r}): a sentence on a run needs the write-up's document")
        return Row(item.id, item.section, "measured", document_side(item, document), run=run, **said)
    return Row(item.id, item.section, "document", **said)


def reading(claim: Claim) -> str:
    """What decides a sentence, as text: its check expression, or its predicate's name and parameters
    ("" where untested)."""
    if claim.check:
        return f"check: {claim.check}"
    params = ", ".join(f"{k}={v!r}" for k, v in claim.params)
    return f"{claim.predicate_name}({params})" if claim.predicate_name else ""
