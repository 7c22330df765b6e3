"""Drop-k fragility (lib/robustness/dropk.py, lib/robustness/dropped.py): planted data, Gaussian data, exact recomputation."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib.measure.spectra import RECONSTRUCTION_KS
from lib.measure.stats import Capture, Stats
from lib.measure.store import Store
from lib.robustness.dropk import FRAGILE_SHARE, Searcher, fragility_of, fragility_rows
from lib.robustness.dropped import Base, Dropped, Where, downdate
from lib.robustness.judged import Judged, judged, verdict
from lib.setup.corpus import Selection
from lib.tables.causes import norm_concentration, write_sources
from lib.tables.core import (
    attn_ffn_table,
    layer_bases,
    layer_pca_table,
    norms_table,
    reconstruction_tables,
    shared_basis,
)
from lib.tables.run import Run
from lib.writeup.claims import CELLS, CLAIMS, Claim

N, LAYERS, D = 300, 4, 16
PLANT_NORM = 500.0
"""A planted write's norm: ~125x the Gaussian writes' (sqrt(2 * 16) ~ 5.7 for attn + ffn), as GPT-2's
BOS write in layer 2 (~2300 against a mean of 18)."""


def by_id(claim_id: str) -> Judged:
    return next(j for j in judged() if j.id == claim_id)


def planted(seed: int = 0, plants: tuple[tuple[int, int, float], ...] = ()) -> Capture:
    """Gaussian attention and FFN writes (LAYERS, N, D); each plant (position, layer, norm) adds a
    write of that norm along one fixed direction to the FFN's (so to Δφ) at that position and layer."""
    g = torch.Generator().manual_seed(seed)
    attn = torch.randn(LAYERS, N, D, generator=g)
    ffn = torch.randn(LAYERS, N, D, generator=g)
    direction = torch.nn.functional.normalize(torch.randn(D, generator=g), dim=0)
    for position, layer, norm in plants:
        ffn[layer, position] += norm * direction
    return Capture(attn + ffn, attn, ffn, torch.rand(N - 1, generator=g, dtype=torch.float64))


SELECTION = Selection((torch.arange(N),), (torch.ones(N, dtype=torch.bool),))  # one chunk, every position


def tables_of(stats: Stats, where: Any = SELECTION) -> dict[str, Any]:
    """The model-free part of Run.compute_tables, through the same functions; 7D's K column only."""
    bases = layer_bases(stats, "delta_phi", True)
    shared = shared_basis(stats, True)
    attn, ffn = layer_bases(stats, "attn", True, vectors=False), layer_bases(stats, "ffn", True)
    rows, per_layer = reconstruction_tables(stats.sample, shared, RECONSTRUCTION_KS)
    return {
        "config": {"n_tokens": N},
        "norms": norms_table(stats.norms),
        "layer_pca": layer_pca_table(bases),
        "shared_pca": shared.k_columns(),
        "reconstruction": rows,
        "lowrank_ppl": [{"k": D}],
        "attn_ffn": attn_ffn_table(attn, ffn),
        "reconstruction_per_layer": per_layer,
        "layer_spectra": [b.ratio.tolist() for b in bases],
        "write_sources": write_sources(stats, bases, ffn, True),
        "norm_concentration": norm_concentration(stats, where),
    }


def base_of(capture: Capture) -> Base:
    stats = Stats.of_capture(capture)
    return Base(capture, stats, SELECTION, tables_of(stats), centred=True)


def recomputed(capture: Capture, drop: list[int]) -> dict[str, Any]:
    """The tables of a fresh capture without the positions `drop` (no downdate): moments summed anew."""
    keep = torch.ones(N, dtype=torch.bool)
    keep[drop] = False
    nll_keep = keep[: N - 1]  # one chunk: position p predicts token p + 1, the last predicts nothing
    kept = Capture(
        capture.delta_phi[:, keep],
        capture.delta_phi_attn[:, keep],
        capture.delta_phi_ffn[:, keep],
        capture.nll[nll_keep],
    )
    where = Where([SELECTION.where[i] for i in keep.nonzero().flatten().tolist()])
    return tables_of(Stats.of_capture(kept), where)


DOWNDATE_REL = 1e-9
"""Downdated float64 sums against sums over the kept positions: the planted writes (norm 500, outer
products 2.5e5) cancel to ~1e-16 x 2.5e5 absolute, far below 1e-9 of the remaining entries (~N)."""


