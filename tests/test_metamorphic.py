"""Metamorphic properties of every sentence predicate, over generated captures shaped like real ones.

Captures (tests/synthetic.py) have several chunks whose BOS rows are identical, layers of different
K90, and the last layer not always the largest; their tables come through the suite's own table
functions. A change to the capture that a sentence cannot see must not change its verdict:

- duplicating the text (every chunk twice, BOS rows included): the statistics are intensive;
- permuting the non-BOS positions: no statistic reads their order;
- scaling every write by c > 0: K, ratios, cosines and shares are scale-free;
- a model of another depth moves "the last layer" with it;
- a role with one name ("the largest-norm layer", "the layers it dominates", "the middle layers")
  is one set of layers in every predicate.

A predicate that cannot keep a property is listed below with the reason (and says so beside it).
The perplexity tables (7D, 7F, 7H) need forward passes, which a synthetic capture has not: they are
given (tests/synthetic.py given_tables), the same before and after, so the properties are vacuous
for the sentences that read only them (FORWARD_PASSES).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic import Shape, capture_of, selection_of, tables_of

from lib.measure.stats import Capture
from lib.setup.corpus import Selection
from lib.writeup.claims import CLAIMS, NotApplicable
from lib.writeup.roles import dominated_layers, early, inner, largest_norm_layer, middle, middle_wide

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

FORWARD_PASSES = {
    "7D-individual-good-only-at-two-thirds",
    "7D-individual-k-third-catastrophic",
    "7D-few-components-fail",
    "7D-shared-catastrophic",
    "7D-shared-rises-8-to-32",
    "7D-harmful-noise",
    "7D-ratios-are-ppl-over-baseline",
    "7D-full-k-is-baseline",
    "concl-exp7-ppl-1.1x-at-512",
    "concl-shared-catastrophic",
    "core-3-attention-easier-to-compress",
    "core-3-attention-candidate",
}
"""Read only the perplexity tables, which are given here: the properties hold for them vacuously."""

EXTENSIVE = {
    "setup-1000-positions": "names the number of positions collected (1000), which duplicating doubles",
    "7C-pooled-12000-rows": "names the pooled row count, layers x positions (12000), which duplicating doubles",
}
"""Sentences about the run's size, not its statistics: they cannot keep the duplication property."""

DEPTH = {
    "setup-gpt2-small": "names GPT-2 small's depth (12 layers)",
    "7C-pooled-12000-rows": "names GPT-2 small's depth (12 x 1000 rows)",
}
"""Sentences about the depth itself: a model of another depth changes what they say."""


def verdicts(t: dict[str, Any]) -> dict[str, Any]:
    """Every claim's verdict (and its literal reading's): True, False or 'n/a' (NotApplicable)."""
    out: dict[str, Any] = {}
    for c in CLAIMS:
        for name, predicate in ((c.id, c.predicate), (f"{c.id} (literal)", c.literal)):
            if predicate is None:
                continue
            try:
                out[name] = predicate(t)[0]
            except NotApplicable:
                out[name] = "n/a"
    return out


def changed(a: dict[str, Any], b: dict[str, Any], excluded: set[str] = frozenset()) -> dict[str, tuple]:
    return {k: (a[k], b[k]) for k in a if a[k] != b[k] and k.removesuffix(" (literal)") not in excluded}


D_MODEL = 144
"""Above 128, so that 7C's K = 64 and 128 are both below d_model and the reconstruction sentences decide."""


@st.composite
def random_shapes(draw: st.DrawFn) -> Shape:
    """4-6 layers, 100 positions in 2, 4 or 5 chunks; per-layer ranks (so K90), scales (so which layer
    is largest: not always the last) and BOS writes drawn independently."""
    n_layers = draw(st.integers(4, 6))
    chunks = draw(st.sampled_from([2, 4, 5]))
    rank = st.integers(1, 90)
    return Shape(
        chunks=chunks,
        chunk_len=100 // chunks,
        d_model=D_MODEL,
        attn_rank=tuple(draw(rank) for _ in range(n_layers)),
        ffn_rank=tuple(draw(rank) for _ in range(n_layers)),
        scale=tuple(draw(st.sampled_from([0.5, 1.0, 2.0, 6.0, 30.0])) for _ in range(n_layers)),
        bos=tuple(draw(st.sampled_from([0.2, 1.0, 10.0, 60.0])) for _ in range(n_layers)),
        seed=draw(st.integers(0, 2**16)),
    )


