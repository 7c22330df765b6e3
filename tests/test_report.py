"""The report's layout (issue #27: a report that pastes, width and volume, the figure): the Markdown
report (lib/report/markdown.py), the terminal summary (lib/report/terminal.py), the order of the claims to
look at (lib/report/summary.py), the write-up's tables (lib/report/sections.py), the catalogue
(lib/writeup/catalogue.py), the run header (lib/plugin.py) and the figure (lib/report/plots.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from test_claims_suite import ROOT, run_claims

from lib.report.markdown import markdown
from lib.report.rows import Row
from lib.report.sections import OUTSIDE, section_of
from lib.report.summary import json_document
from lib.report.terminal import terminal_summary
from lib.writeup.claims import CLAIMS, DOCUMENT_TABLES
from lib.writeup.judge import Verdict

CLAIM = {c.id: c for c in CLAIMS}


def _cell(claim: str, value: float, verdict: str, run: str = "r-w0") -> Row:
    return Row(claim, claim[:2], "cell", "", f"{value:g}", run=run, value=value, verdict=Verdict.from_text(verdict))


def _sentence(claim: str, verdict: str, run: str = "r-w0", kind: str = "measured", **fields: str) -> Row:
    c = CLAIM[claim]
    return Row(
        claim,
        c.section,
        kind,
        ja=c.ja,
        run=run if kind == "measured" else "",
        verdict=Verdict.from_text(verdict),
        **fields,
    )


def _report_rows() -> list[Row]:
    return [
        _cell("7A-mean_norm-layer-3", 18.9, "fails"),  # 7.4% > the norm cells' 5%
        _cell("7A-mean_norm-layer-4", 18.31, "holds"),
        _cell("7A-mean_norm-layer-5", 40.0, "skipped: not judged: another model"),  # far outside, not judged
        _sentence("7A-last-layer-largest", "holds", document="last 354.1", measured="last 4.656"),
        _sentence("7A-last-layer-largest", "holds", kind="document", document="last 354.1"),
        _cell("7D-baseline-ppl", 29.8, "holds"),
        _sentence("7D-harmful-noise", "skipped: follow-up", measured="x"),
        _sentence("7C-norm-dominance-causes-low-k", "does not hold (xfail)", measured="K90 38 raw, 50 balanced"),
        _sentence("7E-attention-consistently-lower", "contradicted by the document", kind="document"),
        _sentence("7B-not-low-rank", "fails", measured="median K90 2"),
        _sentence("7B-layer-0-comparatively-low", "does not hold (xfail)", baseline="holds; measured 22 (b.json)"),
    ]


# ---------------------------------------------------------------- the Markdown report
def test_report_has_a_section_per_table_with_document_measured_and_difference():
    text = markdown(_report_rows(), {"r-w0": {"model": "m"}}, meta=["commit: abc"])
    assert text.index("- commit: abc") > text.index("## Runs")
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    assert sections == [
        "Runs",
        "7A: norms of Δφ(l)",
        "7B: per-layer PCA, K for the cumulative explained variance",
        "7D: low-rank inference",
        "7E: attention vs FFN",
        "Follow-ups (7F-7H: the suite's experiments for sentences the write-up did not test)",
        "Causes (sentences that need the suite's own measurements, lib/tables/causes.py)",
        "Appendix: what the sentences that do not hold, fail or are FRAGILE measured",
    ]
    seven_a = text[text.index("## 7A") : text.index("## 7B")]
    assert "| Layer | mean_norm: document | measured | Δ | std_norm: document | measured | Δ |" in seven_a
    assert f"| 3 | 17.6 | 18.9 | +1.3 {OUTSIDE} | 6.2 | — |  |" in seven_a  # judged, outside its tolerance
    assert "| 4 | 18.3 | 18.31 | +0.01 | 5.1 | — |  |" in seven_a
    assert "| 5 | 23.6 | 40 | +16.4 | 5.8 | — |  |" in seven_a  # outside, but not judged: no ✗
    assert "| 0 |" not in seven_a  # a row the run did not measure is the write-up's, not the report's
    sentence, ja = CLAIM["7A-last-layer-largest"].sentence, CLAIM["7A-last-layer-largest"].ja
    assert f"| 7A-last-layer-largest | {sentence} | {ja} | holds | holds |" in seven_a
    assert "`baseline_ppl`: perplexity: document 29.79, measured 29.8, Δ +0.01" in text
    assert "Every claim test" not in text and "Totals:" not in text  # every row: the JSON
    assert section_of("7D-harmful-noise", "7D") == "follow-ups" and section_of("7A-last-layer-largest", "7A") == "7A"
    document = json_document(_report_rows(), {"r-w0": {}}, {"date": "d"})
    assert document["meta"] == {"date": "d"} and document["rows"][0]["claim"] == "7A-mean_norm-layer-3"


def test_report_opens_with_the_counts_then_what_to_look_at_in_order():
    text = markdown(_report_rows(), {"r-w0": {"model": "m"}})
    head = text[: text.index("## ")]
    assert head.splitlines()[2].startswith("Verdicts: 2 fails, 4 holds, 2 skipped, 2 does not hold (xfail)")
    order = [
        "**Contradicted or overstated by the document: 1**",
        "- **7E-attention-consistently-lower** (7E, on the document): in layer 2 attention needs K = 97",
        "**Changed against the baseline: 1**",
        "- **7B-layer-0-comparatively-low** (7B, r-w0): now does not hold (xfail), measured -; baseline: holds;",
        "**Failures: 2**",
        "- **7A-mean_norm-layer-3** (7A, r-w0): measured 18.9",
        "- **7B-not-low-rank** (7B, r-w0): measured median K90 2",
        "**1 do not hold on a run",
    ]
    at = [head.index(line) for line in order]
    assert at == sorted(at), head
    assert "**1 do not hold on a run (on another model or text: the finding does not carry over)**: causes 1." in head
    assert len(head.splitlines()) <= 25  # one screen
    quiet = markdown([r for r in _report_rows() if r.id.startswith("7A-last")], {"r-w0": {}})
    assert "**Changed against the baseline**: none. **Failures**: none." in quiet


def test_each_sentence_appears_once_in_english_beside_its_japanese():
    rows = _report_rows()
    text = markdown(rows, {"r-w0": {}})
    for claim in {r.id for r in rows if r.kind != "cell"}:
        sentence, ja = CLAIM[claim].sentence, CLAIM[claim].ja
        assert text.count(sentence) == 1, claim
        line = next(line for line in text.splitlines() if sentence in line)
        assert ja in line, claim


def test_holds_in_counts_only_the_runs_that_judged_the_claim():
    from lib.report.markdown import sentences

    rows = [
        _sentence("7A-last-layer-largest", "holds", run="a-w0"),
        _sentence("7A-last-layer-largest", "skipped: not judged: another model", run="b-w0"),
        _sentence("7B-not-low-rank", "skipped: not judged", run="a-w0"),
        _sentence("7B-not-low-rank", "skipped: not judged", run="b-w0"),
    ]
    lines = sentences(rows, ["a-w0", "b-w0"])
    assert lines[2].endswith("| holds | skipped | 1 of 1 runs |")
    assert lines[3].endswith("| skipped | skipped | not judged |")


def test_report_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "models" / "tiny"
    runs = {"r-w0": {"model": str(model), "dataset": "/elsewhere/text.txt"}}
    text = markdown(_report_rows(), runs, str(tmp_path / "out" / "r.png"), meta=[f"options: --model={model}"])
    assert "| `models/tiny` | `/elsewhere/text.txt` |" in text  # outside the working directory: as given
    assert "- options: --model=models/tiny" in text and "![document vs measured](out/r.png)" in text
    assert str(tmp_path) not in text


# ---------------------------------------------------------------- the terminal summary
@pytest.mark.parametrize("columns", [80, 120])
def test_terminal_summary_fits_the_width_and_keeps_numbers_whole(columns):
    long = "measured ratios " + ", ".join(f"{1000 + i * 1.2345:.4f}" for i in range(60))
    rows = _report_rows()
    rows[0].measured = long
    lines = terminal_summary(rows, columns=columns)
    assert max(len(line) for line in lines) <= columns
    assert lines[0] == "totals per section:" and any(line.startswith("  7A: cells 1 fails, 1 holds") for line in lines)
    words = " ".join(lines).split()
    assert all(f"{1000 + i * 1.2345:.4f}" in words or f"{1000 + i * 1.2345:.4f}," in words for i in range(60))


def test_terminal_summary_orders_the_claims_to_look_at_and_counts_what_does_not_carry_over():
    lines = terminal_summary(_report_rows(), columns=120)
    text = "\n".join(lines)
    order = [
        "contradicted or overstated by the document: 1",
        "  7E-attention-consistently-lower (document): contradicted by the document",
        "changed against the baseline: 1",
        "  7B-layer-0-comparatively-low (measured, r-w0)",
        "failures: 2",
        "  7A-mean_norm-layer-3 (cell, r-w0): fails",
        "1 do not hold on a run (on another model or text: the finding does not carry over): causes 1",
        "totals: ",
    ]
    at = [text.index(line) for line in order]
    assert at == sorted(at), text
    assert "7C-norm-dominance-causes-low-k" not in text  # counted, listed with -v
    assert "7B-not-low-rank (measured, r-w0): fails" in text and "7A-last-layer-largest" not in text
    verbose = "\n".join(terminal_summary(_report_rows(), verbose=True, columns=120))
    assert "7C-norm-dominance-causes-low-k (measured, r-w0): does not hold" in verbose
    assert "7A-last-layer-largest (measured, r-w0): holds" in verbose


def _ours(stdout: str) -> list[str]:
    """The lines the suite prints: its header block and its summary section."""
    lines = stdout.splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("dphi")]
    block = lines[header[0] : header[-1] + 1] if header else []
    summary = stdout.split("Experiment 7 claims", 1)[1].split("short test summary", 1)[0].splitlines()[1:-1]
    return block + summary


def test_a_claims_run_fits_80_columns_with_the_kernel_line_in_the_summary(tmp_path, make_model, text_file, monkeypatch):
    model = make_model(n_layer=4, d_model=32, seed=5)
    args = ["--model", str(model), "--dataset", str(text_file), "--n-tokens", "60", "--device", "cpu"]
    monkeypatch.setenv("COLUMNS", "80")
    out = run_claims(tmp_path, "claims/test_claims.py", "-m", "7B", "--claims-xfail", *args)
    assert out.returncode == 0, out.stdout[-3000:]
    ours = _ours(out.stdout)
    assert len(ours) > 10 and max(len(line) for line in ours) <= 80, max(ours, key=len)
    every = out.stdout.splitlines()  # pytest's own header lines too ("plugins: ...")
    assert max(len(line) for line in every) <= 80, max(every, key=len)
    assert not any(line.startswith("benchmark: ") for line in out.stdout.splitlines())  # no benchmark runs
    progress = out.stdout.split("collected", 1)[1].split("Experiment 7 claims", 1)[0]
    assert "attention kernel" not in progress  # not among the progress dots ...
    assert "dphi: attention kernel " in out.stdout.split("Experiment 7 claims", 1)[1]  # ... but in the summary


def test_pytest_benchmark_keeps_its_header_where_benchmarks_may_run():
    command = [sys.executable, "-m", "pytest", "--collect-only", "-p", "no:cacheprovider"]
    out = subprocess.run([*command, "benchmarks/test_pipeline.py"], cwd=ROOT, capture_output=True, text=True)
    assert "\nbenchmark: " in out.stdout, out.stdout[-2000:]


def test_the_embedded_model_report_fits_250_lines(tmp_path):
    report = tmp_path / "r.md"
    args = ["claims/", "--model", "tiny-wikitext", "--device", "cpu", "--claims-xfail", "--claims-report", str(report)]
    out = run_claims(tmp_path, *args)
    assert out.returncode == 0, out.stdout[-3000:]
    lines = report.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250 and lines[2].startswith("Verdicts: ")


# ---------------------------------------------------------------- the catalogue
def _catalogue(*args: str, columns: int = 80) -> list[str]:
    env = {**os.environ, "COLUMNS": str(columns)}
    command = [sys.executable, "-m", "lib", "claims", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, check=True).stdout.splitlines()


def test_the_catalogue_has_a_header_row_filters_and_fits_the_terminal():
    lines = _catalogue()
    assert lines[0].split()[:4] == ["id", "section", "kind", "on"] and max(map(len, lines)) <= 80
    seven_a = [line.split()[0] for line in _catalogue("--section", "7A", columns=200)[1:] if not line.startswith(" ")]
    assert seven_a == [c.id for c in CLAIMS if c.section == "7A"]  # a long sentence may take a line of its own
    contradicted = [line.split()[0] for line in _catalogue("--verdict", "contradicted", columns=200)[1:]]
    assert contradicted == [c.id for c in CLAIMS if c.contradicted]
    wide = _catalogue(columns=200)
    assert max(map(len, wide)) <= 200 and len(wide) < len(lines)  # the sentence beside its claim where it fits


# ---------------------------------------------------------------- the figure
def test_the_figure_has_a_title_one_legend_and_a_band_for_the_windows(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    from lib.report.plots import figure, plot_runs

    windows = {f"m-w{w}": DOCUMENT_TABLES for w in range(2)}
    configs = {label: {"model": "gpt2", "dataset": "wikitext-2-raw-v1", "n_tokens": 1000} for label in windows}
    fig = figure(windows, configs)
    title = fig._suptitle.get_text()
    assert "gpt2 on wikitext-2-raw-v1, 1000 positions (2 windows)" in title and "commit " in title
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "m (mean of 2 windows, band: min-max)" in labels and "7D shared, 7E FFN" in labels
    assert all(any(isinstance(c, PolyCollection) for c in ax.collections) for ax in fig.axes)
    plt.close(fig)
    one = figure({"m-w0": DOCUMENT_TABLES})
    assert not any(isinstance(c, PolyCollection) for ax in one.axes for c in ax.collections)  # one window: no band
    plt.close(one)
    path = tmp_path / "out" / "fig2"  # written where it says, suffix or not, with nothing left beside it
    assert plot_runs({"m-w0": DOCUMENT_TABLES}, path) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and [p.name for p in path.parent.iterdir()] == ["fig2"]


def test_the_fragility_table_fits_the_terminal(monkeypatch):
    from lib.cli import format_fragility

    monkeypatch.setenv("COLUMNS", "80")
    flips = {"holds": True, "k": 3, "share": 0.003, "positions": [[0, 1], [2, 3], [4, 5], [6, 7]], "budget": 50}
    rows = [
        {"claim": "7B-largest-std-ratio-caused-by-outliers", "kind": "sentence", **flips, "fragile": True},
        {"claim": "7A-mean_norm-layer-3", "kind": "cell", "holds": False, "k": None, "budget": 50},
        {"claim": "setup-device-mps", "kind": "sentence", "holds": None},  # not decidable: not listed
    ]
    lines = format_fragility(rows).splitlines()
    assert max(map(len, lines)) <= 80, max(lines, key=len)
    assert " ".join(lines[2:4]).split() == ["claim", "kind", "holds", "fragility"]  # under its row at 80
    assert "setup-device-mps" not in " ".join(lines)
    said = " ".join(" ".join(lines).split())
    assert "FRAGILE: flips at k=3 (0.3%) dropping (0, 1), (2, 3), (4, 5) …" in said and "no flip within 50" in said
