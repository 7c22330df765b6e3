"""Follow-up tables 7F-7H: against an independent plain Hugging Face computation, and known answers."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lib.measure.spectra import Moments, pca
from lib.measure.store import Store
from lib.setup.model_source import EMBEDDED
from lib.tables.followups import (
    OUTLIER_MADS,
    layer_pca_without_outliers,
    overlap_matrix,
    subspace_overlap,
)
from lib.tables.registry import followup_tables
from lib.tables.run import Run

# The plain-HF reference and the bridge both run float32 forwards; they differ by summation
# order (~1e-6 relative in the logits) and by the PCA route (SVD of the centred data vs eigh of
# the float64 covariance: the subspaces agree to ~1e-10). The issue asks for 1e-3 in PPL; a wrong
# site, layer, mean or basis moves the ratio by far more (see the tables: >= 0.5% at K = 8).
PPL_RTOL = 1e-3


# ---------------------------------------------------------------- plain Hugging Face reference
def _blocks(model) -> list:
    base = getattr(model, "transformer", None) or model.gpt_neox
    return list(base.h if hasattr(base, "h") else base.layers)


def _site_module(block, site: str):
    """The module whose output is the write: GPT-2 attn / mlp, GPT-NeoX attention / mlp."""
    if site == "attn":
        return block.attn if hasattr(block, "attn") else block.attention
    return block.mlp


def _first(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace(output, x: torch.Tensor):
    return (x, *output[1:]) if isinstance(output, tuple) else x


def hf_site_only_ppl(model, selection, site: str, ks: list[int]) -> tuple[float, list[float]]:
    """(baseline PPL, PPL with `site`'s write of every layer replaced by mu + U_K U_K^T (x - mu)),
    by forward hooks on the HF modules; the basis from NumPy's SVD of the HF-captured writes."""
    modules = [_site_module(b, site) for b in _blocks(model)]
    writes: list[list[torch.Tensor]] = [[] for _ in modules]

    def nll_sum(edit=None) -> tuple[float, int]:
        total, count = 0.0, 0
        for chunk, counted in zip(selection.chunks, selection.counted):
            handles = (
                [
                    m.register_forward_hook(
                        lambda mod, args, out, layer=layer, counted=counted: edit(layer, out, counted)
                    )
                    for layer, m in enumerate(modules)
                ]
                if edit
                else []
            )
            with torch.no_grad():
                logits = model(chunk[None]).logits[0]  # (T, vocab)
            for h in handles:
                h.remove()
            total += torch.nn.functional.cross_entropy(logits[:-1].double(), chunk[1:], reduction="sum").item()
            count += len(chunk) - 1
        return total, count

    def record(layer, out, counted):
        writes[layer].append(_first(out)[0][counted])  # (n_counted, d)

    base_total, count = nll_sum(record)
    bases = []
    for rows in writes:
        x = torch.cat(rows).double().numpy()  # (N, d)
        mu = x.mean(0)
        _, _, vt = np.linalg.svd(x - mu, full_matrices=False)
        bases.append((torch.tensor(mu, dtype=torch.float32), torch.tensor(vt.T, dtype=torch.float32)))  # (d,), (d, d)
    ppl = []
    for k in ks:

        def project(layer, out, counted, k=k):
            mu, u = bases[layer][0], bases[layer][1][:, :k]
            return _replace(out, mu + ((_first(out) - mu) @ u) @ u.T)

        total, _ = nll_sum(project)
        ppl.append(math.exp(total / count))
    return math.exp(base_total / count), ppl


def _check_against_hf(run: Run, hf_model, batch_size: int = 8) -> dict:
    f = followup_tables(
        run.bridge,
        run.selection,
        run.stats,
        centred=True,
        ks=run.config.ks,
        batch_size=batch_size,
        capture=run.capture,
        attention=run.config.attention,
    )
    ks = [r["k"] for r in f["attn_only_ppl"]]
    for site in ("attn", "ffn"):
        base, ppl = hf_site_only_ppl(hf_model, run.selection, site, ks)
        assert math.exp(run.stats.nll.mean()) == pytest.approx(base, rel=PPL_RTOL)
        got = [r["ppl"] for r in f[f"{site}_only_ppl"]]
        assert got == pytest.approx(ppl, rel=PPL_RTOL), site
        assert [r["ratio"] for r in f[f"{site}_only_ppl"]] == pytest.approx([p / base for p in ppl], rel=PPL_RTOL)
    return f


@pytest.fixture(scope="module")
def tiny_raw(embedded_config, tmp_path_factory) -> Run:
    config = embedded_config(numerics="raw")
    return Run(config, Store(tmp_path_factory.mktemp("cache")))


def test_site_only_ppl_matches_plain_hf_on_a_trained_gpt2(tiny_raw):
    """7F on the embedded trained GPT-2 (1000 WikiText-2 positions, raw numerics) equals forward
    hooks on HF's transformer.h[l].attn / .mlp with an independent NumPy PCA, within 1e-3 in PPL."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(EMBEDDED["tiny-wikitext"], attn_implementation="eager").eval()
    f = _check_against_hf(tiny_raw, hf)
    assert f["attn_only_ppl"][0]["ratio"] != pytest.approx(f["ffn_only_ppl"][0]["ratio"], rel=PPL_RTOL)


def _sharp_neox(model) -> None:
    """q and k scaled up so that attention patterns are sharp (random init is near-uniform); the
    attention and FFN outputs and the unembedding too: at init the writes are small against the
    embedding and the logits near uniform, too little for a projection to move the perplexity."""
    model.lm_head.weight *= 10
    for layer in model.gpt_neox.layers:
        layer.attention.dense.weight *= 10
        layer.mlp.dense_4h_to_h.weight *= 10
        qkv = layer.attention.query_key_value
        heads = model.config.num_attention_heads
        # rows (3 d,) = (heads, [q, k, v], d_head): HF splits each head's slice into q, k, v
        qkv.weight.view(heads, 3, -1, qkv.weight.shape[-1])[:, :2] *= 30
        qkv.bias.view(heads, 3, -1)[:, :2] *= 30


def _sharp_gptj(model) -> None:
    """As _sharp_neox for GPT-J (separate q, k, v projections; one LayerNorm feeds both writes)."""
    model.lm_head.weight *= 10
    for block in model.transformer.h:
        block.attn.q_proj.weight *= 30
        block.attn.k_proj.weight *= 30
        block.attn.out_proj.weight *= 10
        block.mlp.fc_out.weight *= 10


def _parallel_model(family: str, out, tokenizer_dir):
    """A 3-layer parallel-attention model of `family` (sharpened), saved with the test tokenizer."""
    from transformers import GPTJConfig, GPTJForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    if family == "gpt-neox":
        config = GPTNeoXConfig(
            vocab_size=300,
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=32,
            use_parallel_residual=True,
            rotary_pct=0.5,
            bos_token_id=0,
            eos_token_id=0,
            tie_word_embeddings=False,
        )
        model, sharpen = GPTNeoXForCausalLM(config).eval(), _sharp_neox
    else:
        config = GPTJConfig(
            vocab_size=300,
            n_embd=32,
            n_layer=3,
            n_head=4,
            n_positions=32,
            rotary_dim=4,
            bos_token_id=0,
            eos_token_id=0,
            tie_word_embeddings=False,
        )
        model, sharpen = GPTJForCausalLM(config).eval(), _sharp_gptj
    with torch.no_grad():
        sharpen(model)
    model.save_pretrained(out)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, out)
    return out, type(model)


@pytest.mark.parametrize("family", ["gpt-neox", "gpt-j"])
def test_site_only_ppl_matches_plain_hf_on_parallel_attention(family, make_config, text_file, tmp_path, tokenizer_dir):
    """7F on parallel-attention families (attention and FFN read the same resid_pre: GPT-NeoX with
    use_parallel_residual, GPT-J), sharp random attention, 3 chunks past the context: the same
    HF-hook comparison as for GPT-2. Eager attention: the fused kernel is not this test's subject."""
    model_dir, cls = _parallel_model(family, tmp_path / "model", tokenizer_dir)
    run = Run(make_config(model_dir, text_file, n_tokens=90, attention="eager", ks="2,8"), Store(tmp_path / "cache"))
    hf = cls.from_pretrained(model_dir, attn_implementation="eager").eval()
    f = _check_against_hf(run, hf)
    # the projection must move the perplexity by far more than the tolerance, or the comparison is empty
    for site in ("attn", "ffn"):
        assert max(abs(r["ratio"] - 1) for r in f[f"{site}_only_ppl"][:-1]) > 10 * PPL_RTOL, site


# ---------------------------------------------------------------- 7G
def _basis(x: torch.Tensor):
    return pca(Moments.of(x))


@given(st.integers(0, 2**31 - 1), st.integers(2, 4))
def test_overlap_is_one_with_itself_and_symmetric(seed, n_layers):
    g = torch.Generator().manual_seed(seed)
    bases = [_basis(torch.randn(50, 12, generator=g, dtype=torch.float64)) for _ in range(n_layers)]
    m = np.array(overlap_matrix(bases, 3))
    # orthonormal columns: U^T U = I exactly up to float64 rounding of eigh (~1e-15)
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-12)
    np.testing.assert_allclose(m, m.T, atol=1e-12)
    assert ((m >= -1e-12) & (m <= 1 + 1e-12)).all()


