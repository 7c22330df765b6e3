"""The report's layout (issue #27: a report that pastes, width and volume, the figure): the Markdown
report (lib/report/markdown.py), the terminal summary (lib/report/terminal.py), the order of the claims to
look at (lib/report/summary.py), the write-up's tables (lib/report/sections.py), the catalogue
(lib/writeup/catalogue.py), the run header (lib/plugin.py) and the figure (lib/report/plots.py)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import pytest
from test_claims_suite import ROOT, run_claims

from lib.report.markdown import markdown as _markdown
from lib.report.rows import Row, reading, report_section
from lib.report.sections import OUTSIDE
from lib.report.summary import json_document
from lib.report.terminal import terminal_summary as _terminal_summary
from lib.writeup.claims import CLAIMS, DOCUMENT_TABLES
from lib.writeup.judge import Verdict
from lib.writeup.write_up import EXP7_WRITE_UP


def markdown(rows, runs, figure=None, meta=None):  # type: ignore[no-untyped-def]
    return _markdown(rows, runs, EXP7_WRITE_UP, figure, meta)


def terminal_summary(rows, verbose=False, columns=80):  # type: ignore[no-untyped-def]
    return _terminal_summary(rows, verbose, columns, write_up=EXP7_WRITE_UP)


CLAIM = {c.id: c for c in CLAIMS}


def _cell(claim: str, value: float, verdict: str, run: str = "r-w0") -> Row:
    row = Row(claim, claim[:2], "cell", "", f"{value:g}", run=run, value=value, verdict=Verdict.from_text(verdict))
    row.report_section = row.section
    return row


def _sentence(claim: str, verdict: str, run: str = "r-w0", kind: str = "measured", **fields: str) -> Row:
    c = CLAIM[claim]
    return Row(
        claim,
        c.section,
        kind,
        ja=c.ja,
        run=run if kind == "measured" else "",
        verdict=Verdict.from_text(verdict),
        sentence=c.sentence,
        report_section=report_section(c),
        reading=reading(c),
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
        _sentence("7C-norm-dominance-causes-low-k", "does not hold", measured="K90 38 raw, 50 balanced"),
        _sentence(
            "7E-attention-consistently-lower",
            "contradicted by the document",
            kind="document",
            note=f"contradicted: {CLAIM['7E-attention-consistently-lower'].contradicted}",
        ),
        _sentence("7B-not-low-rank", "fails", measured="median K90 2"),
        _sentence("7B-layer-0-comparatively-low", "does not hold", baseline="holds; measured 22 (b.json)"),
    ]


# ---------------------------------------------------------------- the Markdown report
GPT2 = {
    "model": "openai-community/gpt2",
    "dataset": "wikitext-2-raw-v1",
    "n_tokens": 1000,
    "numerics": "compat",
    "positions": "all",
    "pca": "centred",
}
"""A run config of the write-up's own set-up (RunConfig.to_json's fields that Setup.differs reads)."""


def test_report_has_a_section_per_table_with_document_measured_and_difference():
    text = markdown(_report_rows(), {"r-w0": GPT2}, meta=["commit: abc"])
    assert text.index("- commit: abc") > text.index("## Runs")
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    assert sections == [
        "Runs",
        "7A: norms of Δφ(l)",
        "7B: per-layer PCA, K for the cumulative explained variance",
        "7D: low-rank inference",
        "7E: attention vs FFN",
        "Follow-ups (the suite's experiments for sentences the write-up did not test)",
        "Causes (sentences that need the suite's own measurements)",
        "The write-up's own tables",
        "Appendix: FRAGILE sentences and sentences changed against the baseline",
    ]
    seven_a = text[text.index("## 7A") : text.index("## 7B")]
    assert "| Layer | mean_norm: write-up | measured | Δ | std_norm: write-up | measured | Δ |" in seven_a
    assert f"| 3 | 17.6 | 18.9 | +1.3 {OUTSIDE} | 6.2 | — |  |" in seven_a  # judged, outside its tolerance
    assert "| 4 | 18.3 | 18.31 | +0.01 | 5.1 | — |  |" in seven_a
    assert "| 5 | 23.6 | 40 | +16.4 | 5.8 | — |  |" in seven_a  # outside, but not judged: no ✗
    assert "| 0 |" not in seven_a  # a row the run did not measure is the write-up's, not the report's
    sentence, ja = CLAIM["7A-last-layer-largest"].sentence, CLAIM["7A-last-layer-largest"].ja
    assert f"| 7A-last-layer-largest | {sentence} | {ja} | holds: last 354.1 | holds: last 4.656 |" in seven_a
    assert "`baseline_ppl`: perplexity: write-up 29.79, measured 29.8, Δ +0.01" in text
    assert "`lowrank_ppl`" not in text  # a table the run measured none of is not shown
    assert "Every claim test" not in text and "Totals:" not in text  # every row: the JSON
    document = json_document(_report_rows(), {"r-w0": {}}, {"date": "d"})
    assert document["meta"] == {"date": "d"} and document["rows"][0]["claim"] == "7A-mean_norm-layer-3"


def test_report_opens_with_the_runs_counts_then_what_carries_over_then_what_to_look_at():
    text = markdown(_report_rows(), {"r-w0": {"model": "m"}})
    head = text[: text.index("## ")]
    assert head.splitlines()[2] == "This run: 3 holds, 4 does not hold, 2 undecided."  # the run's rows alone
    order = [
        "**Findings that carry over: 1**",
        "- **7A-last-layer-largest** (7A, r-w0): measured last 4.656",
        "On the write-up's own tables: 1 holds, 1 contradicted by the document (1 contradicted or overstated",
        "**Changed against the baseline: 1**",
        "- **7B-layer-0-comparatively-low** (7B, r-w0): now does not hold, measured -; baseline: holds;",
        "**Failures: 2**",
        "- **7A-mean_norm-layer-3** (7A, r-w0): measured 18.9",
        "- **7B-not-low-rank** (7B, r-w0): measured median K90 2",
        "**1 do not hold on a run",
    ]
    at = [head.index(line) for line in order]
    assert at == sorted(at), head
    assert "**1 do not hold on a run (on another model or text: the finding does not carry over)**: causes 1." in head
    assert "in layer 2 attention needs K = 97" not in head  # the write-up's own verdicts: their own section
    assert len(head.splitlines()) <= 25  # one screen
    quiet = markdown([r for r in _report_rows() if r.id.startswith("7A-last")], {"r-w0": {}})
    assert "**Changed against the baseline**: none. **Failures**: none." in quiet


def test_the_write_up_own_verdicts_are_counted_apart_and_listed_once():
    rows = _report_rows()
    text = markdown(rows, {"r-w0": {"model": "m"}})
    why = CLAIM["7E-attention-consistently-lower"].contradicted
    assert text.count(why) == 1 and text.index(why) > text.index("## The write-up's own tables")
    assert "Each sentence checked against the write-up's own numbers: 1 holds, 1 contradicted" in text


def test_no_difference_column_across_models_and_one_number_format():
    rows = [
        _cell("7A-mean_norm-layer-3", 4.35, "skipped: not judged: another model"),
        _cell("7A-mean_norm-layer-4", 4.55, "skipped: not judged: another model"),
        _cell("7D-individual_ppl-k-8", 438.5, "fails"),
    ]
    other = markdown(rows, {"r-w0": {"model": "models/tiny-wikitext"}})
    assert "| Layer | mean_norm: write-up | measured | std_norm: write-up | measured |" in other
    assert "| 3 | 17.6 | 4.35 | 6.2 | — |" in other and "Δ |" not in other  # no measured − GPT-2 on another model
    same = markdown(rows, {"r-w0": GPT2})
    assert f"K 8: individual_ppl: write-up 4315, measured 438.5, Δ -3876 {OUTSIDE}," in same  # no 3,877 nor 3.88e+03


def test_claims_that_test_the_same_reading_are_printed_once_and_cross_referenced():
    measured = "middle layers 1-4: K90 [23, 25, 24, 27] = 18.0%-21.1% of d_model"
    rows = [
        _sentence("7B-middle-k90-26-31pct", "holds", measured=measured, document="on the write-up's tables"),
        _sentence("concl-exp7-k90-26-31pct", "holds", measured=measured, document="on the write-up's tables"),
    ]
    text = markdown(rows, {"r-w0": {"model": "m"}})
    assert text.count(measured) == 2  # once in the findings, once in its section: not for the second claim
    assert "- **7B-middle-k90-26-31pct** (also: concl-exp7-k90-26-31pct) (7B, r-w0)" in text
    assert "| holds: as 7B-middle-k90-26-31pct |" in text and "concl-exp7-k90-26-31pct**" not in text
    lines = "\n".join(terminal_summary(rows, columns=200))
    assert "findings that carry over: 1" in lines and "7B-middle-k90-26-31pct (also concl-exp7-k90-26-31pct)" in lines


def test_a_session_of_the_write_up_own_tables_alone_lists_its_verdicts():
    own = [r for r in _report_rows() if r.kind == "document"]
    lines = "\n".join(terminal_summary(own, columns=120))
    assert "this run" not in lines and "in layer 2 attention needs K = 97" in lines
    assert lines.splitlines()[-2] == "totals: no run"


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
    assert lines[2].endswith("| holds | skipped: not judged: another model | 1 of 1 runs |")  # a skip: its reason
    assert lines[3].endswith("| skipped: not judged | skipped: not judged | not judged |")


def test_report_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "models" / "tiny"
    runs = {"r-w0": {"model": str(model), "dataset": "/elsewhere/text.txt"}}
    text = markdown(_report_rows(), runs, str(tmp_path / "out" / "r.png"), meta=[f"options: --model={model}"])
    assert "| `models/tiny` | `/elsewhere/text.txt` |" in text  # outside the working directory: as given
    assert "- options: --model=models/tiny" in text and "![write-up vs measured](out/r.png)" in text
    assert str(tmp_path) not in text


# ---------------------------------------------------------------- the terminal summary
@pytest.mark.parametrize("columns", [80, 120])
def test_terminal_summary_fits_the_width_and_keeps_numbers_whole(columns):
    long = "measured ratios " + ", ".join(f"{1000 + i * 1.2345:.4f}" for i in range(60))
    rows = _report_rows()
    rows[0].measured = long
    lines = terminal_summary(rows, columns=columns)
    assert max(len(line) for line in lines) <= columns
    assert lines[0] == "this run: 3 holds, 4 does not hold, 2 undecided"  # the run leads, its rows alone
    assert "totals per section:" in lines and any(line.startswith("  7A: cells 1 fails, 1 holds") for line in lines)
    words = " ".join(lines).split()
    assert all(f"{1000 + i * 1.2345:.4f}" in words or f"{1000 + i * 1.2345:.4f}," in words for i in range(60))


def test_lines_with_japanese_fit_80_display_columns(monkeypatch):
    """Wide characters take two columns: the summary's lines that quote the Japanese original fit COLUMNS=80
    as a terminal shows them, and a line is not cut shorter than it needs."""
    from lib.report.text import display_width, width, wrap

    monkeypatch.setenv("COLUMNS", "80")
    marked = [
        c
        for c in CLAIMS
        if (c.overstated or c.contradicted)
        and any(display_width(ch) == 2 for ch in c.overstated or c.contradicted or "")
    ]
    assert marked  # exp7's reasons quote its Japanese: 「中間層 (3-8)」
    rows = [
        _sentence(
            c.id,
            "overstated by the document: x" if c.overstated else "contradicted by the document",
            kind="document",
            note=f"why: {c.overstated or c.contradicted}",
        )
        for c in marked
    ]
    lines = terminal_summary(rows, verbose=True, columns=width())
    wide = [line for line in lines if display_width(line) != len(line)]
    assert wide and max(display_width(line) for line in lines) <= 80, max(lines, key=display_width)
    assert display_width("最終層 K=3") == 10 and display_width("e\u0301") == 1  # a combining accent takes none
    japanese = "最終層の unembedding 寄りの書き込みも集中的 " * 6
    assert all(display_width(line) <= 80 for line in wrap(japanese, "  ", 80))
    assert any(display_width(line) >= 70 for line in wrap(japanese, "  ", 80))  # filled, not cut at 40 characters


def test_terminal_summary_orders_the_claims_to_look_at_and_counts_what_does_not_carry_over():
    lines = terminal_summary(_report_rows(), columns=120)
    text = "\n".join(lines)
    order = [
        "this run: 3 holds, 4 does not hold, 2 undecided",
        "findings that carry over: 1",
        "  7A-last-layer-largest (r-w0): last 4.656",
        "changed against the baseline: 1",
        "  7B-layer-0-comparatively-low (measured, r-w0)",
        "failures: 2",
        "  7A-mean_norm-layer-3 (cell, r-w0): fails",
        "1 do not hold on a run (on another model or text: the finding does not carry over): causes 1",
        "the write-up's own tables: 1 holds, 1 contradicted by the document (-v lists the 1 marked)",
        "totals: this run 3 holds, 4 does not hold, 2 undecided",
    ]
    at = [text.index(line) for line in order]
    assert at == sorted(at), text
    assert "7C-norm-dominance-causes-low-k" not in text  # counted, listed with -v
    assert "7B-not-low-rank (measured, r-w0): fails" in text and "7A-last-layer-largest (measured" not in text
    assert "7E-attention-consistently-lower" not in text  # the write-up's own verdicts: one line, -v lists them
    verbose = "\n".join(terminal_summary(_report_rows(), verbose=True, columns=120))
    assert "7C-norm-dominance-causes-low-k (measured, r-w0): does not hold" in verbose
    assert "  7A-last-layer-largest (measured, r-w0): holds" in verbose  # -v: the findings in full
    assert verbose.count("in layer 2 attention needs K = 97") == 1  # listed once, under the write-up's own tables


def _ours(stdout: str) -> list[str]:
    """The lines the suite prints: its header block and its summary section."""
    lines = stdout.splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("dphi")]
    block = lines[header[0] : header[-1] + 1] if header else []
    summary = stdout.split("claims: Experiment 7", 1)[1].split("short test summary", 1)[0].splitlines()[1:-1]
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
    progress = out.stdout.split("collected", 1)[1].split("claims: Experiment 7", 1)[0]
    assert "attention kernel" not in progress  # not among the progress dots ...
    assert "dphi: attention kernel " in out.stdout.split("claims: Experiment 7", 1)[1]  # ... but in the summary


def test_pytest_benchmark_keeps_its_header_where_benchmarks_may_run():
    command = [sys.executable, "-m", "pytest", "--collect-only", "-p", "no:cacheprovider"]
    out = subprocess.run([*command, "benchmarks/test_pipeline.py"], cwd=ROOT, capture_output=True, text=True)
    assert "\nbenchmark: " in out.stdout, out.stdout[-2000:]


def test_the_embedded_model_report_fits_250_lines_and_says_what_each_row_measured(tmp_path, monkeypatch):
    """On the embedded model: the report leads with the run's counts, shows what every judged sentence
    measured and every skip's reason, no Δ column (another model than the write-up's), and each of the
    write-up's own contradicted or overstated sentences once. The README's excerpt is this run's summary."""
    import json

    from lib.report.text import escape

    sys.path.insert(0, str(ROOT / "docs"))
    import excerpt

    report, result = tmp_path / "r.md", tmp_path / "r.json"
    args = ["claims/", "--model", "tiny-wikitext", "--device", "cpu", "--claims-xfail", "--claims-report", str(report)]
    monkeypatch.setenv("COLUMNS", "80")
    out = run_claims(tmp_path, *args, "--claims-json", str(result))
    assert out.returncode == 0, out.stdout[-3000:]
    readme = excerpt.block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert readme == excerpt.excerpt(excerpt.summary(out.stdout)), (
        "README.md's excerpt is stale: python docs/excerpt.py"
    )
    text = report.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 250 and lines[2].startswith("This run: ")
    rows = json.loads(result.read_text())["rows"]
    first = {}
    for r in rows:
        first.setdefault(r.get("reading") or r["claim"], r["claim"])
    for r in rows:
        if r["kind"] == "cell" and r["verdict"].startswith("skipped: "):
            assert escape(r["verdict"].split(": ", 1)[1]) in text, r["claim"]  # once per run and reason
        if r["kind"] != "measured" or (r.get("reading") and first[r["reading"]] != r["claim"]):
            continue
        said = r["verdict"].split(": ", 1)[1] if r["verdict"].startswith("skipped: ") else r["measured"]
        if said and not r["verdict"].startswith("skipped: not tested"):
            assert escape(said) in text, r["claim"]
    assert "| Δ |" not in text and "Δ = measured" in text
    for claim in (c for c in CLAIMS if c.contradicted):
        assert text.count(escape(claim.contradicted)) == 1, claim.id


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
def _measured_like(tables: dict, scale: float = 0.5) -> dict:
    """A measured-looking tables dict: the write-up's numbers, scaled."""
    out = {k: v for k, v in tables.items() if k in ("model_shape", "config")}
    for name in ("norms", "layer_pca", "lowrank_ppl", "attn_ffn"):
        out[name] = [{k: (v * scale if k not in ("layer", "k") else v) for k, v in r.items()} for r in tables[name]]
    return out


