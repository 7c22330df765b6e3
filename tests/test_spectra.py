"""Properties of the PCA, K-at-threshold and projection code (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib.measure.spectra import THRESHOLDS, Moments, add_gram_, pca, reconstruction
from lib.measure.stats import Capture, Stats
from lib.tables.core import reconstruction_tables, shared_basis

# float64 eigendecompositions of well-conditioned data: errors ~1e-12; 1e-8 is safe and tight.
ATOL = 1e-8


@st.composite
def planted(draw: st.DrawFn) -> tuple[torch.Tensor, int]:
    """(n, d) data of rank r around a random mean: mean + Z A, Z (n, r), A (r, d)."""
    d = draw(st.integers(2, 24))
    r = draw(st.integers(1, d))
    n = draw(st.integers(r + 2, 80))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, r, generator=g, dtype=torch.float64)
    a = torch.randn(r, d, generator=g, dtype=torch.float64)
    mean = torch.randn(d, generator=g, dtype=torch.float64) * draw(st.sampled_from([0.0, 1.0, 10.0]))
    return mean + z @ a, r


centred = st.booleans()


@given(st.integers(1, 40), st.integers(1, 30), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_add_gram_sums_the_upper_triangle_of_x_t_x(n, d, block, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(2, n, d, generator=g, dtype=torch.float64)
    acc = torch.full((d, d), 7.0, dtype=torch.float64)
    add_gram_(add_gram_(acc, x, block), y, block)
    want = 7.0 + x.T @ x + y.T @ y
    upper = torch.ones(d, d, dtype=torch.bool).triu()
    torch.testing.assert_close(acc[upper], want[upper], rtol=1e-12, atol=1e-12)
    below_blocks = torch.arange(d)[:, None] // block > torch.arange(d)[None, :] // block
    assert (acc[below_blocks] == 7.0).all()  # the strictly lower blocks are never computed


@given(planted(), centred)
def test_planted_rank_bounds_k(data, centre):
    x, r = data
    basis = pca(Moments.of(x), centre)
    # uncentred PCA also spends (at most) one direction on the mean
    assert all(k <= r + (not centre) for k in basis.ks())


@given(planted(), centred)
def test_k_is_non_decreasing_in_the_threshold(data, centre):
    ks = pca(Moments.of(data[0]), centre).ks(sorted({*THRESHOLDS, 0.1, 0.99, 1.0}))
    assert list(ks) == sorted(ks)


@given(planted(), centred, st.sampled_from([1e-3, 0.5, 7.0, 1e4]))
def test_k_is_invariant_to_scaling(data, centre, scale):
    x = data[0]
    assert pca(Moments.of(x), centre).ks() == pca(Moments.of(x * scale), centre).ks()


@given(planted(), centred)
def test_reconstruction_error_falls_with_k_and_vanishes_at_d(data, centre):
    x = data[0]
    d = x.shape[1]
    basis = pca(Moments.of(x), centre)
    cos, rel = reconstruction(x, basis, range(d + 1))
    mean_rel = rel.mean(-1)
    assert bool((mean_rel[1:] <= mean_rel[:-1] + ATOL).all())
    assert float(rel[-1].max()) < ATOL
    assert float((cos[-1] - 1).abs().max()) < ATOL


@given(planted(), centred, st.lists(st.integers(0, 10_000), min_size=1, max_size=3))
def test_a_zero_write_is_left_out_of_the_reconstruction_means(data, centre, where):
    """A position whose vector is exactly zero has no relative error or cosine (NaN there), and the
    means over positions (nanmean, as the tables take them) are those of the other positions."""
    x = data[0]
    zero = sorted({i % (len(x) + 1) for i in where})
    with_zeros = x.clone()
    for i in reversed(zero):  # zero rows inserted at those indices
        with_zeros = torch.cat([with_zeros[:i], torch.zeros(1, x.shape[1], dtype=x.dtype), with_zeros[i:]])
    is_zero = with_zeros.norm(dim=-1) == 0
    basis = pca(Moments.of(x), centre)
    ks = [1, x.shape[1] // 2, x.shape[1]]
    cos, rel = reconstruction(with_zeros, basis, ks)
    assert bool(cos[:, is_zero].isnan().all()) and bool(rel[:, is_zero].isnan().all())
    want_cos, want_rel = reconstruction(x, basis, ks)
    torch.testing.assert_close(cos.nanmean(-1), want_cos.mean(-1))
    torch.testing.assert_close(rel.nanmean(-1), want_rel.mean(-1))


def test_reconstruction_tables_leave_out_a_zero_layer_but_show_a_non_finite_write():
    """A layer whose every write is zero has no 7C rows (NaN) and is left out of the overall mean,
    which is then the other layers'; a NaN write is not left out: its layer's means are NaN."""
    g = torch.Generator().manual_seed(0)
    live = torch.randn(2, 30, 6, generator=g, dtype=torch.float64)
    stacked = torch.cat([live[:1], torch.zeros(1, 30, 6, dtype=torch.float64), live[1:]])  # layer 1 dead
    basis = pca(Moments.of(live.reshape(-1, 6)))
    overall, layers = reconstruction_tables(stacked, basis, [2, 4])
    want, _ = reconstruction_tables(live, basis, [2, 4])
    assert all(math.isnan(r["cos_sim"]) and math.isnan(r["relative_l2"]) for r in layers if r["layer"] == 1)
    for got, ref in zip(overall, want):
        assert got["cos_sim"] == pytest.approx(ref["cos_sim"]) and got["relative_l2"] == pytest.approx(
            ref["relative_l2"]
        )
    stacked[0, 3, 2] = torch.nan
    _, layers = reconstruction_tables(stacked, basis, [2])
    assert math.isnan(next(r for r in layers if r["layer"] == 0)["cos_sim"])


@given(planted(), centred)
def test_projection_with_all_components_is_identity(data, centre):
    x = data[0]
    basis = pca(Moments.of(x), centre)
    torch.testing.assert_close(basis.project(x, x.shape[1]), x, atol=ATOL, rtol=ATOL)


@given(planted())
def test_shared_basis_of_one_layer_is_that_layer_basis(data):
    x = data[0]
    stats = Stats.of_capture(Capture(x[None], x[None], x[None], torch.zeros(1)))  # one layer
    shared = shared_basis(stats, True)
    own = pca(Moments.of(x), True)
    assert shared.ks() == own.ks()
    torch.testing.assert_close(shared.variance, own.variance)
    torch.testing.assert_close(shared.mean, own.mean)
    torch.testing.assert_close(
        shared.project(x, x.shape[1] // 2), own.project(x, x.shape[1] // 2), atol=1e-6, rtol=1e-6
    )


@settings(max_examples=30)
@given(planted(), centred)
def test_matches_numpy_svd(data, centre):
    """The covariance route equals a dense SVD of the (centred) data, the scikit-learn way."""
    x, _ = data
    xn = x.numpy()
    xc = xn - xn.mean(0) if centre else xn
    s = np.linalg.svd(xc, compute_uv=False)
    variance = s**2 / (len(xn) - 1 if centre else len(xn))
    ours = pca(Moments.of(x), centre).variance.numpy()[: len(variance)]
    np.testing.assert_allclose(ours, variance, atol=1e-8 * variance.max(), rtol=1e-7)


def test_rank_one_data_needs_one_component():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 1, generator=g, dtype=torch.float64) * torch.randn(1, 16, generator=g, dtype=torch.float64)
    assert pca(Moments.of(x)).ks() == (1, 1, 1, 1)


def test_data_without_variance_needs_no_component():
    assert pca(Moments.of(torch.ones(5, 3, dtype=torch.float64))).ks() == (0, 0, 0, 0)


def test_centred_pca_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2 samples"):
        pca(Moments.of(torch.ones(1, 3)))
