"""The causal measurements (lib/causes.py) against direct computations on planted data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.capture import Capture, Stats
from lib.causes import (
    norm_concentration,
    overlap,
    pc1_origin,
    shared_overlap,
    shared_pca_normalised,
    write_sources,
)
from lib.corpus import Selection
from lib.spectra import THRESHOLDS
from lib.tables import layer_bases, shared_basis


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
    row = pc1_origin(st, layer_bases(st, "delta_phi", True), bias[None], _selection(200, 64))[0]
    assert row["bias_cos"] < 0.05 and row["top_share"] > 0.9 and row["top_positions"][0] == [0, 42]
    varying = (1 + torch.randn(1, 200, 1, generator=g)) * bias + 0.1 * torch.randn(1, 200, 16, generator=g)
    st = _stats(varying)
    row = pc1_origin(st, layer_bases(st, "delta_phi", True), bias[None], _selection(200, 64))[0]
    assert row["bias_cos"] > 0.99 and row["top_share"] < 0.2


@pytest.mark.parametrize("normalization", ["LN", "RMS"])
def test_unembedding_directions_are_the_readouts_left_singular_vectors(normalization):
    """LN_final's scale, and for LayerNorm its centring, are part of the readout (raw numerics)."""
    from types import SimpleNamespace

    from lib.causes import unembedding_directions

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
    from lib.document import CLAIMS, NotApplicable, middle

    claim = next(c for c in CLAIMS if c.id == "7C-misses-middle-layers")
    n, d = 8, 512

    def rows(cos: dict[int, float]) -> list[dict]:
        return [{"layer": layer, "k": 128, "cos_sim": c, "relative_l2": 1 - c} for layer, c in cos.items()]

    t = {"norms": [{}] * n, "lowrank_ppl": [{"k": d}]}
    chosen = middle(t)
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
