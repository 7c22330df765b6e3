"""7D's projection hooks against the direct formula resid_pre + mu + U_K U_K^T (Δφ - mu)."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from lib.measure.lowrank import SITES, Projection, _group_tensors, _hooks


@st.composite
def variants(draw: st.DrawFn) -> tuple[list[Projection], int]:
    n_layers, d = draw(st.integers(1, 3)), draw(st.integers(1, 12))
    ks = draw(st.lists(st.integers(1, d), min_size=1, max_size=5))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    out = []
    for k in ks:
        directions = torch.linalg.qr(torch.randn(n_layers, d, d, generator=g, dtype=torch.float64)).Q
        out.append(Projection(torch.randn(n_layers, d, generator=g).float(), directions.float(), k))
    return out, draw(st.integers(1, 6))


@given(variants())
def test_hooks_apply_each_rows_projection(data):
    """Mixed groups: direct (K <= d/2) and complement (K > d/2) rows, zero-padded to one width."""
    projections, n_tokens = data
    n_layers, d = projections[0].mean.shape
    hooks = dict(_hooks(*_group_tensors(projections)))
    g = torch.Generator().manual_seed(0)
    for layer in range(n_layers):
        resid_pre, delta_phi = torch.randn(2, len(projections), n_tokens, d, generator=g)
        hooks[f"blocks.{layer}.hook_resid_pre"](resid_pre, None)
        got = hooks[f"blocks.{layer}.hook_resid_post"](resid_pre + delta_phi, None)
        for row, p in enumerate(projections):
            u, mu = p.directions[layer, :, : p.k].double(), p.mean[layer].double()
            want = resid_pre[row].double() + mu + (delta_phi[row].double() - mu) @ u @ u.T
            # float32 hook vs float64 reference: rounding ~1e-6 on values of size ~10; the wrong
            # projector (or the wrong side of the complement) is off by O(1)
            torch.testing.assert_close(got[row].double(), want, atol=1e-4, rtol=1e-4)


@given(variants(), st.sampled_from(["resid", "attn", "ffn"]), st.data())
def test_hooks_project_the_chosen_write_at_the_chosen_layers(data, site, draw):
    """Follow-up variants: one write (Δφ, attention or FFN output) projected at some layers only;
    the other layers' writes pass through unchanged."""
    projections, n_tokens = data
    n_layers, d = projections[0].mean.shape
    projections = [
        Projection(p.mean, p.directions, p.k, site, tuple(draw.draw(st.sets(st.integers(0, n_layers - 1)))))
        for p in projections
    ]
    hooks = dict(_hooks(*_group_tensors(projections), site=site))
    g = torch.Generator().manual_seed(1)
    for layer in range(n_layers):
        resid_pre, x = torch.randn(2, len(projections), n_tokens, d, generator=g)
        if site == "resid":
            name = f"blocks.{layer}.hook_resid_post"
            if name in hooks:
                hooks[f"blocks.{layer}.hook_resid_pre"](resid_pre, None)
                got = hooks[name](resid_pre + x, None) - resid_pre
            else:
                got = x
        else:
            name = f"blocks.{layer}.{SITES[site]}"
            got = hooks[name](x, None) if name in hooks else x
        for row, p in enumerate(projections):
            u, mu = p.directions[layer, :, : p.k].double(), p.mean[layer].double()
            want = mu + (x[row].double() - mu) @ u @ u.T if layer in p.layers else x[row].double()
            # float32 hook vs float64 reference, as above
            torch.testing.assert_close(got[row].double(), want, atol=1e-4, rtol=1e-4)


def test_width_is_the_cheaper_side():
    directions = torch.eye(8).expand(2, -1, -1)
    assert [Projection(torch.zeros(2, 8), directions, k).width for k in (1, 4, 5, 8)] == [1, 4, 3, 0]


def test_identity_is_k_over_a_complete_basis_or_no_layer():
    """K >= d over a (L, d, d) basis, or no layer projected: the identity; fewer directions, or K < d: not."""
    mean, complete = torch.zeros(2, 8), torch.eye(8).expand(2, -1, -1)
    assert [Projection(mean, complete, k).identity for k in (1, 7, 8, 9)] == [False, False, True, True]
    assert Projection(mean, complete[..., :5], 5).identity is False  # P = U U^T of rank 5 < d
    assert Projection(mean, complete, 3, layers=()).identity is True
    assert Projection(mean, complete, 3, layers=(1,)).identity is False


