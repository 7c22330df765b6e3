"""The causal measurements (lib/tables/causes.py) against direct computations on planted data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.measure.spectra import THRESHOLDS
from lib.measure.stats import Capture, Stats
from lib.setup.corpus import Selection
from lib.tables.causes import (
    norm_concentration,
    overlap,
    pc1_origin,
    sample_where,
    shared_overlap,
    shared_pca_normalised,
    write_sources,
)
from lib.tables.core import layer_bases, shared_basis


def _stats(delta_phi: torch.Tensor, attn: torch.Tensor | None = None, ffn: torch.Tensor | None = None) -> Stats:
    attn = torch.zeros_like(delta_phi) if attn is None else attn
    ffn = delta_phi - attn if ffn is None else ffn
    return Stats.of_capture(Capture(delta_phi, attn, ffn, torch.zeros(3, dtype=torch.float64)))


def _selection(n: int, chunk: int) -> Selection:
    """Chunks of `chunk` positions (the last shorter), every position counted."""
    sizes = [min(chunk, n - i) for i in range(0, n, chunk)]
    return Selection(
        tuple(torch.zeros(s, dtype=torch.long) for s in sizes), tuple(torch.ones(s, dtype=torch.bool) for s in sizes)
    )


def _k(x: np.ndarray, t: float) -> int:
    """K at threshold t of centred PCA, directly from the singular values (as scikit-learn)."""
    s = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    return int(np.searchsorted(np.cumsum(s) / s.sum(), t - 1e-12) + 1)


def test_normalised_shared_pca_equals_pca_of_scaled_vectors():
    """Layer l's vectors divided by their mean norm, stacked, PCA'd: the same K as the moments' shortcut."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 200, 16, generator=g, dtype=torch.float64)
    x[2] *= 50  # the dominant layer
    x[2, :, 0] += 300 * torch.randn(200, generator=g, dtype=torch.float64)
    got = shared_pca_normalised(_stats(x.float()), centred=True)
    xf = x.float().double().numpy()
    scaled = np.concatenate([layer / np.linalg.norm(layer, axis=-1).mean() for layer in xf])
    assert got == {f"k{round(t * 100)}": _k(scaled, t) for t in THRESHOLDS}
    raw = shared_basis(_stats(x.float()), centred=True).k_at(0.9)
    assert got["k90"] > raw  # the dominant layer's one direction hid the others


def test_normalised_shared_pca_with_a_dead_layer():
    """A layer whose every write is zero cannot be scaled to unit norm: it adds its zeros (no NaN),
    as the stacked vectors with that layer left at zero would."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 100, 8, generator=g, dtype=torch.float64)
    x[1] = 0
    got = shared_pca_normalised(_stats(x.float()), centred=True)
    xf = x.float().double().numpy()
    scaled = np.concatenate([layer / n if (n := np.linalg.norm(layer, axis=-1).mean()) > 0 else layer for layer in xf])
    assert got == {f"k{round(t * 100)}": _k(scaled, t) for t in THRESHOLDS}


def test_write_sources_finds_the_write_that_carries_the_variance():
    """A rank-1 FFN write of large variance against small attention noise: share ~1, same first direction."""
    g = torch.Generator().manual_seed(1)
    u = torch.nn.functional.normalize(torch.randn(16, generator=g), dim=0)
    ffn = (10 * torch.randn(1, 300, 1, generator=g)) * u  # (1, 300, 16)
    attn = 0.1 * torch.randn(1, 300, 16, generator=g)
    st = _stats(attn + ffn, attn, ffn)
    rows = write_sources(st, layer_bases(st, "delta_phi", True), layer_bases(st, "ffn", True), centred=True)
    whole = (attn + ffn)[0].double().numpy()
    want = np.var(ffn[0].double().numpy(), axis=0, ddof=1).sum() / np.var(whole, axis=0, ddof=1).sum()
    # float64 moments vs NumPy's two-pass variance: rounding ~1e-12
    assert rows[0]["ffn_share"] == pytest.approx(want, rel=1e-9)
    assert rows[0]["ffn_share"] > 0.99 and rows[0]["attn_share"] < 0.01
    assert rows[0]["ffn_pc1_cos"] > 0.999


def test_overlap_of_subspaces():
    """1 for the same subspace, 0 for orthogonal ones, about k'/d for a random one."""
    q = torch.linalg.qr(torch.randn(64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)).Q
    assert overlap(q[:, :4], q[:, :8]) == pytest.approx(1.0, abs=1e-12)
    assert overlap(q[:, :4], q[:, 4:12]) == pytest.approx(0.0, abs=1e-12)
    rnd = torch.linalg.qr(torch.randn(64, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)).Q
    # expectation 16/64 = 0.25; a 4-dim random subspace's overlap varies by ~0.1
    assert 0.05 < overlap(q[:, :4], rnd) < 0.5


