"""7B: per-layer PCA of Δφ; K for 50/80/90/95% cumulative explained variance."""

SECTIONS = ("7B",)


def test_cell(cell, run, judge):
    """Table 7B, one cell: K for a threshold in one layer (e.g. layer 2: K = 1 at every threshold)."""
    judge.cell(cell)


def test_sentence(claim, run, judge):
    """A sentence of 7B ("Δφ is not low rank", "Middle layers (3–8): K = 198–235"), on the measured tables."""
    judge.sentence(claim)


def test_document(claim, judge):
    """The same sentence against the write-up's own tables: does it follow from them?"""
    judge.document(claim)