def test_planted_shared_subspace_overlaps_and_random_ones_do_not():
    """Layers writing into one planted k-dim subspace (plus small noise) overlap ~1; independent
    random data gives ~k/d on average (E||U_i^T U_j||^2/k = k/d for uniformly random subspaces)."""
    g = torch.Generator().manual_seed(0)
    n, d, k, n_layers = 400, 96, 8, 4
    shared = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64)).Q  # (d, k)
    planted = [
        _basis(
            torch.randn(n, k, generator=g, dtype=torch.float64) * 10 @ shared.T
            + 0.01 * torch.randn(n, d, generator=g, dtype=torch.float64)
        )
        for _ in range(n_layers)
    ]
    random = [
        _basis(
            torch.randn(n, d, generator=g, dtype=torch.float64)
            @ torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q
        )
        for _ in range(n_layers)
    ]
    t = subspace_overlap(planted, random, k)
    assert t["k"] == k and t["chance"] == k / d
    off = ~np.eye(n_layers, dtype=bool)
    # noise 0.01 against signal 10: the principal angles are ~1e-3, cos^2 ~ 1 - 1e-6
    assert np.array(t["attn"])[off].min() > 0.999
    # 12 pairs of independent 8-dim subspaces of R^96: mean k/d = 0.083, spread ~0.02 per pair
    assert np.array(t["ffn"])[off].mean() == pytest.approx(k / d, abs=0.03)


