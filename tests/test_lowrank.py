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
