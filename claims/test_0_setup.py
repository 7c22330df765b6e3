"""Background and set-up: GPT-2 small (12 layers, d_model 768), Δφ at 1000 WikiText-2 test positions."""

SECTIONS = ("background", "setup")


def test_sentence(claim, run, judge):
    """A statement of the background or set-up ("Model: GPT-2 small (12 layers, 12 heads, d_model = 768)"), on this run."""
    judge.sentence(claim)


def test_document(claim, judge):
    """The same sentence against the write-up's own tables: does it follow from them?"""
    judge.document(claim)
