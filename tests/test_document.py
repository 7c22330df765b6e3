"""Issue 20's defects, each on planted tables: the old predicate gave the wrong verdict, the new one does not.

(Each test was run against the predicates before the fix and failed there.)
"""

from __future__ import annotations

import re

import pytest

from lib.writeup.claims import CLAIMS, DOCUMENT_TABLES, NotApplicable, middle, middle_wide

BY_ID = {c.id: c for c in CLAIMS}


def holds(claim_id: str, t: dict) -> bool:
    return BY_ID[claim_id].predicate(t)[0]


def _k_rows(cos: dict[int, float]) -> list[dict]:
    return [{"layer": layer, "k": 64, "cos_sim": c, "relative_l2": 1 - c} for layer, c in cos.items()]


def _recon(n: int = 12, d: int = 768, own: dict | None = None, shared: dict | None = None) -> dict:
    own = own or {layer: 0.9 for layer in range(n)}
    shared = shared or {layer: 0.5 for layer in range(n)} | {n - 1: 0.9}  # the largest-norm layer served
    return {
        "norms": [{"layer": i, "mean_norm": 10.0 + 100 * (i == n - 1), "std_norm": 1.0} for i in range(n)],
        "lowrank_ppl": [{"k": d}],
        "reconstruction_own_per_layer": _k_rows(own),
        "reconstruction_per_layer": _k_rows(shared),
    }


def test_few_samples_reads_the_centred_share():
    """Defect 1: the top 1% carry 17% of sum ||Δφ||^2 but 80% of the scatter: a few samples dominate."""
    row = {"layer": 11, "top_share": 0.17, "top_centred_share": 0.8, "n_top": 10, "largest": [[0, 0, 900.0]]}
    t = {"norms": [{}] * 12, "norm_concentration": [dict(row, layer=i) for i in range(12)]}
    assert holds("7A-few-samples-dominate-last", t) and holds("7A-few-samples-dominate-layer-2", t)
    t["norm_concentration"][11]["top_centred_share"] = 0.3
    assert not holds("7A-few-samples-dominate-last", t)


def test_fixed_bias_is_one_input_independent_position():
    """Defect 2 (issue 20): PC1 orthogonal to b_out but carried by the BOS writes holds; a PC1 along b_out
    spread over many positions does not."""
    row = {"bias_cos": 0.01, "bias_norm": 3.0, "top_share": 0.99, "top1_share": 0.98, "top_at_bos": True}
    row |= {"n_bos": 1, "bos_share": 0.98}
    t = {"pc1_origin": [dict(row, layer=i, top_positions=[[0, 0]]) for i in range(12)]}
    assert holds("core-4-layer-2-fixed-bias", t)
    t["pc1_origin"][2].update(bias_cos=0.95, top_share=0.05, top1_share=0.01, top_at_bos=False, bos_share=0.001)
    assert not holds("core-4-layer-2-fixed-bias", t)
    t["pc1_origin"][2].update(top1_share=0.98, top_at_bos=False)  # one position, not a BOS
    assert not holds("core-4-layer-2-fixed-bias", t)


def test_sacrifices_every_other_layer_not_their_mean():
    """Defect 4: a mean gap of 0.3 with one layer spared (gap 0) does not hold; nor a large-norm layer
    that the shared basis does not serve."""
    t = _recon()
    assert holds("core-2-shared-sacrifices-others", t)
    own = {layer: 0.9 for layer in range(12)}
    shared = {layer: 0.5 for layer in range(12)} | {4: 0.9, 11: 0.9}
    assert not holds("core-2-shared-sacrifices-others", _recon(own=own, shared=shared))
    shared = {layer: 0.5 for layer in range(12)}  # the last (largest-norm) layer 0.4 below its own too
    holds_, says = BY_ID["core-2-shared-sacrifices-others"].predicate(_recon(own=own, shared=shared))
    assert not holds_ and "largest norm at layer 11" in says


