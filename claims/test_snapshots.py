"""Every measured table locked by a syrupy snapshot (snapshots/<run id>/test_snapshots/)."""

import pytest

from lib.snapshot import SNAPSHOTS, rounded

TABLES = ("norms", "layer_pca", "shared_pca", "reconstruction", "baseline_ppl", "lowrank_ppl", "attn_ffn")


@pytest.mark.parametrize("name", TABLES)
def test_table_snapshot(name, tables, table_snapshot, run_config, pytestconfig):
    """The measured table equals this run's snapshot, floats within lib.snapshot.FLOAT_RTOL."""
    path = SNAPSHOTS / run_config.run_id / "test_snapshots" / f"test_table_snapshot[{name}].json"
    if not path.exists() and not pytestconfig.getoption("update_snapshots"):
        pytest.fail(
            f"no snapshot of table {name!r} for run {run_config.run_id} ({path}); create it by rerunning "
            "the same command with --snapshot-update, review it and commit it", pytrace=False,
        )
    assert table_snapshot == rounded({name: tables[name]})
