"""The claims' parametrization: every section of the session's write-up (lib/writeup/exp7 by default), its
cells and sentences, with readable ids and a marker per section (`-m 7B` runs 7B alone). The `judge`
fixture that decides each one is lib/plugin.py's."""

from __future__ import annotations

from typing import Any

import pytest

from lib.plugin import session

MODULE = "claims/test_claims.py"
ORDER = ("test_cell", "test_sentence", "test_document")
"""Within a section: its cells, its sentences, the sentences against the document."""


def _params(config: pytest.Config, items: list[Any]) -> list[Any]:
    """Each cell or claim as a param with its id and its section's marker (registered on first use)."""
    titles = dict(session(config).write_up.sections)
    registered = {line.split(":")[0] for line in config.getini("markers")}
    for section in dict.fromkeys(i.section for i in items):
        if section not in registered:
            config.addinivalue_line("markers", f"{section}: the write-up's section «{titles.get(section, section)}»")
    return [pytest.param(i, id=i.id, marks=getattr(pytest.mark, i.section)) for i in items]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    write_up = session(metafunc.config).write_up
    followups = getattr(metafunc.module, "FOLLOWUPS", False)  # claims/test_followups.py: the follow-up claims
    if "cell" in metafunc.fixturenames:
        metafunc.parametrize("cell", _params(metafunc.config, list(write_up.cells)))
    if "claim" in metafunc.fixturenames:
        chosen = [c for c in write_up.claims if c.followup == followups]
        metafunc.parametrize("claim", _params(metafunc.config, chosen))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """claims/test_claims.py in the write-up's order: section by section, as one module per section ran."""
    ours = [i for i in items if i.nodeid.startswith(MODULE)]
    if not ours:
        return
    order = {s: n for n, s in enumerate(session(config).write_up.section_ids)}

    def key(item: pytest.Item) -> tuple[int, int]:
        params = item.callspec.params  # type: ignore[attr-defined]
        judged = params.get("cell", params.get("claim"))
        name = getattr(item, "originalname", item.name)
        return order.get(judged.section, len(order)), ORDER.index(name) if name in ORDER else len(ORDER)

    at = items.index(ours[0])
    rest = [i for i in items if not i.nodeid.startswith(MODULE)]
    items[:] = rest[:at] + sorted(ours, key=key) + rest[at:]