def test_misses_middle_layers_uses_7c_middle():
    """Defect 5: 7C's 「中間層17~52」 is layers 3-9 (middle_wide), not 7B's 3-8."""
    t = _recon()
    assert list(middle_wide(t)) == list(range(3, 10)) and list(middle(t)) == list(range(3, 9))
    own = {layer: 0.9 for layer in range(12)}
    shared = {layer: 0.85 for layer in range(12)} | {9: 0.2}  # 3-8: gap 0.05; with layer 9 the mean gap 0.14
    assert holds("7C-misses-middle-layers", _recon(own=own, shared=shared))
    shared[9] = 0.85
    assert not holds("7C-misses-middle-layers", _recon(own=own, shared=shared))


def test_outliers_must_end_the_singularity():
    """Defect 6: layer 2's K90 rising from 1 to 2 without its outliers leaves it singular (median 200)."""
    t = {
        "norms": [{"layer": i, "mean_norm": 10.0, "std_norm": 40.0 if i == 2 else 1.0} for i in range(12)],
        "layer_pca": [{"layer": i, "k90": 1 if i == 2 else 200} for i in range(12)],
        "layer_pca_without_outliers": [
            {"layer": i, "k90": 2 if i == 2 else 200, "n_left_out": 1, "left_out": [{"chunk": 0, "position": 0}]}
            for i in range(12)
        ],
    }
    for claim_id in ("7B-layer-2-caused-by-outliers", "7B-largest-std-ratio-caused-by-outliers"):
        assert not holds(claim_id, t), claim_id
        t["layer_pca_without_outliers"][2]["k90"] = 20  # a tenth of the median: no longer singular
        assert holds(claim_id, t), claim_id
        t["layer_pca_without_outliers"][2]["k90"] = 2


def test_similar_patterns_need_a_margin_over_chance():
    """Defect 6 (issue 20): attention's overlap 0.1 against chance 1/12 is not "similar"."""
    n = 4
    off = lambda v: [[1.0 if i == j else v for j in range(n)] for i in range(n)]  # noqa: E731
    t = {"norms": [{}] * n, "subspace_overlap": {"k": 64, "chance": 1 / 12, "attn": off(0.1), "ffn": off(0.05)}}
    assert not holds("7E-attention-similar-patterns", t)
    t["subspace_overlap"]["attn"] = off(0.3)
    assert holds("7E-attention-similar-patterns", t)


@pytest.mark.parametrize(
    "claim_id,key",
    [
        ("7B-last-toward-unembedding", "delta_phi"),
        ("7E-last-attention-toward-unembedding", "attn"),
        ("core-4-layer-11-unembedding", "attn"),
    ],
)
def test_unembedding_claims_single_out_the_last_layer(claim_id, key):
    """Defect 6 (issue 20): the last layer at 6x chance while layer 5 is at 9x does not lean toward the
    unembedding more than the others do."""
    values = [0.1] * 12
    values[-1], values[5] = 0.5, 0.75
    u = {"k_unembedding": 64, "chance": 1 / 12, "k_same": {"delta_phi": 3, "attn": 3}}
    u |= {"delta_phi_same_k": list(values), "attn_same_k": list(values)}
    t = {"unembedding_overlap": u}
    assert not holds(claim_id, t)
    u[f"{key}_same_k"][5] = 0.2
    assert holds(claim_id, t)


def test_shared_optimised_for_last_is_not_decided_on_the_document():
    """Defect 7: shared K50/K80 = layer 11's is a coincidence of small integers; measured tables decide."""
    claim = BY_ID["7D-shared-optimised-for-last"]
    assert claim.document_untestable.startswith("within tolerance: not decided")
    with pytest.raises(NotApplicable):
        claim.predicate(DOCUMENT_TABLES)
    t = {"shared_overlap": {"k": 6, "per_layer": [0.1, 0.2, 0.9]}}
    assert claim.predicate(t)[0]


