"""Every measured table locked by a syrupy snapshot (snapshots/<run id>/test_snapshots/): each table of
lib/tables/registry.py but those whose entry says why not (`unsnapshotted`)."""

import json

import pytest

from lib.report.snapshot import DEVICE_K_ATOL, DEVICE_RTOL, SNAPSHOTS, cpu_snapshot, device_difference, rounded
from lib.tables.registry import TABLES, snapshotted

POSITIONS = ("largest", "top_positions")
"""Which positions rank first: not locked, since equal vectors (the same tokens after BOS) tie."""


def _locked(table):
    if isinstance(table, list):
        return [_locked(r) for r in table]
    if isinstance(table, dict):
        return {k: _locked(v) for k, v in table.items() if k not in POSITIONS}
    return table


@pytest.mark.parametrize("name", snapshotted())
def test_table_snapshot(name, run, table_snapshot, run_config, pytestconfig, request):
    """The measured table equals this run's snapshot, floats within lib.report.snapshot.FLOAT_RTOL.

    A run on mps or cuda without snapshots of its own is checked against the CPU snapshot of the
    same run within the device tolerance (lib.report.snapshot.device_difference), and says so. A run
    without snapshots (the first run of a new model, text, token window or convention) skips,
    saying how to create them, unless --require-snapshots (`make test`: the embedded model's
    committed snapshots must exist and match). A follow-up table (7F-7H) skips without --follow-ups.
    """
    stage = TABLES[name].stage
    tables = request.getfixturevalue("followup_tables" if stage == "followups" else "tables")
    path = SNAPSHOTS / run_config.run_id / "test_snapshots" / f"{request.node.name}.json"
    cpu = cpu_snapshot(run_config, request.node.name)
    if not path.exists() and cpu is not None and not pytestconfig.getoption("update_snapshots"):
        request.node.user_properties.append(
            (
                "snapshot_reference",
                f"{run_config.run_id}: no {run_config.device} snapshot; compared with the CPU snapshot "
                f"{cpu.parent.parent.name} within the device tolerance (rtol {DEVICE_RTOL:g}, K +-{DEVICE_K_ATOL})",
            )
        )
        found = device_difference(json.loads(cpu.read_text()), rounded({name: _locked(tables[name])}))
        assert found is None, f"{name} on {run_config.device} against the CPU snapshot {cpu}: {found}"
        return
    if not path.exists() and not pytestconfig.getoption("update_snapshots"):
        message = (
            f"no snapshot of table {name!r} for run {run_config.run_id} ({path}); create it by rerunning "
            "the same command with --snapshot-update, review it and commit it"
        )
        if pytestconfig.getoption("dphi_require_snapshots"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    assert table_snapshot == rounded({name: _locked(tables[name])})