def test_the_figure_has_a_title_a_legend_per_panel_a_caption_and_a_band_for_the_windows(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    from lib.report.plots import figure

    measured = _measured_like(DOCUMENT_TABLES)
    windows = {f"m-w{w}": measured for w in range(2)}
    configs = {label: {"model": "gpt2", "dataset": "wikitext-2-raw-v1", "n_tokens": 1000} for label in windows}
    fig = figure(windows, configs, EXP7_WRITE_UP)
    title = fig._suptitle.get_text()
    assert title == "gpt2 on wikitext-2-raw-v1, 1000 positions (2 windows)"  # model, text, positions; no commit
    assert not fig.legends and all(ax.get_legend() is not None for ax in fig.axes)  # a legend per panel
    sweep = [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
    assert "m (mean of 2 windows, band: min-max): shared basis" in sweep
    assert "write-up (GPT-2 small, WikiText-2 test): individual basis" in sweep  # the overlay, with its set-up
    captions = [t.get_text() for t in fig.texts]
    assert any("commit " in c for c in captions)  # the provenance: a caption line
    assert all(any(isinstance(c, PolyCollection) for c in ax.collections) for ax in fig.axes)
    plt.close(fig)
    one = figure({"m-w0": measured}, write_up=EXP7_WRITE_UP, overlay=False)
    labels = [t.get_text() for ax in one.axes for t in ax.get_legend().get_texts()]
    assert labels and not any(label.startswith("write-up") for label in labels)  # the overlay is an option
    assert not any(isinstance(c, PolyCollection) for ax in one.axes for c in ax.collections)  # one window: no band
    plt.close(one)


def test_the_figure_overlays_only_what_the_write_up_has_and_draws_intervals():
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from lib.report.plots import figure
    from lib.writeup.write_up import load_write_up

    mini = load_write_up(ROOT / "tests" / "data" / "mini-write-up")
    kept = {name: mini.document.tables[name] for name in ("model_shape", "norms", "layer_pca")}
    mini = dataclasses.replace(mini, document=dataclasses.replace(mini.document, tables=kept))  # norms, K90 only
    measured = _measured_like(DOCUMENT_TABLES)
    measured["intervals"] = {
        "norms": [{"mean_norm": [r["mean_norm"] * 0.9, r["mean_norm"] * 1.1]} for r in measured["norms"]]
    }
    fig = figure({"m-w0": measured}, write_up=mini)
    by_panel = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert "write-up (tiny-wikitext, WikiText-2 test)" in by_panel[0] and len(by_panel[2]) == 2  # 7D: the run's only
    assert not any("GPT-2" in label for labels in by_panel for label in labels)
    assert any(isinstance(c, LineCollection) for c in fig.axes[0].collections)  # --bootstrap: error bars
    assert not any(isinstance(c, LineCollection) for c in fig.axes[1].collections)  # no intervals for K90 here
    plt.close(fig)


@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_the_figure_is_written_in_the_format_its_extension_names(tmp_path, suffix, magic):
    from lib.report.plots import plot_runs

    path = tmp_path / "out" / f"fig{suffix}"
    configs = {"m-w0": {"model": "gpt2", "dataset": "wikitext-2-raw-v1", "n_tokens": 1000}}
    assert plot_runs({"m-w0": _measured_like(DOCUMENT_TABLES)}, path, configs, EXP7_WRITE_UP) == path
    data = path.read_bytes()
    assert data.startswith(magic) and [p.name for p in path.parent.iterdir()] == [path.name]
    assert b"gpt2 on wikitext-2-raw-v1" in data or suffix == ".pdf"  # the title in the metadata (PDF: compressed)
    bare = tmp_path / "fig2"  # no suffix: a PNG, named as given
    assert plot_runs({"m-w0": _measured_like(DOCUMENT_TABLES)}, bare).read_bytes()[:4] == b"\x89PNG"


def test_a_figure_extension_no_format_names_is_refused_before_any_model_work(tmp_path, capsys):
    from lib.cli import main

    args = ["tables", "--model", "tiny-wikitext", "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--plot", str(tmp_path / "fig.jpg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fig.jpg" in err[0] and ".png, .pdf, .svg" in err[0], err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.pt"))


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


def test_the_report_figure_draws_the_intervals_its_cell_rows_carry():
    from lib.report.plots import with_intervals

    measured = _measured_like(DOCUMENT_TABLES)
    row = _cell("7B-k90-layer-3", 99.0, "skipped: not judged: another model")
    row.interval = [90.0, 110.0]
    out = with_intervals({"r-w0": measured}, [row, _cell("7A-mean_norm-layer-3", 9.0, "holds")], EXP7_WRITE_UP)
    bands = out["r-w0"]["intervals"]
    assert (
        list(bands) == ["layer_pca"] and bands["layer_pca"][3] == {"k90": [90.0, 110.0]} and bands["layer_pca"][0] == {}
    )
    assert "intervals" not in with_intervals({"r-w0": measured}, [], EXP7_WRITE_UP)["r-w0"]


def test_a_claim_that_does_not_hold_on_the_write_ups_own_set_up_is_not_reproduced_not_a_finding_that_does_not_carry_over():
    """On the write-up's own set-up a sentence that does not hold is a reproduction to look at, listed
    first; on another model it is counted as not carrying over."""
    own = _sentence("7A-last-layer-largest", "does not hold", measured="last 4.6, max 14.4")
    own.own_set_up = True
    other = _sentence("7C-norm-dominance-causes-low-k", "does not hold", measured="K90 38 raw, 50 balanced")
    text = "\n".join(terminal_summary([own, other], columns=120))
    assert "not reproduced on the write-up's own set-up: 1" in text
    assert "1 do not hold on a run (on another model or text: the finding does not carry over): causes 1" in text
    assert Row.from_json(own.to_json()).own_set_up is True and "own_set_up" not in other.to_json()
