"""7A: collecting Δφ(l) = resid_post(l) - resid_pre(l); norm statistics per layer."""

SECTIONS = ("7A",)


def test_cell(cell, run, judge):
    """Table 7A, one cell: a layer's mean_norm or std_norm of ‖Δφ(l)‖ over the positions (e.g. layer 11: 354.1, 118.0)."""
    judge.cell(cell)


def test_sentence(claim, run, judge):
    """A sentence of 7A ("the Δφ norm is larger in deeper layers", "Layers 2 and 11 have an abnormally large std/mean ratio"), on the measured tables."""
    judge.sentence(claim)


def test_document(claim, judge):
    """The same sentence against the write-up's own tables: does it follow from them?"""
    judge.document(claim)