@st.composite
def write_up_like_shapes(draw: st.DrawFn) -> Shape:
    """Shaped like the write-up's GPT-2: norms rising with depth to a dominant, concentrated last
    layer, layer 2's FFN one BOS direction, broad middle layers; sizes and ranks drawn around that."""
    n_layers = draw(st.integers(5, 7))
    chunks = draw(st.sampled_from([2, 4, 5]))
    last = n_layers - 1
    attn = [draw(st.integers(20, 60)) for _ in range(n_layers)]
    ffn = [draw(st.integers(40, 90)) for _ in range(n_layers)]
    attn[last], ffn[last], ffn[2] = draw(st.integers(1, 3)), draw(st.integers(2, 6)), 1
    scale = [1.0 + layer * draw(st.floats(0.2, 1.0)) for layer in range(n_layers)]
    scale[last] = draw(st.sampled_from([0.5, 3.0, 10.0, 40.0])) * max(scale[:last])
    bos = [draw(st.sampled_from([0.2, 1.0])) for _ in range(n_layers)]
    bos[2] = draw(st.sampled_from([1.0, 60.0]))
    return Shape(
        chunks, 100 // chunks, D_MODEL, tuple(attn), tuple(ffn), tuple(scale), tuple(bos), draw(st.integers(0, 2**16))
    )


def shapes() -> st.SearchStrategy[Shape]:
    return st.one_of(random_shapes(), write_up_like_shapes())


def _capture(delta_phi: torch.Tensor, attn: torch.Tensor, ffn: torch.Tensor, nll: torch.Tensor) -> Capture:
    return Capture(delta_phi, attn, ffn, nll)


def duplicated(c: Capture, s: Selection) -> tuple[Capture, Selection]:
    """Every chunk twice (the text read twice over), BOS rows included."""
    cat = lambda x: torch.cat([x, x], dim=-2)  # (L, 2N, d)  # noqa: E731
    return _capture(cat(c.delta_phi), cat(c.delta_phi_attn), cat(c.delta_phi_ffn), torch.cat([c.nll, c.nll])), (
        Selection(s.chunks * 2, s.counted * 2)
    )


def permuted(c: Capture, s: Selection, seed: int) -> Capture:
    """The non-BOS positions' writes shuffled among themselves (every layer alike); BOS rows stay."""
    text = torch.tensor([i for i, (_, p) in enumerate(s.where) if p != 0])
    order = torch.arange(len(s.where))
    order[text] = text[torch.randperm(len(text), generator=torch.Generator().manual_seed(seed))]
    return _capture(c.delta_phi[:, order], c.delta_phi_attn[:, order], c.delta_phi_ffn[:, order], c.nll)


def scaled(c: Capture, factor: float) -> Capture:
    return _capture(factor * c.delta_phi, factor * c.delta_phi_attn, factor * c.delta_phi_ffn, c.nll)


def deeper(c: Capture) -> Capture:
    """One layer more: a copy of the penultimate layer inserted before the last."""
    grow = lambda x: torch.cat([x[:-1], x[-2:-1], x[-1:]])  # (L + 1, N, d)  # noqa: E731
    return _capture(grow(c.delta_phi), grow(c.delta_phi_attn), grow(c.delta_phi_ffn), c.nll)


def reordered(c: Capture, order: list[int]) -> Capture:
    return _capture(c.delta_phi[order], c.delta_phi_attn[order], c.delta_phi_ffn[order], c.nll)


@SETTINGS
@given(shapes())
def test_duplicating_the_text_changes_no_verdict(shape):
    c, s = capture_of(shape), selection_of(shape.chunks, shape.chunk_len)
    before = verdicts(tables_of(c, s))
    after = verdicts(tables_of(*duplicated(c, s)))
    assert not changed(before, after, set(EXTENSIVE)), changed(before, after, set(EXTENSIVE))