def test_shared_overlap_is_largest_for_the_dominant_layer():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 300, 16, generator=g)
    x[1, :, :2] *= 100  # layer 1 dominates the pooled variance along two directions
    st = _stats(x)
    table = shared_overlap(shared_basis(st, True), layer_bases(st, "delta_phi", True))
    assert table["per_layer"].index(max(table["per_layer"])) == 1 and table["per_layer"][1] > 0.99


def test_norm_concentration_locates_the_outlier():
    """One position of norm 1000 among 299 of norm ~4: the top 1% carry nearly all of sum ||x||^2."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 300, 16, generator=g)
    x[0, 137] = 1000 / 4
    rows = norm_concentration(_stats(x), _selection(300, 100))
    assert rows[0]["n_top"] == 3
    assert rows[0]["top_share"] > 0.95 and rows[1]["top_share"] < 0.1
    chunk, position, norm = rows[0]["largest"][0]
    assert (chunk, position) == (1, 37) and norm == pytest.approx(float(x[0, 137].norm()), rel=1e-6)


def test_pc1_origin_tells_a_bias_from_a_few_positions():
    """A fixed bias adds no variance: with a constant bias and one outlier along another direction,
    PC1 is the outlier's direction (cos with the bias ~0), carried by that one position; when the
    bias's own coefficient varies, PC1 is the bias direction."""
    g = torch.Generator().manual_seed(6)
    eye = torch.eye(16)
    bias, spike = 5 * eye[0], eye[1]
    x = bias + 0.1 * torch.randn(1, 200, 16, generator=g)
    x[0, 42] += 50 * spike
    st = _stats(x)
    row = pc1_origin(st, layer_bases(st, "delta_phi", True), bias[None], sample_where(st, _selection(200, 64)))[0]
    assert row["bias_cos"] < 0.05 and row["top_share"] > 0.9 and row["top_positions"][0] == [0, 42]
    varying = (1 + torch.randn(1, 200, 1, generator=g)) * bias + 0.1 * torch.randn(1, 200, 16, generator=g)
    st = _stats(varying)
    row = pc1_origin(st, layer_bases(st, "delta_phi", True), bias[None], sample_where(st, _selection(200, 64)))[0]
    assert row["bias_cos"] > 0.99 and row["top_share"] < 0.2


@pytest.mark.parametrize("normalization", ["LN", "RMS"])
def test_unembedding_directions_are_the_readouts_left_singular_vectors(normalization):
    """LN_final's scale, and for LayerNorm its centring, are part of the readout (raw numerics)."""
    from types import SimpleNamespace

    from lib.tables.causes import unembedding_directions

    g = torch.Generator().manual_seed(7)
    d, vocab = 16, 200
    ln = torch.nn.LayerNorm(d) if normalization == "LN" else torch.nn.RMSNorm(d)
    with torch.no_grad():
        ln.weight.copy_(torch.rand(d, generator=g) * 3)
    bridge = SimpleNamespace(
        W_U=torch.randn(d, vocab, generator=g) * torch.linspace(4, 0.1, d)[:, None],
        ln_final=ln,
        cfg=SimpleNamespace(normalization_type=normalization),
    )
    w = ln.weight.detach().double()[:, None] * bridge.W_U.double()
    if normalization == "LN":
        w = w - w.mean(0, keepdim=True)
    want = torch.linalg.svd(w, full_matrices=False).U
    got = unembedding_directions(bridge)
    for k in (1, 4, 8):
        assert overlap(got[:, :k], want[:, :k]) == pytest.approx(1.0, abs=1e-9), k


