"""Every section of the session's write-up (lib/writeup/exp7 by default, or `--write-up DIR`): its table
cells and its sentences, parametrized by claims/conftest.py from the write-up's [sections], each test
marked with its section's id, so that one section runs alone with `-m 7B` (or `-k`).

exp7's sections: background and set-up (GPT-2 small, Δφ at 1000 WikiText-2 test positions); 7A the norms
of Δφ(l) = resid_post(l) - resid_pre(l); 7B per-layer PCA, K for 50/80/90/95% of the variance; 7C a basis
shared by all layers and its reconstruction; 7D perplexity with every layer's Δφ projected onto K
components; 7E attention and FFN writes separately; the conclusions.
"""


def test_cell(cell, run, judge):
    """One number of the write-up's tables (7A layer 11: 354.1; 7B layer 2: K = 1), on this run, within its tolerance."""
    judge.cell(cell)


def test_sentence(claim, run, judge):
    """One sentence ("Δφ is not low rank", "attention is consistently lower rank than the FFN"), on the measured tables."""
    judge.sentence(claim)


def test_document(claim, judge):
    """The same sentence against the write-up's own tables: does it follow from them?"""
    judge.document(claim)
