"""Claims fixtures: each section module's SECTIONS parametrized from lib/writeup/claims.py (readable
ids), and `judge`: lib/writeup/judge.py's verdict as the test's outcome, its row (lib/report/rows.py) kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lib.report.rows import Row
from lib.report.text import num
from lib.writeup import judge as the_judge
from lib.writeup.claims import CLAIMS, Cell, Claim, cells_in, claims_in
from lib.writeup.judge import Status, Verdict


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    sections = getattr(metafunc.module, "SECTIONS", ())
    if "cell" in metafunc.fixturenames:
        metafunc.parametrize("cell", cells := cells_in(*sections), ids=[c.id for c in cells])
    if "claim" in metafunc.fixturenames:
        followups = getattr(metafunc.module, "FOLLOWUPS", False)  # claims/test_followups.py: the follow-up claims
        chosen = [c for c in CLAIMS if c.followup] if followups else [c for c in claims_in(*sections) if not c.followup]
        metafunc.parametrize("claim", chosen, ids=[c.id for c in chosen])


class Judge:
    """Records a claim test's row, asks the judge, and turns its verdict into the test's outcome."""

    def __init__(self, request: pytest.FixtureRequest, lenient: bool) -> None:
        self.request, self.lenient = request, lenient

    def _decide(self, row: Row, decide: Callable[[], Verdict]) -> None:
        """The row is recorded first, so a test that raises or a fixture that skips still has one."""
        properties = self.request.node.user_properties
        properties.append(("claim", row.to_json()))
        at, verdict = len(properties) - 1, decide()
        row.record(verdict)
        properties[at] = ("claim", row.to_json())
        if verdict.status is Status.SKIPPED:
            pytest.skip(verdict.reason)
        if verdict.status is Status.CONTRADICTED:
            pytest.xfail(f"contradicted by the document itself: {verdict.reason}")
        if verdict.status is Status.DOES_NOT_HOLD and self.lenient and row.kind != "document":
            pytest.xfail(f"does not hold for this run: {verdict.reason}")
        if verdict.status in (Status.DOES_NOT_HOLD, Status.FAILS):
            pytest.fail(verdict.reason, pytrace=False)

    def on_run(self, item: Claim | Cell, row: Row) -> None:
        def tables() -> dict[str, Any]:  # a follow-up's tables are computed on request (--follow-ups), else skip
            tables, followup = self.request.getfixturevalue("tables"), isinstance(item, Claim) and item.followup
            return {**tables, **self.request.getfixturevalue("followup_tables")} if followup else tables

        config = self.request.getfixturevalue("run_config").to_json()
        self._decide(row, lambda: the_judge.on_run(item, tables, config))

    def cell(self, cell: Cell) -> None:
        self.on_run(cell, Row(cell.id, cell.section, "cell", num(cell.value), run=self.request.getfixturevalue("run")))

    def sentence(self, claim: Claim) -> None:
        run, document = self.request.getfixturevalue("run"), the_judge.document_side(claim)
        self.on_run(claim, Row(claim.id, claim.section, "measured", document, ja=claim.ja, run=run))

    def document(self, claim: Claim) -> None:
        self._decide(Row(claim.id, claim.section, "document", ja=claim.ja), lambda: the_judge.on_document(claim))


@pytest.fixture
def judge(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Judge:
    return Judge(request, lenient=pytestconfig.getoption("dphi_claims_xfail"))


@pytest.fixture
def table_snapshot(snapshot: Any, run_config: Any) -> Any:
    """syrupy's snapshot, filed under snapshots/<run id>/ (run_config: a RunConfig) with float tolerance."""
    from lib.report.snapshot import extension_for

    return snapshot.use_extension(extension_for(run_config.run_id))
