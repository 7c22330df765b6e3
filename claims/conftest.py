"""The claims' parametrization: each section module's SECTIONS (its cells and sentences, from the session's
write-up, lib/writeup/exp7 by default), with readable ids. The `judge` fixture that decides each one is
lib/plugin.py's."""

from __future__ import annotations

import pytest

from lib.plugin import session


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    sections, write_up = getattr(metafunc.module, "SECTIONS", ()), session(metafunc.config).write_up
    if "cell" in metafunc.fixturenames:
        metafunc.parametrize("cell", cells := write_up.cells_in(*sections), ids=[c.id for c in cells])
    if "claim" in metafunc.fixturenames:
        followups = getattr(metafunc.module, "FOLLOWUPS", False)  # claims/test_followups.py: the follow-up claims
        claims = write_up.claims if followups else write_up.claims_in(*sections)
        chosen = [c for c in claims if c.followup == followups]
        metafunc.parametrize("claim", chosen, ids=[c.id for c in chosen])