def test_default_overlap_k_is_a_twelfth_of_d_model():
    bases = [_basis(torch.randn(40, 24, dtype=torch.float64)) for _ in range(2)]
    assert subspace_overlap(bases, bases)["k"] == 2


# ---------------------------------------------------------------- 7H and the K = d_model rows
def _sharp_gpt2(model) -> None:
    """As _sharp_neox for GPT-2 (the unembedding is tied to the embedding, scaled with it)."""
    d = model.config.n_embd
    model.transformer.wte.weight *= 10
    for block in model.transformer.h:
        block.attn.c_attn.weight[:, : 2 * d] *= 30  # Conv1D (d, 3 d): columns q, k, v
        block.attn.c_attn.bias[: 2 * d] *= 30
        block.attn.c_proj.weight *= 10
        block.mlp.c_proj.weight *= 10


@pytest.fixture(scope="module")
def small_run(make_model, make_config, text_file, tmp_path_factory) -> Run:
    model = make_model(n_layer=3, d_model=32, n_ctx=32, edit=_sharp_gpt2)
    return Run(make_config(model, text_file, n_tokens=90, numerics="compat"), Store(tmp_path_factory.mktemp("c")))


@pytest.fixture(scope="module")
def small_followups(small_run) -> dict:
    return followup_tables(
        small_run.bridge,
        small_run.selection,
        small_run.stats,
        centred=True,
        ks=small_run.config.ks,
        capture=small_run.capture,
    )