def test_downdate_equals_sums_over_the_kept_positions():
    capture = planted(plants=((7, 2, PLANT_NORM), (100, 1, PLANT_NORM)))
    base = base_of(capture)
    drop = [7, 100, 299]
    ours = downdate(base, drop)
    keep = [i for i in range(N) if i not in drop]
    fresh = Stats.of_capture(
        Capture(
            capture.delta_phi[:, keep],
            capture.delta_phi_attn[:, keep],
            capture.delta_phi_ffn[:, keep],
            capture.nll[keep[:-1]],
        )
    )
    assert ours.count == fresh.count == N - 3
    torch.testing.assert_close(ours.total, fresh.total, rtol=DOWNDATE_REL, atol=1e-9)
    upper = torch.ones(D, D, dtype=torch.bool).triu()  # Moments.outer: the upper triangle only
    torch.testing.assert_close(ours.outer[..., upper], fresh.outer[..., upper], rtol=DOWNDATE_REL, atol=1e-8)
    assert torch.equal(ours.norms, fresh.norms) and torch.equal(ours.sample, fresh.sample)
    assert torch.equal(ours.nll, capture.nll[[i for i in range(N - 1) if i not in drop]])  # 299 predicts nothing


def plain(value: Any) -> Any:
    """Dropped's lazy rows as the lists and dicts Run.tables holds."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, tuple)):  # the config keeps its tuples
        return [plain(v) for v in value]
    return value


def test_nothing_dropped_gives_the_run_tables(assert_same):
    """Dropped(base, []) recomputes every table the way Run.tables does (lazily, per layer)."""
    base = base_of(planted(plants=((3, 2, PLANT_NORM),)))
    ours = Dropped(base, [])
    for name in base.tables:
        if name == "lowrank_ppl":  # its perplexities need the model (test_no_drop_7d_...); the K column does not
            assert [r["k"] for r in ours[name]] == [r["k"] for r in base.tables[name]]
        else:
            assert_same(plain(ours[name]), base.tables[name], where=name)


@pytest.mark.parametrize("claim_id", ["7B-layer-2-one-direction", "7E-layer-2-ffn-one-direction", "7B-k90-layer-2"])
def test_one_planted_position_flips_at_k_1(claim_id):
    """Layer 2's writes carried by one position (GPT-2's massive activation): the claim that layer 2
    is one-directional holds, and dropping that position alone flips it."""
    position = 123
    capture = planted(plants=((position, 2, PLANT_NORM),))
    base = base_of(capture)
    row = Searcher(base, budget=15, examples=0).search(by_id(claim_id))
    assert row["holds"] is True, row  # the cell 7B-k90-layer-2: the document's K90 = 1, within its tolerance
    assert row["k"] == 1 and row["positions"] == [[0, position]], row
    assert row["fragile"] is (1 <= FRAGILE_SHARE * N), row
    assert row["witnesses"][0]["norms"]["2"] > PLANT_NORM / 2, row


def test_gaussian_writes_do_not_flip_within_the_budget():
    """i.i.d. Gaussian writes: no few positions carry a layer, so the claims far from their thresholds
    stay as they are when up to 5% of the positions are dropped (greedy and hypothesis)."""
    base = base_of(planted(seed=1))
    searcher = Searcher(base, budget=15, examples=10)
    for claim_id in (
        "7B-layer-2-one-direction",
        "7E-layer-2-ffn-one-direction",
        "7B-not-low-rank",
        "7E-ffn-high-dimensional",
    ):
        row = searcher.search(by_id(claim_id))
        assert row["holds"] is not None and row["k"] is None, row


def pair_claim(pair: tuple[int, int]) -> Claim:
    """A sentence that flips only when two given positions are both dropped: positions the greedy order
    ranks far apart, so that its smallest flipping prefix is long and hypothesis's drop sets do better."""

    def predicate(tables: Mapping[str, Any]) -> tuple[bool, str]:
        tables["layer_pca"][0]["k90"]  # reads Δφ: the greedy order ranks the positions by its layers
        dropped = set(getattr(tables, "drop", ()))
        return not set(pair) <= dropped, f"dropped {sorted(dropped)}"

    return Claim(f"pair-{pair[0]}-{pair[1]}", "7B", "a planted pair", predicate)  # type: ignore[arg-type]


def test_a_witness_keeps_only_the_positions_its_flip_needs():
    """Greedy's smallest flipping prefix holds both positions and the seven ranked between them; the
    witness reported is the pair."""
    base = base_of(planted(seed=2, plants=((7, 0, 30.0), (11, 0, 25.0), (13, 0, 20.0))))
    order = Searcher(base, budget=15).order({("delta_phi", layer) for layer in range(LAYERS)})
    pair = (order[1], order[8])
    row = Searcher(base, budget=15, examples=0).search(pair_claim(pair))
    assert row["k"] == 2 and row["found_by"] == "greedy", row
    assert row["positions"] == [[0, p] for p in sorted(pair)], row


