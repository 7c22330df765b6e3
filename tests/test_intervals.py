"""What the bootstrap's numbers answer (lib/robustness/intervals.py), checked by simulation at the
embedded model's shape: d = 128, n = 1000, Gaussian writes whose covariance has the embedded model's
layer-1 spectrum (its snapshot, claims/test_snapshots.py), independent positions (blocks of 1).

- a prediction interval covers a fresh sample's value, for a smooth statistic (CEV at 22 components)
  and for K90 built from the curve (the percentile interval covered 43% and 0.7%);
- a claim's stability on replicate pairs estimates the chance that two independent samples agree
  (the share of agreeing replicates was skewed by the resample's shift)."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pytest
import torch

from lib.measure.spectra import Moments, spectra
from lib.robustness.bootstrap import block_counts
from lib.robustness.intervals import field_summary, first_crossing, k_interval, pairs, pseudo_samples

N, R, SEEDS, K = 1000, 50, 40, 22
"""1000 positions, 50 replicates, 40 simulated samples (each with a fresh one beside it): ~10 s on a
loaded CPU core. K = 22: the embedded model's layer-0 K90, a point on the curve's shoulder."""
ROOT = Path(__file__).resolve().parent.parent


def layer_spectrum() -> torch.Tensor:
    found = sorted(ROOT.glob("snapshots/tiny-wikitext-*-n1000-*/test_snapshots/*layer_spectra*.json"))
    if not found:
        pytest.skip("no snapshot of the embedded model's layer_spectra")
    ratios = json.loads(found[0].read_text())["layer_spectra"][1]
    return torch.tensor(ratios, dtype=torch.float64).clamp_min(1e-8)  # (d,)


def curves(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(R, n) weights, (n, d) writes -> (R, d) cumulative explained-variance ratios, through the
    engine's moments (sum w x, sum w x x^T) and spectra."""
    moments = [Moments(float(w.sum()), w @ x, (x.T * w) @ x) for w in weights]
    variance = spectra(moments, True)  # (R, d)
    return torch.cumsum(variance / variance.sum(-1, keepdim=True), -1)


@pytest.fixture(scope="module")
def simulated() -> list[dict[str, Any]]:
    """Per simulated sample: its CEV at K and K90, its replicates' curves, a fresh sample's."""
    scale = layer_spectrum().sqrt()
    g = torch.Generator().manual_seed(0)
    ones = torch.ones(1, N, dtype=torch.float64)
    out = []
    for seed in range(SEEDS):
        x = torch.randn(N, len(scale), generator=g, dtype=torch.float64) * scale  # (n, d)
        fresh = torch.randn(N, len(scale), generator=g, dtype=torch.float64) * scale
        own, other = curves(ones, x)[0], curves(ones, fresh)[0]
        drawn = curves(block_counts([N], R, block=1, seed=seed).double(), x)  # (R, d)
        out.append({"own": own, "fresh": other, "drawn": drawn})
    return out


def test_prediction_intervals_cover_a_fresh_sample(simulated):
    """At least 33 of 40 (93-97% wanted; binomial(40, 0.95) gives fewer than 33 with probability 0.3%)
    for CEV at 22 components and for K90, and no wider than needed: the smooth interval's mean width
    at most 1.5x the 2 x 1.96 x sqrt(2) SD a normal prediction needs (SD from the 80 samples)."""
    i, j = pairs(R, 4000, 0)
    hits = {"cev": 0, "k90": 0}
    widths = []
    for s in simulated:
        f = field_summary(float(s["own"][K - 1]), s["drawn"][:, K - 1].tolist(), i, j, 0.95)
        lo, hi = f["prediction"]
        hits["cev"] += lo <= float(s["fresh"][K - 1]) <= hi
        widths.append(hi - lo)
        k_lo, k_hi = k_interval(s["own"], s["drawn"], i, j, 0.9, 0.95)["prediction"]
        hits["k90"] += k_lo <= int(first_crossing(s["fresh"], 0.9)) <= k_hi
    values = torch.tensor([float(s[w][K - 1]) for s in simulated for w in ("own", "fresh")])
    assert hits["cev"] >= 33 and hits["k90"] >= 33, hits
    assert sum(widths) / len(widths) <= 1.5 * 2 * 1.96 * 2**0.5 * float(values.std()), (widths, values.std())


def pseudo(estimate: float, drawn: torch.Tensor) -> Any:
    """The pseudo-samples stability_of judges (intervals.pseudo_samples), of a one-field table."""
    replicates = [{"t": {"cev": v}} for v in drawn.tolist()]
    return pseudo_samples({"t": {"cev": estimate}}, replicates, ({}, [{}] * len(replicates)), ["t"], most=4000)


def test_stability_estimates_the_chance_that_a_fresh_sample_agrees(simulated):
    """Claims CEV(22) >= c at c = mean + z SD (z from -1.5 to 1.5): the true chance that two
    independent samples agree is p^2 + (1 - p)^2 with p = P(CEV >= c) (normal, mean and SD from the 80
    samples). Over the 40 x 7 claims the stability on replicate pairs is off by a mean square error
    below 0.06 (0.03 here) and below a third of the replicate share's (0.19 here)."""
    i, j = pairs(R, 4000, 0)
    values = torch.tensor([float(s[w][K - 1]) for s in simulated for w in ("own", "fresh")])
    mean, sd = float(values.mean()), float(values.std())
    errors: dict[str, list[float]] = {"pairs": [], "replicates": []}
    for z in (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5):
        c = mean + z * sd
        p = 1 - NormalDist(mean, sd).cdf(c)
        truth = p * p + (1 - p) * (1 - p)
        for s in simulated:
            estimate, drawn = float(s["own"][K - 1]), s["drawn"][:, K - 1]
            holds = estimate >= c
            by_pairs = sum((t["t"]["cev"] >= c) == holds for t in pseudo(estimate, drawn)) / len(i)
            by_replicates = float(((drawn >= c) == holds).double().mean())
            errors["pairs"].append((by_pairs - truth) ** 2)
            errors["replicates"].append((by_replicates - truth) ** 2)
    mse = {k: sum(v) / len(v) for k, v in errors.items()}
    assert mse["pairs"] < 0.06 and mse["pairs"] < mse["replicates"] / 3, mse
