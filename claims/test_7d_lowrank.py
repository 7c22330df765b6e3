"""7D: perplexity when every layer's Δφ is projected onto K components during inference."""

SECTIONS = ("7D",)


def test_cell(cell, run, judge):
    """Table 7D, one cell: PPL or ratio at one K with individual or shared bases (K = 512: 44.5, 1.49x, 208, 7.0x), or the baseline 29.79."""
    judge.cell(cell)


def test_sentence(claim, run, judge):
    """A sentence of 7D ("only at K = 512 does the ratio reach 1.49x", "the PPL even rises as K grows (K = 8 → 32)"), on the measured tables."""
    judge.sentence(claim)


def test_document(claim, judge):
    """The same sentence against the write-up's own tables: does it follow from them?"""
    judge.document(claim)