def test_hypothesis_finds_what_greedy_misses_and_keeps_it():
    """One position of the pair ranks past the budget: greedy's prefixes never flip the claim; hypothesis
    draws drop sets from the ranked candidates (twice the budget), finds the pair, and its example
    database keeps it: a later search (another run, same claim id) tries it first."""
    from hypothesis.database import InMemoryExampleDatabase

    base = base_of(planted(seed=2, plants=((7, 0, 30.0), (11, 0, 25.0), (13, 0, 20.0))))
    order = Searcher(base, budget=15).order({("delta_phi", layer) for layer in range(LAYERS)})
    pair = (order[1], order[20])
    claim = pair_claim(pair)
    assert Searcher(base, budget=15, examples=0).search(claim)["k"] is None
    database = InMemoryExampleDatabase()
    row = Searcher(base, budget=15, examples=200, database=database).search(claim)
    assert row["found_by"] == "hypothesis" and row["k"] == 2, row
    assert row["positions"] == [[0, p] for p in sorted(pair)], row
    assert list(database.fetch(claim.id.encode())), "the witness was not kept"
    assert Searcher(base, budget=15, examples=1).search(claim)["k"] is None  # one draw alone misses it
    again = Searcher(base, budget=15, examples=1, database=database).search(claim)  # the kept witness first
    assert again["k"] == 2 and again["found_by"] == "kept witness", again


def verdict_on_recomputed(claim: Judged, capture: Capture, drop: list[int]) -> bool | None:
    return verdict(claim, recomputed(capture, drop))[0]


@settings(max_examples=6, suppress_health_check=[HealthCheck.nested_given])  # the search runs hypothesis's find
@given(
    seed=st.integers(0, 2**16),
    plants=st.lists(
        st.tuples(st.integers(0, N - 1), st.integers(0, LAYERS - 1), st.floats(20, 1000)), min_size=0, max_size=3
    ),
)
def test_every_witness_flips_on_exact_recomputation(seed, plants):
    """Random planted data: each reported witness, left out of a fresh capture (sums over the kept
    positions, no downdate), flips the claim's verdict."""
    capture = planted(seed, tuple(plants))
    base = base_of(capture)
    searcher = Searcher(base, budget=15, examples=3)
    for claim_id in (
        "7B-layer-2-one-direction",
        "7E-layer-2-ffn-one-direction",
        "7A-layer-2-std-ratio-abnormal",
        "7B-k90-layer-2",
    ):
        claim = by_id(claim_id)
        row = searcher.search(claim)
        if row["k"] is not None:
            drop = [p for _, p in row["positions"]]
            assert verdict_on_recomputed(claim, capture, drop) == (not row["holds"]), row


def test_every_claim_and_cell_is_searched():
    assert [j.id for j in judged()] == [c.id for c in CLAIMS if c.predicate and not c.followup] + [c.id for c in CELLS]


def test_budget_share_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="budget share must be in"):
        fragility_rows(base_of(planted()), budget_share=1.5)


@pytest.fixture(scope="module")
def tiny(embedded_config, tmp_path_factory) -> Run:
    config = embedded_config()
    return Run(config, Store(tmp_path_factory.mktemp("cache")))


def test_no_drop_gives_the_run_tables_on_the_embedded_model(tiny, assert_same):
    """Every table of Dropped(base, []) equals the run's on the embedded model: 7D through lowrank's hooks
    with per-prediction NLL, the unembedding overlap with the readout computed once (within assert_same's
    1e-6: the same float32 passes, float64 sums in another order)."""
    tables = {**tiny.tables, **tiny.followups}
    base = Base(
        tiny.capture, tiny.stats, tiny.selection, tables, True, tiny.bridge, tiny.batch_size, tiny.config.attention
    )
    ours = Dropped(base, [])
    assert set(ours) == set(tables), set(tables) - set(ours)  # a builder for every table, the follow-ups' too
    for name in tables:
        assert_same(plain(ours[name]), tables[name], where=name)


def test_every_claim_has_a_fragility_row_on_the_embedded_model(tiny):
    rows = fragility_of(tiny)
    assert [r["claim"] for r in rows] == [j.id for j in judged()]
    for r in rows:
        assert r["budget"] == 50 and (r["k"] is None or 1 <= r["k"] <= r["budget"]), r
        assert (r["k"] is None) == (r["after"] is None) == (r["share"] is None), r
    assert fragility_of(Run(tiny.config, tiny.store)) == rows  # the cached entry answers a second run


def test_the_follow_up_sentences_are_searched_with_follow_ups(tiny):
    """With follow_ups the follow-up sentences (7F-7H, outliers) get rows too, searched on the follow-up
    tables recomputed without the positions; the other rows are the same as without."""
    rows = fragility_of(tiny, follow_ups=True)
    followup_ids = [c.id for c in CLAIMS if c.predicate is not None and c.followup]
    assert followup_ids and [r["claim"] for r in rows] == [j.id for j in judged(follow_ups=True)]
    by_id = {r["claim"]: r for r in rows}
    decided = [by_id[i] for i in followup_ids if by_id[i]["holds"] is not None]
    assert decided, [by_id[i] for i in followup_ids]
    assert [r for r in rows if r["claim"] not in followup_ids] == fragility_of(tiny)


