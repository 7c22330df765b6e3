"""7C: a basis shared across layers (PCA of all layers' Δφ stacked) and how well it reconstructs."""

SECTIONS = ("7C",)


def test_cell(cell, run, judge):
    """Table 7C, one cell: shared K at a threshold (90%: 6), or cos_sim / relative_L2 with K shared components (K = 256: 0.845, 0.470)."""
    judge.cell(cell)


def test_sentence(claim, run, judge):
    """A sentence of 7C ("The shared basis looks very low rank (K = 6 for 90%)", "reconstruction with the shared basis is poor"), on the measured tables."""
    judge.sentence(claim)


def test_document(claim, judge):
    """The same sentence against the write-up's own tables: does it follow from them?"""
    judge.document(claim)
