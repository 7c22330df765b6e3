"""The claims catalogue: every claim with its kind and its verdict on the write-up's own tables.

`python -m lib claims` prints it as a plain table; `--markdown` writes docs/claims.md, which a
test keeps equal to this output (tests/test_document.py).
"""

from __future__ import annotations

from lib.writeup.claims import CLAIMS, SECTIONS, Claim
from lib.writeup.judge import Status, on_document
from lib.writeup.predicates import causal as causal_predicates

UNDECIDED = "within tolerance: not decided"
COMMAND = "python -m lib claims --markdown > docs/claims.md"


def kind(claim: Claim) -> str:
    """untested; follow-up (tables 7F-7H); causal (the causes' tables, lib/tables/causes.py); or table
    (a sentence that restates tables 7A-7E and runs on the write-up's own)."""
    if claim.predicate is None:
        return "untested"
    if claim.followup:
        return "follow-up"
    if getattr(causal_predicates, claim.predicate_name, None) is not None:
        return "causal"
    return "table"


WORDS = {
    Status.HOLDS: "holds",
    Status.DOES_NOT_HOLD: "does not hold",
    Status.CONTRADICTED: "contradicted",
    Status.OVERSTATED: "overstated",
    Status.FAILS: "fails",
}
"""The catalogue's word for the judge's verdict on the document (lib/writeup/judge.py on_document)."""


def verdict(claim: Claim) -> tuple[str, str]:
    """(verdict on the write-up's own tables, its reason or what the predicate measured there): the
    claim tests' judge, so the catalogue says what `test_document` finds. A claim the document does not
    decide says why: not tested, not decidable, or within the cells' tolerance (claims.toml's reason)."""
    if claim.predicate is None:
        return "not tested", claim.untested or ""
    if claim.document_untestable:
        if claim.document_untestable.startswith(UNDECIDED):
            return UNDECIDED, claim.document_untestable.removeprefix(UNDECIDED).lstrip(": ")
        return "not decidable", claim.document_untestable
    v = on_document(claim)
    shown = v.reason if v.status in (Status.CONTRADICTED, Status.OVERSTATED, Status.FAILS) else v.measured
    return WORDS[v.status], shown


def predicate_call(claim: Claim) -> str:
    if not claim.predicate_name:
        return ""
    args = ", ".join(f"{k}={v!r}" for k, v in claim.params)
    return f"{claim.predicate_name}({args})" if args else claim.predicate_name


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """The catalogue as Markdown, one table per section of the write-up."""
    counts: dict[str, int] = {}
    for c in CLAIMS:
        v = verdict(c)[0]
        counts[v] = counts.get(v, 0) + 1
    lines = [
        "# The claims catalogue",
        "",
        f"Generated from `lib/writeup/exp7/claims.toml` by `{COMMAND}`; a test fails when this page is stale.",
        "Each claim: its id, kind, the Japanese phrase it tests (the original stands where the",
        "English rendering differs), the sentence with the reading tested, the predicate that decides",
        "it (`lib/writeup/predicates/restated.py`, `lib/writeup/predicates/lowrank.py`, `lib/writeup/predicates/causal.py`), and its verdict on the write-up's own",
        "tables with the reason. Kinds: `table` restates tables 7A-7E and runs on the write-up's own;",
        "`causal` needs the suite's measurements behind a causal sentence (`lib/tables/causes.py`); `follow-up`",
        "needs tables 7F-7H (`--follow-ups`); `untested` says why. Readings and verdicts are discussed in",
        "`docs/readings.md`.",
        "",
        f"{len(CLAIMS)} claims: "
        + ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        + ".",
    ]
    for section in SECTIONS:
        lines += [
            "",
            f"## {section}",
            "",
            "| id | kind | ja | sentence | predicate | verdict on the document | reason / measured on the document |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in (c for c in CLAIMS if c.section == section):
            v, why = verdict(c)
            row = (c.id, kind(c), c.ja, c.sentence, predicate_call(c), v, why)
            lines.append("| " + " | ".join(_cell(x) for x in row) + " |")
    return "\n".join(lines) + "\n"


UNDECIDED_WORD = "undecided"
"""UNDECIDED in the listing, whose columns must fit 80."""
VERDICTS = (*WORDS.values(), "not tested", "not decidable", UNDECIDED_WORD)
"""Every verdict the listing shows (its --verdict filter's choices)."""
HEADER = ("id", "section", "kind", "on document", "sentence")
"""The listing's header row; "on document": the verdict on the write-up's own tables."""


def listing(section: str | None = None, verdict_is: str | None = None) -> list[tuple[str, ...]]:
    """`python -m lib claims`: one row a claim (HEADER's columns), only those of `section` or with the
    verdict `verdict_is` where given; lib/report/text.py's plain_table prints it at the terminal's width."""
    word = lambda c: UNDECIDED_WORD if verdict(c)[0] == UNDECIDED else verdict(c)[0]  # noqa: E731
    shown = [(c, word(c)) for c in CLAIMS if section in (None, c.section)]
    return [(c.id, c.section, kind(c), v, c.sentence) for c, v in shown if verdict_is in (None, v)]