def test_the_command_writes_a_fragility_key(tiny, shared_text, tmp_path, capsys):
    """`python -m lib tables --fragility --json`: a key `fragility`, one row per claim, in the issue's shape
    (the run's cache answers: the same config as `tiny`)."""
    from lib.cli import main

    rows = fragility_of(tiny)
    out = tmp_path / "out.json"
    args = ["tables", "--model", "tiny-wikitext", "--dataset", str(shared_text), "--device", "cpu"]
    assert main([*args, "--cache-dir", str(tiny.store.root), "--fragility", "--json", str(out)]) == 0
    written = json.loads(out.read_text())["fragility"]
    assert written == rows
    for r in written:
        assert {"claim", "holds", "k", "share", "positions", "after", "budget"} <= r.keys()
    assert "Fragility: positions dropped to flip each verdict" in capsys.readouterr().out


def test_report_marks_a_claim_that_holds_and_flips_at_half_a_percent_fragile():
    from lib.report.markdown import markdown
    from lib.report.rows import Row
    from lib.report.summary import fragility_text
    from lib.report.terminal import terminal_summary
    from lib.writeup.judge import Verdict
    from lib.writeup.write_up import EXP7_WRITE_UP

    flips = {"holds": True, "k": 1, "share": 0.001, "positions": [[0, 0]], "budget": 50, "fragile": True}
    robust = {"holds": True, "k": None, "share": None, "positions": [], "budget": 50, "fragile": False}
    assert fragility_text(flips) == "FRAGILE: flips at k=1 (0.1%) dropping (0, 0)"
    assert fragility_text({**flips, "k": 40, "share": 0.04, "fragile": False}).startswith("flips at k=40 (4.0%)")
    assert fragility_text(robust) == "no flip within 50"
    rows = [
        Row("a", "7B", "measured", run="r", verdict=Verdict.from_text("holds"), fragility=flips),
        Row("b", "7B", "measured", run="r", verdict=Verdict.from_text("holds"), fragility=robust),
    ]
    text = "\n".join(terminal_summary(rows))  # the fragile claim is shown although it holds; the robust one is not
    assert "a (measured, r): holds" in text and "fragility: FRAGILE: flips at k=1" in text
    assert "b (measured, r)" not in text
    assert "1 FRAGILE" in text.splitlines()[-2]
    assert "no flip within 50" in "\n".join(terminal_summary(rows, verbose=True))
    appendix = markdown(rows, {"r": {}}, EXP7_WRITE_UP)
    assert "| a | r | holds (FRAGILE) |  | FRAGILE: flips at k=1" in appendix
    assert rows[0].to_json()["fragility"] == flips
    assert "fragility" not in "\n".join(
        terminal_summary([Row("a", "7B", "measured", verdict=Verdict.from_text("holds"))], verbose=True)
    )
    skipped = Row(
        "c", "7B", "cell", run="r", verdict=Verdict.from_text("skipped: not judged on this model"), fragility=flips
    )
    assert "1 FRAGILE" in terminal_summary([*rows, skipped])[-2]  # a claim that was not judged is not fragile


def test_pc1_origin_without_positions_past_the_sample_size():
    """Past SAMPLE_SIZE positions the 7C sample is evenly spaced: the dropped tables locate its rows
    as the run does (no drop: the run's rows; dropping the top position moves the top elsewhere)."""
    from lib.measure.stats import SAMPLE_SIZE
    from lib.tables.causes import pc1_origin, sample_where

    n = SAMPLE_SIZE + 904
    g = torch.Generator().manual_seed(3)
    attn, ffn = torch.randn(2, n, 8, generator=g), torch.randn(2, n, 8, generator=g)
    ffn[1, 4] += 300.0  # layer 1's variance along PC1 carried by position 4, a sampled one
    capture = Capture(attn + ffn, attn, ffn, torch.rand(n - 1, generator=g, dtype=torch.float64))
    stats = Stats.of_capture(capture)
    selection = Selection((torch.arange(n),), (torch.ones(n, dtype=torch.bool),))
    bases = layer_bases(stats, "delta_phi", True)
    run_rows = pc1_origin(stats, bases, torch.zeros(2, 8), sample_where(stats, selection))
    base = Base(capture, stats, selection, {"pc1_origin": run_rows}, centred=True)
    assert stats.sample.shape[1] == SAMPLE_SIZE < n and run_rows[1]["top_positions"][0] == [0, 4]
    assert Dropped(base, [])["pc1_origin"] == run_rows
    assert Dropped(base, [4])["pc1_origin"][1]["top_positions"][0] != [0, 4]