IDENTITY_ATOL = 1e-5
"""Per-prediction NLL of an identity pass against the clean pass: the pass writes
resid_pre + (mu + (Δφ - mu)) in float32, one rounding of ~6e-8 relative per layer, which moves
logits of size ~1 by ~1e-7 and an NLL of ~6 by as much (measured: 4.8e-7, one float32 ulp at 6); a
projection that is not the identity (K = 4 of 32) moves it by ~1e-1 or more."""


def test_identity_variants_take_the_clean_nll_without_a_pass(make_model, make_config, text_file, store):
    """The identity variants' rows are the capture's NLL, by construction and without a forward pass,
    and equal what their passes give within float32 rounding; the other rows are unchanged."""
    from lib.measure.lowrank import lowrank_nll
    from lib.tables.core import expanded, layer_bases, shared_basis, stacked
    from lib.tables.run import Run

    config = make_config(make_model(n_ctx=32), text_file, n_tokens=80, numerics="compat")  # 3 chunks
    run = Run(config, store)
    d = run.bridge.cfg.d_model
    own, common = stacked(layer_bases(run.stats, "delta_phi", True)), expanded(shared_basis(run.stats, True), 2)
    variants = [
        Projection(*own, d),
        Projection(*common, d),
        Projection(*own, 4, layers=()),
        Projection(*own, d - 1),
        Projection(*common, 4),
    ]
    identity = [v.identity for v in variants]
    assert identity == [True, True, True, False, False]
    baseline = run.stats.nll  # (n_predicted,) the capture's
    passes = lowrank_nll(run.bridge, run.selection, variants, batch_size=1)
    calls: list[int] = []
    handle = run.bridge.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    try:
        shortcut = lowrank_nll(run.bridge, run.selection, variants, batch_size=1, baseline=baseline)
    finally:
        handle.remove()
    assert len(calls) == 2 * len(run.selection.chunks), calls  # the two projections that are not the identity
    for row in (0, 1, 2):
        assert torch.equal(shortcut[row], baseline)
        torch.testing.assert_close(passes[row], baseline, atol=IDENTITY_ATOL, rtol=0)
    assert torch.equal(shortcut[3:], passes[3:])  # one variant per pass either way: the same passes
    assert float((passes[4] - baseline).abs().max()) > 100 * IDENTITY_ATOL  # the tolerance can tell


def test_one_side_for_every_row_gives_the_selects_values_bitwise():
    """Rows all on one side of the complement skip torch.where: the same bits as the select."""
    from lib.measure.lowrank import _project

    g = torch.Generator().manual_seed(2)
    x, mu = torch.randn(3, 5, 8, generator=g), torch.randn(3, 1, 8, generator=g)
    u = torch.linalg.qr(torch.randn(3, 8, 3, generator=g)).Q  # (G, d, W)
    for side in (True, False):
        mask = torch.full((3, 1, 1), side)
        assert torch.equal(_project(x, mu, u, side), _project(x, mu, u, mask))


BATCHED_ATOL = 1e-5
"""Per-prediction NLL of a variant batched with others against the same variant alone: the batched
matmuls sum in another blocking (~1e-7 relative on activations, as IDENTITY_ATOL); a row given
another variant's projection is off by ~1e-1."""


def test_batched_variants_equal_one_by_one_rows(make_model, make_config, text_file, store):
    """Every (K, basis) variant of 7D in groups of up to 8 per pass (zero-padded widths, direct and
    complement rows mixed) gives the NLL rows of one variant per pass."""
    from lib.measure.lowrank import lowrank_nll
    from lib.tables.core import layer_bases, projections, shared_basis
    from lib.tables.run import Run

    config = make_config(make_model(n_ctx=32), text_file, n_tokens=80, numerics="compat")  # 3 chunks
    run = Run(config, store)
    variants = projections(layer_bases(run.stats, "delta_phi", True), shared_basis(run.stats, True), [1, 4, 8, 20, 31])
    alone = lowrank_nll(run.bridge, run.selection, variants, batch_size=1)
    batched = lowrank_nll(run.bridge, run.selection, variants, batch_size=8)
    torch.testing.assert_close(batched, alone, atol=BATCHED_ATOL, rtol=0)
    assert float((alone[0] - alone[5]).abs().max()) > 100 * BATCHED_ATOL  # rows differ: a swap would show
