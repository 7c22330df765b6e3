"""7F-7H: the suite's follow-up experiments, for the sentences the write-up never tested.

The write-up states these without an experiment ("the attention path is the candidate",
"similar write patterns in every layer", "harmful noise in the middle layers", "std_norm = 73
is the cause"); each is a few hooks away (lib/tables/followups.py). They cost about as much again as
7D's passes, so they run only with --follow-ups (else they skip, saying so).
"""

FOLLOWUPS = True


def test_sentence(claim, run, judge):
    """A sentence the write-up never tested, on this run's follow-up tables (7F attention-/FFN-only
    low-rank inference, 7G subspace overlap, 7H shared-basis ablation, 7B without outliers)."""
    judge.sentence(claim)