def _sweep(values: dict[int, tuple[float, float]]) -> list[dict]:
    return [{"k": k, "ppl": a, "ratio": a} for k, (a, _) in values.items()], [
        {"k": k, "ppl": f, "ratio": f} for k, (_, f) in values.items()
    ]


def test_7h_rise_is_read_within_one_run():
    """Issue 26 defect 3: 7H's two rows come from one run, so no tie band: 2.0x -> 2.1x -> 2.2x with
    every layer but the last is a rise, and with the last layer flat the sentence holds."""
    rows = [
        {"k": k, "all_but_last_ratio": a, "last_only_ratio": 1.0} for k, a in ((8, 2.0), (16, 2.1), (32, 2.2), (64, 1))
    ]
    t = {
        "norms": [{}] * 4,
        "lowrank_ppl": [
            {"k": 8, "shared_ratio": 2.0},
            {"k": 16, "shared_ratio": 2.1},
            {"k": 32, "shared_ratio": 2.2},
            {"k": 64, "shared_ratio": 1.0},
        ],
        "shared_ablation": rows,
    }
    assert holds("7D-harmful-noise", t)
    rows[2]["all_but_last_ratio"] = 1.9  # falls from K = 8 to 32
    assert not holds("7D-harmful-noise", t)


def test_claims_file_errors_name_the_bad_value(tmp_path):
    """A claims file with an unknown predicate, key or section stops with the value and what is allowed."""
    from lib.writeup.claims import load_claims

    base = 'id = "x"\nsection = "7A"\nja = "j"\nsentence = "s"\n'
    for extra, says in (
        ('predicate = "no_such_thing"\n', "unknown predicate 'no_such_thing'"),
        ('colour = "red"\n', "unknown keys ['colour']"),
        ('predicate = "few_samples_dominate"\nparams = { layer = "first" }\n', "layer 'first'"),
        ('predicate = "about_half"\nparams = { k = 1 }\n', "takes no params"),
    ):
        path = tmp_path / "claims.toml"
        path.write_text("[[claim]]\n" + base + extra, encoding="utf-8")
        with pytest.raises(ValueError, match=re.escape(says)):
            load_claims(path)
    path.write_text("[[claim]]\n" + base.replace("7A", "7Z"), encoding="utf-8")
    with pytest.raises(ValueError, match="section '7Z'"):
        load_claims(path)


def test_docs_claims_page_is_the_catalogue():
    """docs/claims.md is generated (lib.writeup.catalogue.COMMAND); a claim or verdict changed since fails here."""
    from pathlib import Path

    from lib.writeup.catalogue import COMMAND, markdown

    page = Path(__file__).resolve().parent.parent / "docs" / "claims.md"
    assert page.read_text(encoding="utf-8") == markdown(), f"docs/claims.md is stale: run `{COMMAND}`"


def test_claims_command_lists_every_claim_with_its_verdict(capsys, monkeypatch):
    from lib.cli import main

    monkeypatch.setenv("COLUMNS", "400")  # wide enough for one line a claim
    assert main(["claims"]) == 0
    lines = capsys.readouterr().out.splitlines()
    claims = [line.split()[0] for line in lines[1:] if not line.startswith(" ")]  # a long sentence may wrap
    assert lines[0].startswith("id ") and claims == [c.id for c in CLAIMS]  # the header row, then every claim
    row = next(line.split() for line in lines if line.startswith("7A-layers-2-and-11-largest-std-ratio "))
    assert row[:4] == ["7A-layers-2-and-11-largest-std-ratio", "7A", "table", "contradicted"]
    row = next(line for line in lines if line.startswith("7D-shared-optimised-for-last "))
    assert " undecided " in row
    assert main(["claims", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# The claims catalogue") and "| 7B-middle-effectively-full-rank | table |" in out