@SETTINGS
@given(shapes(), st.integers(0, 2**16))
def test_permuting_the_non_bos_positions_changes_no_verdict(shape, seed):
    c, s = capture_of(shape), selection_of(shape.chunks, shape.chunk_len)
    before, after = verdicts(tables_of(c, s)), verdicts(tables_of(permuted(c, s, seed), s))
    assert not changed(before, after), changed(before, after)


@SETTINGS
@given(shapes(), st.sampled_from([0.01, 0.3, 3.0, 250.0]))
def test_scaling_every_write_changes_no_verdict(shape, factor):
    c, s = capture_of(shape), selection_of(shape.chunks, shape.chunk_len)
    before, after = verdicts(tables_of(c, s)), verdicts(tables_of(scaled(c, factor), s))
    assert not changed(before, after), changed(before, after)


def last_layer_claims() -> list[str]:
    """The sentences about the last layer (by role: "last", "final", layer 11), GPT-2-scoped ones aside."""
    said = re.compile(r"\b(last|final)\b|layer 11", re.IGNORECASE)
    return [c.id for c in CLAIMS if c.predicate and c.scope == "any" and said.search(c.sentence)]


@SETTINGS
@given(shapes())
def test_another_depth_moves_the_last_layer_with_it(shape):
    """A copy of the penultimate layer inserted before the last: the last layer is still the last, and
    the sentences about it (compared with every other layer, by max or by all) keep their verdict."""
    c, s = capture_of(shape), selection_of(shape.chunks, shape.chunk_len)
    before, after = verdicts(tables_of(c, s)), verdicts(tables_of(deeper(c), s))
    claims = set(last_layer_claims()) - set(DEPTH) - ROLE_MEDIANS
    diff = {k: v for k, v in changed(before, after, set(DEPTH)).items() if k.removesuffix(" (literal)") in claims}
    assert not diff, diff


ROLE_MEDIANS = {
    "7B-last-layer-concentrated",  # the last layer's K90 against the middle layers' median: the copy can join them
    "7E-last-attention-concentrated",  # the same against the inner layers' median
    "7A-norm-rises-with-depth",  # a rank correlation over layers 1..L-1: the copy adds a tied pair
    "7C-norm-dominance-causes-low-k",  # the shared K90 of L + 1 layers pools the copy's variance twice
    "7D-shared-optimised-for-last",  # the shared basis pools the copy twice: its top subspace moves
    "7C-shared-contaminated-by-last",  # the same shared basis
    "core-2-twenty-times",  # the last layer's norm against the middle layers' mean: the copy joins them
}
"""Sentences about the last layer that also read a set the inserted layer joins (a median of the
middle layers, the pooled shared basis, a rank correlation): their verdict may move with depth
because the model changed, not because "the last layer" stayed behind."""


@SETTINGS
@given(shapes(), st.randoms(use_true_random=False))
def test_norm_roles_follow_the_norms_not_the_layer_order(shape, rnd):
    """「大ノルム層」 and 「他の層」 are chosen by norm: reordering the layers (the largest-norm one
    anywhere, the last included) changes no verdict of a sentence that names only those roles."""
    c, s = capture_of(shape), selection_of(shape.chunks, shape.chunk_len)
    order = list(range(len(shape.scale)))
    rnd.shuffle(order)
    by_norm = {*BY_NORM, "7B-largest-std-ratio-caused-by-outliers"}
    before, after = verdicts(tables_of(c, s)), verdicts(tables_of(reordered(c, order), s))
    diff = {k: v for k, v in changed(before, after).items() if k in by_norm}
    assert not diff, (order, diff)


BY_NORM = (
    "core-2-shared-sacrifices-others",
    "concl-shared-norm-imbalance",
    "core-2-scale-imbalance",
)
"""The sentences that name only the norm roles (「大ノルム層」, 「他の層」, 「ノルム不均衡」)."""