def test_misses_middle_layers_leaves_a_dead_layer_out():
    """7C-misses-middle-layers on tables where a middle layer's every write is zero (its 7C rows NaN):
    judged on the other middle layers; with every middle layer dead it does not apply."""
    from lib.writeup.claims import CLAIMS, NotApplicable, middle_wide

    claim = next(c for c in CLAIMS if c.id == "7C-misses-middle-layers")
    n, d = 8, 512

    def rows(cos: dict[int, float]) -> list[dict]:
        return [{"layer": layer, "k": 128, "cos_sim": c, "relative_l2": 1 - c} for layer, c in cos.items()]

    t = {"norms": [{}] * n, "lowrank_ppl": [{"k": d}]}
    chosen = middle_wide(t)
    own = {layer: 0.99 for layer in range(n)}
    shared = {layer: 0.5 for layer in range(n)}
    dead = chosen.start
    own[dead] = shared[dead] = float("nan")
    t |= {"reconstruction_own_per_layer": rows(own), "reconstruction_per_layer": rows(shared)}
    holds, says = claim.predicate(t)
    assert holds and "shared 0.500 vs own 0.990" in says
    t["reconstruction_per_layer"] = rows({layer: float("nan") if layer in chosen else 0.5 for layer in range(n)})
    with pytest.raises(NotApplicable, match="is zero"):
        claim.predicate(t)


def test_balanced_shared_pca_equals_pca_of_variance_scaled_vectors():
    """Layer l's vectors divided by the square root of their total variance, stacked, PCA'd: the same K
    as the moments' shortcut; its reconstruction rows use 7C's mean with the balanced directions."""
    from lib.tables.causes import balanced_reconstruction, shared_balanced

    g = torch.Generator().manual_seed(8)
    x = torch.randn(3, 200, 16, generator=g, dtype=torch.float64)
    x[2] *= 50
    st = _stats(x.float())
    got = shared_balanced(st, centred=True)
    xf = x.float().double().numpy()
    scaled = np.concatenate([layer / np.sqrt(np.var(layer, axis=0, ddof=1).sum()) for layer in xf])
    assert got.k_columns() == {f"k{round(t * 100)}": _k(scaled, t) for t in THRESHOLDS}
    shared = shared_basis(st, centred=True)
    rows = balanced_reconstruction(st.sample, got, shared, ks=(16,))
    # the full basis reconstructs exactly whatever the mean: cosine 1 to float64 rounding
    assert all(r["cos_sim"] == pytest.approx(1.0, abs=1e-9) for r in rows) and len(rows) == 3


