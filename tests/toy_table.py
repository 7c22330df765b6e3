"""A toy table for tests/test_registry.py: the largest ||Δφ(l)|| of each layer.

As a pytest plugin (`-p toy_table`, with tests/ on the path) it registers the table for the whole
session, so that a claims run in a subprocess computes and snapshots it.
"""

from __future__ import annotations

from lib.tables.registry import Table, register

TOY = Table(
    "toy_max_norm",
    "7A",
    row=lambda c, i: {"layer": i, "max_norm": float(c.light.norms[i].max())},
    reads=("norm",),
    per_layer=True,
)


def pytest_configure() -> None:
    register(TOY)
