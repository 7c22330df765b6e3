"""The benchmark report (benchmarks/ratios.py): ratios against their targets, what moved beyond its noise."""

from __future__ import annotations

import copy
import json

from benchmarks.ratios import NOISE_FLOOR, main, markdown, moved, ratios


def _bench(name: str, fastest: float, slowest: float, **extra: object) -> dict:
    stats = {"min": fastest, "max": slowest, "median": (fastest + slowest) / 2, "rounds": 3}
    return {"name": name, "stats": stats, "extra_info": extra}


REPORT = {
    "datetime": "2026-11-30T23:00:00",
    "machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}, "python_version": "3.11"},
    "commit_info": {"id": "abc", "dirty": True},
    "benchmarks": [
        _bench("test_capture_delta_phi", 1.5, 1.6, plain="bare forward", plain_s=1.4, ours_s=1.5, ratio=1.07),
        _bench("test_tables_cold", 40.0, 40.0, plain="bare forwards", plain_s=30.0, ours_s=40.0, ratio=1.33),
        _bench("test_shared_pca", 0.1, 0.1, plain="dense SVD", plain_s=0.5, ours_s=0.1, ratio=0.2),
        _bench(
            "test_scaling_per_position",
            9.0,
            9.0,
            time_ratio=0.8,
            peak_ratio=1.1,
            rows=[{"positions": 1000, "streamed": False, "seconds": 0.3, "seconds_per_1k": 0.3, "peak_kb": 750_000}],
        ),
    ],
}


def test_each_ratio_with_its_target():
    rows = {r["name"]: r for r in ratios(REPORT)}
    assert rows["test_capture_delta_phi"]["target"] == 1.15 and rows["test_capture_delta_phi"]["meets"] is True
    assert rows["test_tables_cold"]["meets"] is False  # 1.33 > 1.3
    assert rows["test_shared_pca"]["target"] is None and rows["test_shared_pca"]["meets"] is None
    assert rows["test_scaling_per_position:peak_ratio"]["ratio"] == 1.1
    text = markdown(REPORT, None, "make bench")
    assert "| test_tables_cold | 40 s | bare forwards 30 s | 1.33 | ≤ 1.3 ✗ |" in text
    assert "| test_capture_delta_phi | 1.5 s | bare forward 1.4 s | 1.07 | ≤ 1.15 ✓ |" in text
    assert "| 1,000 | held | 0.3 | 0.3 | 732 MiB |" in text and "scaling.png" in text
    assert "Test CPU, 2 cores" in text and "abc (uncommitted changes)" in text


def test_a_figure_moved_beyond_its_noise_is_named():
    later = copy.deepcopy(REPORT)
    later["benchmarks"][0]["stats"].update(min=1.5 * 1.05, max=1.6)  # within 10%: noise
    later["benchmarks"][1]["stats"].update(min=52.0, max=52.0)  # +30%: moved
    later["benchmarks"][1]["extra_info"]["ratio"] = 1.73
    changes = moved(REPORT, later)
    assert {(c["name"], c["figure"]) for c in changes} == {
        ("test_tables_cold", "fastest (s)"),
        ("test_tables_cold", "ratio"),
    }
    assert all(c["noise"] == NOISE_FLOOR for c in changes)
    noisy = copy.deepcopy(later)
    noisy["benchmarks"][1]["stats"].update(min=52.0, max=80.0)  # rounds spread 54%: a 30% change is noise
    assert not [c for c in moved(REPORT, noisy) if c["figure"] == "fastest (s)"]
    text = markdown(later, REPORT, "make bench")
    assert "Moved: 2." in text and "| test_tables_cold | fastest (s) | 40 | 52 | +30.0% | 10% |" in text


def test_the_command_writes_the_report(tmp_path, capsys):
    current, previous, out = tmp_path / "b.json", tmp_path / "prev.json", tmp_path / "r" / "benchmarks.md"
    current.write_text(json.dumps(REPORT))
    assert main([str(current), "--previous", str(previous), "--markdown", str(out)]) == 0  # no previous yet
    assert "No previous benchmark JSON" in out.read_text()
    previous.write_text(json.dumps(REPORT))
    assert main([str(current), "--previous", str(previous), "--markdown", str(out)]) == 0
    assert "0 figure(s) moved" in capsys.readouterr().out and "Moved: 0." in out.read_text()