def _bos_dominated(seed: int = 9) -> torch.Tensor:
    """(4, 400, 128): layers 0-1 spread over dims 48-127 with a decaying spectrum; layer 2 small but for
    one huge write at position 0 (BOS); the last layer 30x larger along dims 0-3, with a tail of
    44 dims (4% of its variance) that still outweighs every other layer's dims."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(4, 400, 128, dtype=torch.float64)
    decay = torch.linspace(1.0, 0.2, 80, dtype=torch.float64)
    for layer in (0, 1):
        x[layer, :, 48:] = torch.randn(400, 80, generator=g, dtype=torch.float64) * decay
    x[2, :, 48:] = 0.05 * torch.randn(400, 80, generator=g, dtype=torch.float64)
    x[2, 0, 100] = 400.0
    x[3, :, :4] = 30 * torch.randn(400, 4, generator=g, dtype=torch.float64)
    x[3, :, 4:48] = 2 * torch.randn(400, 44, generator=g, dtype=torch.float64)
    return x


def test_balanced_basis_sees_the_damage_unit_norm_scaling_misses():
    """Issue 20, defect 3: scaling each layer to unit mean norm lets the layer whose norm sits on one
    position (layer 2's BOS) dominate, so the old reading (normalised K90 >= 3x raw) fails although
    the imbalance does ruin the basis; the variance-balanced basis shows it (K90 and reconstruction)."""
    from lib.tables.causes import balanced_reconstruction, shared_balanced
    from lib.tables.core import reconstruction_tables
    from lib.writeup.claims import CLAIMS

    st = _stats(_bos_dominated().float())
    shared = shared_basis(st, centred=True)
    balanced = shared_balanced(st, centred=True)
    _, per_layer = reconstruction_tables(st.sample, shared, ks=(64,))
    t = {
        "norms": [{"layer": i, "mean_norm": float(n.mean())} for i, n in enumerate(st.norms)],
        "lowrank_ppl": [{"k": 128}],
        "shared_pca": shared.k_columns(),
        "shared_pca_normalised": shared_pca_normalised(st, centred=True),
        "shared_pca_balanced": balanced.k_columns(),
        "reconstruction_per_layer": per_layer,
        "reconstruction_balanced_per_layer": balanced_reconstruction(st.sample, balanced, shared, ks=(64,)),
    }
    raw, normalised = t["shared_pca"]["k90"], t["shared_pca_normalised"]["k90"]
    assert normalised < 3 * raw  # the old predicate's quantity: no sign of the damage
    by_id = {c.id: c for c in CLAIMS}
    for claim_id in ("7C-norm-dominance-causes-low-k", "concl-shared-norm-imbalance", "core-2-scale-imbalance"):
        holds, says = by_id[claim_id].predicate(t)
        assert holds, (claim_id, says)


def test_centred_norm_share_tells_few_samples_from_many():
    """Issue 20, defect 1: 300 norms of mean 354, std 118 and no outlier: the top 1% carry ~2% of the
    scatter (not dominant); one position far out carries most of it. The uncentred share of
    sum ||Δφ||^2 stays below 50% in both (it cannot tell them apart)."""
    g = torch.Generator().manual_seed(10)
    u = torch.nn.functional.normalize(torch.randn(16, generator=g), dim=0)
    spread = (354 + 118 * torch.randn(1, 300, 1, generator=g)) * u  # (1, 300, 16): norms ~ N(354, 118)
    spiked = spread.clone()
    spiked[0, 5] = 3000 * u
    rows = [norm_concentration(_stats(x), _selection(300, 100))[0] for x in (spread, spiked)]
    assert rows[0]["top_centred_share"] < 0.1 and rows[1]["top_centred_share"] > 0.5
    assert rows[0]["top_share"] < 0.5 and rows[1]["top_share"] < 0.5
    want = ((spiked[0].norm(dim=-1).double() - spiked[0].norm(dim=-1).double().mean()) ** 2).sort(descending=True)
    # Stats.norms come from the float32 vectors: ~1e-7 relative, far below the gaps tested
    assert rows[1]["top_centred_share"] == pytest.approx(float(want.values[:3].sum() / want.values.sum()), rel=1e-6)


def test_pc1_origin_names_the_bos_position():
    """Issue 20, defect 2: a constant bias plus one input-independent write at BOS (position 0 of chunk 1):
    the top position carries nearly all of the PC1 variance and is a BOS, while |cos(PC1, b_out)| ~ 0."""
    g = torch.Generator().manual_seed(11)
    eye = torch.eye(16)
    bias = 5 * eye[0]
    x = bias + 0.1 * torch.randn(1, 200, 16, generator=g)
    x[0, 64] += 50 * eye[1]  # chunk 1 (64 positions a chunk) starts at flat index 64
    st = _stats(x)
    row = pc1_origin(st, layer_bases(st, "delta_phi", True), bias[None], sample_where(st, _selection(200, 64)))[0]
    assert row["top1_share"] > 0.95 and row["top_at_bos"] and row["bias_cos"] < 0.05
    x[0, 64] -= 50 * eye[1]
    x[0, 65] += 50 * eye[1]  # the same write one position later: not a BOS
    st = _stats(x)
    row = pc1_origin(st, layer_bases(st, "delta_phi", True), bias[None], sample_where(st, _selection(200, 64)))[0]
    assert row["top1_share"] > 0.95 and not row["top_at_bos"]
