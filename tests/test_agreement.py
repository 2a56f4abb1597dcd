"""Agreement maths of scripts/eval_signals.py: Spearman with ties and NaNs, paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from retriever.metrics import bootstrap_interval, roc_auc, spearman


def test_spearman_matches_scipy_with_ties_and_skips_non_finite():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, 200).astype(float)  # many ties, like keyword match counts
    y = x + rng.normal(0, 2, 200)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    x2, y2 = np.r_[x, np.nan, 1.0], np.r_[y, 5.0, np.inf]
    assert spearman(x2, y2) == pytest.approx(spearman(x, y))
    assert math.isnan(spearman(np.zeros(10), y[:10]))  # constant: no rank information
    assert math.isnan(spearman([1.0, 2.0], [2.0, 1.0]))


def test_bootstrap_interval_covers_the_truth_and_narrows_with_n():
    rng = np.random.default_rng(1)
    truth = 6 / math.pi * math.asin(0.5 / math.sqrt(1.25) / 2)  # Spearman of y = 0.5 x + noise
    hits, widths = 0, {}
    for rep in range(30):
        for n in (60, 600) if rep < 3 else (100,):
            x = rng.normal(size=n)
            y = 0.5 * x + rng.normal(size=n)
            v, lo, hi = bootstrap_interval(spearman, x, y, n_boot=150, seed=rep)
            assert lo < v < hi
            if n == 100:
                hits += lo < truth < hi
            else:
                widths.setdefault(n, []).append(hi - lo)
    assert hits >= 23  # a 95% interval: ~26 of 27 replicates cover the truth
    assert np.mean(widths[600]) < np.mean(widths[60]) / 2  # ~1/sqrt(n): 10x the data, ~3x
    # the same seed gives the same interval; pairs stay paired (a perfect rank match stays 1)
    assert bootstrap_interval(spearman, x, y, n_boot=50, seed=3) == bootstrap_interval(
        spearman, x, y, n_boot=50, seed=3
    )
    assert bootstrap_interval(spearman, x, 2 * x, n_boot=50)[1:] == pytest.approx((1.0, 1.0))


def test_bootstrap_interval_of_an_auc_leaves_out_one_class_resamples():
    y = np.array([True] + [False] * 9)
    p = np.arange(10, dtype=float)[::-1]  # the positive ranks first
    v, lo, hi = bootstrap_interval(lambda a, b: roc_auc(b, a), p, y, n_boot=200)
    assert v == 1.0 and lo == hi == 1.0  # resamples without the positive are left out
    v, lo, hi = bootstrap_interval(lambda a, b: roc_auc(b, a), p, np.zeros(10, bool), n_boot=20)
    assert math.isnan(v) and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError):
        bootstrap_interval(spearman, np.zeros(3), np.zeros(4))
