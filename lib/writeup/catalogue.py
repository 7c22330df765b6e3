"""The claims catalogue: every claim of a write-up (exp7 by default) with its kind and its verdict on
the write-up's own tables.

`python -m lib claims` prints it as a plain table; `--markdown` writes docs/claims.md, which a
test keeps equal to this output (tests/test_document.py).
"""

from __future__ import annotations

from lib.writeup.claims import Claim
from lib.writeup.document import Document
from lib.writeup.judge import Status, on_document
from lib.writeup.predicates import causal as causal_predicates
from lib.writeup.write_up import EXP7_WRITE_UP, WriteUp

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


def verdict(claim: Claim, document: Document = EXP7_WRITE_UP.document) -> tuple[str, str]:
    """(verdict on the write-up's own tables, its reason or what the predicate measured there): the
    claim tests' judge, so the catalogue says what `test_document` finds. A claim the document does not
    decide says why: not tested, not decidable, or within the cells' tolerance (claims.toml's reason)."""
    if claim.predicate is None:
        return "not tested", claim.untested or ""
    if claim.document_untestable:
        if claim.document_untestable.startswith(UNDECIDED):
            return UNDECIDED, claim.document_untestable.removeprefix(UNDECIDED).lstrip(": ")
        return "not decidable", claim.document_untestable
    v = on_document(claim, document)
    shown = v.reason if v.status in (Status.CONTRADICTED, Status.OVERSTATED, Status.FAILS) else v.measured
    return WORDS[v.status], shown


def predicate_call(claim: Claim) -> str:
    """How it is decided: its `check` expression (and `literal_check`), or its predicate with its params."""
    if claim.check:
        return f"`{claim.check}`" + (f"; literal: `{claim.literal_check}`" if claim.literal_check else "")
    if not claim.predicate_name:
        return ""
    args = ", ".join(f"{k}={v!r}" for k, v in claim.params)
    return f"{claim.predicate_name}({args})" if args else claim.predicate_name


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


PYTHON = (
    "A claim is decided by a `check` expression over the tables (docs/claim-language.md) where one can say it;",
    "the others stay Python predicates, registered by `@predicate`: the causal sentences and the follow-ups",
    "(they read the suite's own measurements with their own rules of evidence, `lib/writeup/predicates/causal.py`),",
    "and the sentences whose reading needs a search or a fallback an expression does not have: a set of",
    "top-ranked layers (`layers_2_and_last_top_std_ratio`), the first K of a sweep past a threshold with a",
    "default row (`variance_is_not_function`), ties within two cells' combined band (`shared_rises`,",
    "`shared_worse`), rounding with `isclose` (`ratio_column`, `ratios_are_ppl_over_baseline`), the layers",
    "left out of a ratio range (`inner_about_half`), the set of layers meeting a criterion against a set",
    "(`none_meets_50`, `singular_layers`), a reading built on another (`hard_to_compress`), the set-up a count",
    "is compared with (`thousand_positions`),",
    "and measured text an expression cannot show (`middle_effectively_full_rank`'s effective ranks).",
)


def markdown(write_up: WriteUp = EXP7_WRITE_UP) -> str:
    """The catalogue as Markdown, one table per section of the write-up."""
    claims, document = write_up.claims, write_up.document
    counts: dict[str, int] = {}
    for c in claims:
        v = verdict(c, document)[0]
        counts[v] = counts.get(v, 0) + 1
    source = "lib/writeup/exp7/claims.toml" if write_up.is_default else str(write_up.directory / "claims.toml")
    lines = [
        "# The claims catalogue",
        "",
        f"Generated from `{source}` by `{COMMAND}`; a test fails when this page is stale.",
        "Each claim: its id, kind, the Japanese phrase it tests (the original stands where the",
        "English rendering differs), the sentence with the reading tested, how it is decided (its `check`",
        "expression, or a predicate of `lib/writeup/predicates/restated.py`, `lib/writeup/predicates/lowrank.py`,",
        "`lib/writeup/predicates/causal.py`), and its verdict on the write-up's own",
        "tables with the reason. Kinds: `table` restates tables 7A-7E and runs on the write-up's own;",
        "`causal` needs the suite's measurements behind a causal sentence (`lib/tables/causes.py`); `follow-up`",
        "needs tables 7F-7H (`--follow-ups`); `untested` says why. Readings and verdicts are discussed in",
        "`docs/readings.md`.",
        "",
        *PYTHON,
        "",
        f"{len(claims)} claims ({sum(1 for c in claims if c.check)} by expression): "
        + ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        + ".",
    ]
    for section, title in write_up.sections:
        lines += [
            "",
            f"## {title}",
            "",
            "| id | kind | ja | sentence | decided by | verdict on the document | reason / measured on the document |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in (c for c in claims if c.section == section):
            v, why = verdict(c, document)
            row = (c.id, kind(c), c.ja, c.sentence, predicate_call(c), v, why)
            lines.append("| " + " | ".join(_cell(x) for x in row) + " |")
    return "\n".join(lines) + "\n"


UNDECIDED_WORD = "undecided"
"""UNDECIDED in the listing, whose columns must fit 80."""
VERDICTS = (*WORDS.values(), "not tested", "not decidable", UNDECIDED_WORD)
"""Every verdict the listing shows (its --verdict filter's choices)."""
HEADER = ("id", "section", "kind", "on document", "sentence")
"""The listing's header row; "on document": the verdict on the write-up's own tables."""


def listing(
    section: str | None = None, verdict_is: str | None = None, write_up: WriteUp = EXP7_WRITE_UP
) -> list[tuple[str, ...]]:
    """`python -m lib claims`: one row a claim (HEADER's columns), only those of `section` or with the
    verdict `verdict_is` where given; lib/report/text.py's plain_table prints it at the terminal's width."""

    def word(c: Claim) -> str:
        v = verdict(c, write_up.document)[0]
        return UNDECIDED_WORD if v == UNDECIDED else v

    shown = [(c, word(c)) for c in write_up.claims if section in (None, c.section)]
    return [(c.id, c.section, kind(c), v, c.sentence) for c, v in shown if verdict_is in (None, v)]
