"""Claims fixtures: parametrization from the document data, and the judge that decides.

Each section module sets SECTIONS and defines test_cell / test_sentence / test_document;
pytest_generate_tests fills them from lib/writeup/claims.py with readable ids.
"""

from __future__ import annotations

from typing import Any

import pytest

from lib.setup.config import RunConfig
from lib.writeup.claims import CLAIMS, DOCUMENT_TABLES, SETUP, Cell, Claim, NotApplicable, cells_in, claims_in


def is_gpt2_small(config: RunConfig) -> bool:
    return SETUP.is_model(config.to_json())


def cells_skip_reason(config: RunConfig) -> str | None:
    """Why the write-up's numbers do not apply to this run, or None when they do."""
    off = SETUP.differs(config.to_json())
    if not off:
        return None
    return f"the write-up's numbers are for {SETUP.describe()}; this run differs in {', '.join(off)}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    sections = getattr(metafunc.module, "SECTIONS", ())
    followups = getattr(metafunc.module, "FOLLOWUPS", False)
    if "cell" in metafunc.fixturenames:
        cells = cells_in(*sections)
        metafunc.parametrize("cell", cells, ids=[c.id for c in cells])
    if "claim" in metafunc.fixturenames:
        params = []
        chosen = [c for c in CLAIMS if c.followup] if followups else [c for c in claims_in(*sections) if not c.followup]
        for c in chosen:
            marks = []
            if metafunc.function.__name__ == "test_document" and c.contradicted:
                marks.append(
                    pytest.mark.xfail(strict=True, reason=f"contradicted by the document itself: {c.contradicted}")
                )
            params.append(pytest.param(c, id=c.id, marks=marks))
        metafunc.parametrize("claim", params)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) and not float(value).is_integer() else f"{value:g}"


class Judge:
    """Evaluates one cell or sentence, records its row for the summary, and decides."""

    def __init__(self, request: pytest.FixtureRequest, lenient: bool) -> None:
        self.request, self.lenient = request, lenient

    @property
    def config(self) -> RunConfig:
        """The test's run (cells and sentences take `run`; sentences on the document's own tables do not)."""
        return self.request.getfixturevalue("run_config")

    def _row(self, id: str, section: str, kind: str, document: str = "", ja: str = "") -> dict[str, Any]:
        run = self.request.getfixturevalue("run") if kind != "document" else ""
        row = {
            "id": id,
            "section": section,
            "kind": kind,
            "document": document,
            "measured": "",
            "note": "",
            "ja": ja,
            "run": run,
            "value": None,
        }
        self.request.node.user_properties.append(("claim", row))
        return row

    def _tables(self, claim: Claim | None = None) -> dict[str, Any]:
        tables = self.request.getfixturevalue("tables")
        if claim is not None and claim.followup:
            return {**tables, **self.request.getfixturevalue("followup_tables")}
        return tables

    def _does_not_hold(self, message: str) -> None:
        if self.lenient:
            pytest.xfail(f"does not hold for this run: {message}")
        pytest.fail(message, pytrace=False)

    def cell(self, cell: Cell) -> None:
        """The measured value is shown even where the tolerance check does not apply (another model,
        text or convention): that comparison is what a user who changed the run came for."""
        row = self._row(cell.id, cell.section, "cell", _fmt(cell.value))
        measured = cell.measured(self._tables())
        if measured is None:
            pytest.skip("this model's table has no such row")
        row["measured"], row["value"] = _fmt(measured), measured
        reason = cells_skip_reason(self.config)
        if reason:
            pytest.skip(f"not judged: {reason}")
        if not cell.within(measured):
            self._does_not_hold(
                f"{cell.id}: document {cell.value:g}, measured {measured:.6g}, tolerance rtol={cell.rtol:g} "
                f"atol={cell.atol:g} (|diff| {abs(measured - cell.value):.4g}; why this tolerance: {cell.reason})"
            )

    def _document_side(self, claim: Claim) -> str:
        if claim.document_untestable:
            return f"(not decidable: {claim.document_untestable})"
        return claim.predicate(DOCUMENT_TABLES)[1] if claim.predicate else ""

    def sentence(self, claim: Claim) -> None:
        row = self._row(claim.id, claim.section, "measured", self._document_side(claim), claim.ja)
        if claim.untested or claim.predicate is None:
            pytest.skip(f"not tested: {claim.untested}")
        try:
            holds, measured = claim.predicate(self._tables(claim))
        except (NotApplicable, IndexError, KeyError) as e:  # a gpt2-scoped claim may name a layer this model lacks
            if claim.scope == "gpt2" and not is_gpt2_small(self.config):
                pytest.skip("names GPT-2 small's layers or numbers; this run's model is not GPT-2 small")
            if isinstance(e, NotApplicable):
                pytest.skip(f"does not apply to this model: {e}")
            raise
        row["measured"] = measured
        if claim.scope == "gpt2" and not is_gpt2_small(self.config):
            pytest.skip("not judged: names GPT-2 small's layers or numbers; this run's model is not GPT-2 small")
        if not holds:
            self._does_not_hold(
                f"{claim.id}: «{claim.sentence}» does not hold: measured {measured}; the document's own tables: {row['document']}"
            )

    def document(self, claim: Claim) -> None:
        if claim.untested or claim.predicate is None:
            self._row(claim.id, claim.section, "document")
            pytest.skip(f"not tested: {claim.untested}")
        if claim.document_untestable:
            self._row(claim.id, claim.section, "document")
            pytest.skip(claim.document_untestable)
        holds, on_document = claim.predicate(DOCUMENT_TABLES)
        row = self._row(claim.id, claim.section, "document", on_document, claim.ja)
        assert holds, f"«{claim.sentence}» does not follow from the document's own tables: {on_document}"
        if claim.overstated:
            assert claim.literal is not None, f"{claim.id}: an overstated claim needs its literal reading"
            literal_holds, literal = claim.literal(DOCUMENT_TABLES)
            assert not literal_holds, (
                f"{claim.id} is marked overstated, but its literal reading holds on the document's own tables: {literal}"
            )
            row["document"] = f"qualified: {on_document}; literal: {literal}"
            row["note"] = f"overstated: {claim.overstated}"


@pytest.fixture
def judge(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Judge:
    return Judge(request, lenient=pytestconfig.getoption("dphi_claims_xfail"))


@pytest.fixture
def table_snapshot(snapshot: Any, run_config: RunConfig) -> Any:
    """syrupy's snapshot, filed under snapshots/<run id>/ with float tolerance."""
    from lib.report.snapshot import extension_for

    return snapshot.use_extension(extension_for(run_config.run_id))