def test_full_k_is_the_baseline_for_every_ablation(small_followups):
    """At K = d_model every projection is the identity: 7F and 7H give the baseline perplexity."""
    f = small_followups
    assert [r["k"] for r in f["attn_only_ppl"]] == [8, 16, 32]
    # U U^T = I up to float32 rounding (~1e-6) in each of 3 layers: logits move by ~1e-5
    for name in ("attn_only_ppl", "ffn_only_ppl"):
        assert f[name][-1]["ratio"] == pytest.approx(1.0, abs=1e-4), name
    last = f["shared_ablation"][-1]
    assert last["all_but_last_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert last["last_only_ratio"] == pytest.approx(1.0, abs=1e-4)
    # below d_model the projections do change the model (else the checks above prove nothing)
    first = f["shared_ablation"][0]
    assert abs(first["all_but_last_ratio"] - 1) > 1e-2 and abs(first["last_only_ratio"] - 1) > 1e-2
    assert abs(f["attn_only_ppl"][0]["ratio"] - 1) > 1e-2 and abs(f["ffn_only_ppl"][0]["ratio"] - 1) > 1e-2


def test_shared_ablation_parts_are_the_layers_they_name(small_run, small_followups):
    """all-but-last and last-only against the same shared projection built by hand at those layers."""
    from lib.measure.lowrank import Projection, lowrank_nll, mean_nll
    from lib.tables.core import shared_basis

    run, st_ = small_run, small_run.stats
    shared = shared_basis(st_, True)
    mean, dirs = shared.mean.float().expand(3, -1), shared.directions.float().expand(3, -1, -1)
    nll = lowrank_nll(
        run.bridge,
        run.selection,
        [Projection(mean, dirs, 8, "resid", (0, 1)), Projection(mean, dirs, 8, "resid", (2,))],
        batch_size=1,
    )
    nll = mean_nll(nll, run.selection)
    base = math.exp(float(st_.nll.mean()))
    row = small_followups["shared_ablation"][0]
    # the same hooks on the same tokens, only grouped differently: float32 rounding
    assert row["all_but_last_ppl"] == pytest.approx(math.exp(nll[0]), rel=1e-5)
    assert row["last_only_ppl"] == pytest.approx(math.exp(nll[1]), rel=1e-5)
    assert row["all_but_last_ratio"] == pytest.approx(math.exp(nll[0]) / base, rel=1e-5)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_batch_size_does_not_change_the_tables(small_run, small_followups, batch_size):
    """A speed option: batch sizes 1 and 3 group the variants differently (other zero-padding
    widths), which changes float32 summation only: 1e-5 relative in PPL."""
    run = small_run
    f = followup_tables(
        run.bridge, run.selection, run.stats, centred=True, ks=run.config.ks, batch_size=batch_size, capture=run.capture
    )
    for name in ("attn_only_ppl", "ffn_only_ppl", "shared_ablation"):
        for got, want in zip(f[name], small_followups[name]):
            assert got == pytest.approx(want, rel=1e-5), name
    assert f["subspace_overlap"] == small_followups["subspace_overlap"]
    assert f["layer_pca_without_outliers"] == small_followups["layer_pca_without_outliers"]


# ---------------------------------------------------------------- 7B without outliers
def _planted(run: Run, layer: int, position: int, scale: float):
    """Stats and held Δφ with one huge vector planted at `position` of `layer` (moments rebuilt)."""
    from lib.measure.stats import Capture, Stats

    c = run.capture
    dphi = c.delta_phi.clone()
    if scale:
        g = torch.Generator().manual_seed(3)
        dphi[layer, position] = scale * torch.randn(dphi.shape[-1], generator=g)
    held = Capture(dphi, c.delta_phi_attn, c.delta_phi_ffn, c.nll)
    return Stats.of_capture(held), held


def test_planted_outlier_is_found_and_k_rises_without_it(small_run):
    """One vector 1000x the others in layer 1, at the 5th position of the 2nd chunk: K90 collapses
    to 1 with it (7B's layer 2) and comes back without it; it is reported with its chunk index."""
    from lib.tables.followups import held_vectors

    run = small_run
    n0 = int(run.selection.counted[0].sum())
    stats, held = _planted(run, 1, n0 + 4, 1000.0)
    clean, _ = _planted(run, 1, n0 + 4, 0.0)
    with_outlier = pca(stats.moments("delta_phi", 1)).k_at(0.9)
    rows = layer_pca_without_outliers(stats, run.selection, True, held_vectors(held.delta_phi))
    assert with_outlier == 1
    assert [p for p in rows[1]["left_out"] if p["chunk"] == 1 and p["position"] == 4]
    assert rows[1]["k90"] > 1
    # the layer has no outlier of its own: exactly the planted one is left out, and K is the clean layer's
    clean_rows = layer_pca_without_outliers(clean, run.selection, True, held_vectors(run.capture.delta_phi))
    assert clean_rows[1]["n_left_out"] == 0 and rows[1]["n_left_out"] == 1
    assert [rows[1][f"k{t}"] for t in (50, 80, 90, 95)] == list(pca(clean.moments("delta_phi", 1)).ks())


def test_no_outlier_leaves_nothing_out_and_k_unchanged():
    """Gaussian writes: norms concentrate (~sqrt(d) +- 1), nothing is beyond median + 10 MAD."""
    from lib.measure.stats import Capture, Stats
    from lib.setup.corpus import Selection
    from lib.tables.followups import held_vectors

    g = torch.Generator().manual_seed(0)
    dphi = torch.randn(2, 60, 16, generator=g) * torch.linspace(0.2, 3, 16)  # (L, N, d)
    stats = Stats.of_capture(Capture(dphi, dphi, dphi, torch.zeros(58)))
    selection = Selection((torch.zeros(30, dtype=torch.long),) * 2, (torch.ones(30, dtype=torch.bool),) * 2)
    rows = layer_pca_without_outliers(stats, selection, True, held_vectors(dphi))
    for layer, row in enumerate(rows):
        assert row["n_left_out"] == 0 and row["left_out"] == []
        assert [row[f"k{t}"] for t in (50, 80, 90, 95)] == list(pca(stats.moments("delta_phi", layer)).ks())
        assert row["threshold"] > float(stats.norms[layer].max())


def test_recapture_gives_the_held_vectors(small_run):
    """Δφ at a few positions, recomputed from their batches, equals the held capture bit for bit
    (the same chunks in the same batch: the same float operations)."""
    from lib.tables.followups import recapture

    run = small_run
    wanted = {0: [0, 40], 2: [89, 33]}
    got = recapture(run.bridge, run.selection, wanted, batch_size=8, attention=run.config.attention)
    assert sorted(got) == [(0, 0), (0, 40), (2, 33), (2, 89)]
    for (layer, p), x in got.items():
        torch.testing.assert_close(x, run.capture.delta_phi[layer, p].double(), atol=0, rtol=0)


def test_streamed_path_gives_the_held_outlier_table(tiny_raw, tmp_path):
    """Without a held capture (streamed statistics) the outliers' vectors are recaptured: the table
    equals the held one (moments summed in another order: K identical, thresholds to 1e-9)."""
    held = followup_tables(
        tiny_raw.bridge, tiny_raw.selection, tiny_raw.stats, centred=True, ks=(8,), capture=tiny_raw.capture
    )["layer_pca_without_outliers"]
    streamed_run = Run(tiny_raw.config, Store(tmp_path), stream_above=0)
    streamed = followup_tables(streamed_run.bridge, streamed_run.selection, streamed_run.stats, centred=True, ks=(8,))[
        "layer_pca_without_outliers"
    ]
    assert "capture" not in vars(streamed_run)
    assert sum(r["n_left_out"] for r in held) > 0, "the trained model must have outliers for this test"
    for s, h in zip(streamed, held):
        assert [(p["chunk"], p["position"]) for p in s["left_out"]] == [
            (p["chunk"], p["position"]) for p in h["left_out"]
        ]
        assert {k: s[k] for k in ("layer", "k50", "k80", "k90", "k95", "n_left_out")} == {
            k: h[k] for k in ("layer", "k50", "k80", "k90", "k95", "n_left_out")
        }
        assert s["threshold"] == pytest.approx(h["threshold"], rel=1e-9)


def test_outlier_rule_is_the_stated_one():
    from lib.tables.followups import outlier_threshold, outliers

    norms = torch.tensor([[1.0, 2, 3, 4, 5, 100], [1.0, 1, 1, 1, 1, 1]])
    # layer 0: median 3 (lower middle), MAD 1 (lower middle of 2,1,0,1,2,97): threshold 3 + 10 = 13
    assert [o.tolist() for o in outliers(norms, outlier_threshold(norms))] == [[5], []]
    assert OUTLIER_MADS == 10.0


# ---------------------------------------------------------------- predicates
def _hand_tables(n_layers: int = 4, d: int = 64) -> dict:
    """Tables with the shape the predicates read; values set per test."""
    ks = [8, 16, 32, d]
    flat = [{"k": k, "ppl": 1.0, "ratio": 1.0} for k in ks]
    eye = [[float(i == j) for j in range(n_layers)] for i in range(n_layers)]
    return {
        "norms": [{"layer": i, "mean_norm": 10.0, "std_norm": 1.0} for i in range(n_layers)],
        "layer_pca": [{"layer": i, "k50": 5, "k80": 10, "k90": 20, "k95": 30} for i in range(n_layers)],
        "lowrank_ppl": [{"k": k, "individual_ratio": 1.0, "shared_ratio": 1.0} for k in ks],
        "attn_ffn": [{"layer": i, "attn_k90": 10, "ffn_k90": 20, "ratio": 0.5} for i in range(n_layers)],
        "attn_only_ppl": [dict(r) for r in flat],
        "ffn_only_ppl": [dict(r) for r in flat],
        "subspace_overlap": {"k": 4, "chance": 4 / d, "attn": eye, "ffn": eye},
        "shared_ablation": [{"k": k, "all_but_last_ratio": 1.0, "last_only_ratio": 1.0} for k in ks],
        "layer_pca_without_outliers": [
            {"layer": i, "k50": 5, "k80": 10, "k90": 20, "k95": 30, "n_left_out": 0, "left_out": []}
            for i in range(n_layers)
        ],
    }


def test_attention_candidate_predicate():
    from lib.writeup.claims import attention_candidate

    t = _hand_tables()
    for a, f, ratio in zip(t["attn_only_ppl"], t["ffn_only_ppl"], (3.0, 2.0, 1.5)):
        a["ratio"], f["ratio"] = ratio, ratio * 2
    assert attention_candidate(t)[0]
    t["attn_only_ppl"][1]["ratio"] = 6.0  # 1.5x the FFN-only 4.0: beyond the 1.38x tie band
    holds, measured = attention_candidate(t)
    assert not holds and "K=16" in measured


def test_similar_patterns_predicate():
    from lib.writeup.claims import attention_similar_patterns
    from lib.writeup.predicates.causal import ffn_diverse

    t = _hand_tables()
    o = t["subspace_overlap"]
    o["attn"] = [[1.0 if i == j else 0.5 for j in range(4)] for i in range(4)]
    o["ffn"] = [[1.0 if i == j else 0.2 for j in range(4)] for i in range(4)]
    assert attention_similar_patterns(t)[0] and ffn_diverse(t)[0]
    o["attn"], o["ffn"] = o["ffn"], o["attn"]  # the FFN contrast is 7E-ffn-diverse's (issue 26)
    assert attention_similar_patterns(t)[0] and not ffn_diverse(t)[0]
    o["attn"] = [[1.0 if i == j else 0.03 for j in range(4)] for i in range(4)]  # above the FFN, below chance 4/64
    o["ffn"] = [[1.0 if i == j else 0.01 for j in range(4)] for i in range(4)]
    assert not attention_similar_patterns(t)[0]


def test_harmful_noise_predicate():
    from lib.writeup.claims import NotApplicable, harmful_noise

    t = _hand_tables()
    for r, others, last in zip(t["shared_ablation"], (2.0, 3.0, 4.0, 1.0), (3.0, 2.0, 1.5, 1.0)):
        r["all_but_last_ratio"], r["last_only_ratio"] = others, last
    assert harmful_noise(t)[0]
    for r, last in zip(t["shared_ablation"], (1.0, 2.0, 9.0)):  # the last layer alone rises too
        r["last_only_ratio"] = last
    assert not harmful_noise(t)[0]
    with pytest.raises(NotApplicable):
        harmful_noise(_hand_tables(d=32))


def test_outlier_predicates():
    from lib.writeup.claims import largest_std_ratio_k90_rises_without_outliers, layer2_k90_rises_without_outliers

    t = _hand_tables()
    t["norms"][2]["std_norm"] = 40.0
    t["layer_pca"][2]["k90"] = 1
    t["layer_pca_without_outliers"][2].update(k90=25, n_left_out=1, left_out=[{"chunk": 0, "position": 0, "norm": 9.0}])
    for predicate in (layer2_k90_rises_without_outliers, largest_std_ratio_k90_rises_without_outliers):
        holds, measured = predicate(t)
        assert holds and "(0, 0)" in measured
    t["layer_pca_without_outliers"][2]["k90"] = 1
    assert not layer2_k90_rises_without_outliers(t)[0]
    assert not largest_std_ratio_k90_rises_without_outliers(t)[0]


def test_inner_attention_lower_predicate():
    from lib.writeup.claims import inner_attention_lower

    t = _hand_tables(n_layers=8)
    t["attn_ffn"][0]["attn_k90"] = 99  # the first layer is not inner: ignored
    assert inner_attention_lower(t)[0]
    t["attn_ffn"][3]["attn_k90"] = 20  # equal to the FFN's: not lower
    holds, measured = inner_attention_lower(t)
    assert not holds and "layer 3" in measured


PREDICATES = (
    "attention_candidate",
    "attention_similar_patterns",
    "harmful_noise",
    "layer2_k90_rises_without_outliers",
    "largest_std_ratio_k90_rises_without_outliers",
    "inner_attention_lower",
)


@pytest.mark.parametrize("n_layer,d_model", [(1, 8), (2, 16), (4, 64)])
def test_every_predicate_decides_or_says_it_does_not_apply(
    make_model, make_config, text_file, tmp_path, n_layer, d_model
):
    import lib.writeup.claims
    from lib.writeup.claims import NotApplicable

    run = Run(make_config(make_model(n_layer=n_layer, d_model=d_model), text_file, n_tokens=40), Store(tmp_path))
    tables = {
        **run.tables,
        **followup_tables(run.bridge, run.selection, run.stats, centred=True, ks=run.config.ks, capture=run.capture),
    }
    for name in PREDICATES:
        try:
            holds, measured = getattr(lib.writeup.claims, name)(tables)
        except NotApplicable:
            continue
        assert isinstance(holds, bool) and measured, name


def test_run_followups_are_lazy_and_cached(small_run, small_followups, tmp_path):
    """Run.followups: not part of Run.tables, computed when accessed, then read from the cache
    without loading the model; equal to followup_tables on the run's own data."""
    run = Run(small_run.config, Store(tmp_path))
    tables = run.tables
    assert not {"attn_only_ppl", "subspace_overlap"} & set(tables) and "followups" not in vars(run)
    f = run.followups
    assert f == json.loads(json.dumps(small_followups))  # another Store and model load, the same computation
    again = Run(small_run.config, Store(tmp_path))
    assert again.followups == f and "bridge" not in vars(again)