@st.composite
def reconstruction_tables(draw: st.DrawFn) -> dict[str, Any]:
    """Per-layer 7C rows (own, raw shared, balanced shared at K = 64 and 128) and norms drawn directly:
    synthetic captures of 100 positions rarely make the shared basis cost a layer 0.1 in cosine, so
    the norm roles are also drawn where the reconstruction sentences decide either way."""
    n = draw(st.integers(4, 8))
    norms = [draw(st.sampled_from([5.0, 10.0, 20.0, 40.0])) for _ in range(n)]
    norms[draw(st.integers(0, n - 1))] = draw(st.sampled_from([100.0, 300.0]))
    cos = st.sampled_from([0.3, 0.5, 0.7, 0.85, 0.95])
    rows = {name: [draw(cos) for _ in range(n)] for name in ("own", "shared", "balanced")}

    def table(values: list[float]) -> list[dict[str, Any]]:
        return [
            {"layer": i, "k": k, "cos_sim": v, "relative_l2": 1 - v} for i, v in enumerate(values) for k in (64, 128)
        ]

    return {
        "norms": [{"layer": i, "mean_norm": m, "std_norm": 1.0} for i, m in enumerate(norms)],
        "lowrank_ppl": [{"k": 768}],
        "reconstruction_own_per_layer": table(rows["own"]),
        "reconstruction_per_layer": table(rows["shared"]),
        "reconstruction_balanced_per_layer": table(rows["balanced"]),
    }


def relabelled(t: dict[str, Any], order: list[int]) -> dict[str, Any]:
    """The same layers in another order: new layer i is old layer order[i]."""
    out = dict(t, norms=[dict(t["norms"][old], layer=new) for new, old in enumerate(order)])
    for name in ("reconstruction_own_per_layer", "reconstruction_per_layer", "reconstruction_balanced_per_layer"):
        out[name] = [dict(r, layer=new) for new in range(len(order)) for r in t[name] if r["layer"] == order[new]]
    return out


@settings(max_examples=150, deadline=None, derandomize=True)
@given(reconstruction_tables(), st.randoms(use_true_random=False))
def test_norm_roles_on_drawn_reconstruction_tables(t, rnd):
    """As above, on drawn 7C rows: the largest-norm layer anywhere, the verdicts by norm role unchanged."""
    order = list(range(len(t["norms"])))
    rnd.shuffle(order)
    by_id = {c.id: c for c in CLAIMS}
    before = {i: by_id[i].predicate(t)[0] for i in BY_NORM}
    after = {i: by_id[i].predicate(relabelled(t, order))[0] for i in BY_NORM}
    assert before == after, (order, before, after)


ROLE_IN_MESSAGE = (
    (re.compile(r"largest norm at layer (\d+)"), lambda t: [largest_norm_layer(t)]),
    (re.compile(r"the layers it dominates \[([\d, ]*)\]|dominating layers \[([\d, ]*)\]"), dominated_layers),
    (re.compile(r"middle layers (\d+)-(\d+)"), lambda t: list(middle(t))),
    (re.compile(r"inner layers (\d+)-(\d+)"), lambda t: list(inner(t))),
    (re.compile(r"early layers (\d+)-(\d+)"), lambda t: list(early(t))),
    (re.compile(r"mean of layers (\d+)-(\d+)|layers (\d+)-(\d+), mean cos"), lambda t: list(middle_wide(t))),
)


def _layers(match: re.Match) -> list[int]:
    groups = [g for g in match.groups() if g is not None]
    if len(groups) == 2 and "," not in groups[0]:
        return list(range(int(groups[0]), int(groups[1]) + 1))
    return [int(x) for x in groups[0].split(",") if x.strip()]


@SETTINGS
@given(shapes())
def test_a_role_is_one_set_of_layers_in_every_predicate(shape):
    """Every predicate that names a role in what it measured names the set lib/roles.py gives for it."""
    t = tables_of(capture_of(shape), selection_of(shape.chunks, shape.chunk_len))
    seen = 0
    for c in CLAIMS:
        for predicate in (c.predicate, c.literal):
            if predicate is None:
                continue
            try:
                says = predicate(t)[1]
            except NotApplicable:
                continue
            for pattern, role in ROLE_IN_MESSAGE:
                for match in pattern.finditer(says):
                    seen += 1
                    assert _layers(match) == role(t), (c.id, match.group(0), role(t))
    assert seen
