"""7E: attention (Δφ_attn = hook_attn_out) and FFN (Δφ_ffn = hook_mlp_out) writes separately."""

SECTIONS = ("7E",)


def test_cell(cell, run, judge):
    """Table 7E, one cell: K(90%) of attention or FFN in one layer, or their ratio (layer 2: 97, 1, 97.0)."""
    judge.cell(cell)


def test_sentence(claim, run, judge):
    """A sentence of 7E ("attention is consistently lower rank than the FFN", "Layer 2: the FFN reaches 90% with K = 1"), on the measured tables."""
    judge.sentence(claim)


def test_document(claim, judge):
    """The same sentence against the write-up's own tables: does it follow from them?"""
    judge.document(claim)
