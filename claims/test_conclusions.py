"""Overall conclusions: the comparison with exp6 (exp7's column) and the four core findings."""

SECTIONS = ("conclusions",)


def test_sentence(claim, run, judge):
    """A conclusion ("Δφ is high rank too, hard to compress", "layer 11's norm is 20 times the middle layers'"), on the measured tables."""
    judge.sentence(claim)


def test_document(claim, judge):
    """The same sentence against the write-up's own tables: does it follow from them?"""
    judge.document(claim)
