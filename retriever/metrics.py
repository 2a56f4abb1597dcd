"""Ranking metrics shared by stages (retrieval quality, distillation, agreement of signals):
plain numpy."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def rankdata(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), 1-based; scipy imported on first use."""
    from scipy.stats import rankdata as _rankdata  # ~1.5 s to import: not at filter start-up

    return _rankdata(a)


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive outranks a random negative.

    Args:
        y: ``[n]`` 0/1 (or bool) true labels.
        p: ``[n]`` scores, higher means more positive.

    Returns:
        AUC in [0, 1]; NaN when one class is absent.
    """
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(p)  # average ranks: ties count half
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise, as scikit-learn computes it)."""
    y = np.asarray(y, dtype=bool)
    if not y.any():
        return float("nan")
    order = np.argsort(-np.asarray(p, dtype=np.float64), kind="stable")
    hits = y[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / hits.sum())


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation over the pairs where both are finite (average ranks for ties);
    NaN under 3 pairs or when one side is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return math.nan
    rx, ry = rankdata(x[ok]), rankdata(y[ok])
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def bootstrap_interval(
    stat: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``stat(*arrays)`` with a percentile bootstrap interval over paired rows.

    Each resample draws ``len(arrays[0])`` row indices with replacement and applies ``stat`` to
    every array at those rows; resamples where ``stat`` is NaN (e.g. one class missing for an
    AUC) are left out.

    Returns:
        ``(value, low, high)``; the bounds are NaN when fewer than half the resamples gave a
        value.
    """
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise ValueError("bootstrap_interval: arrays must have the same length")
    value = float(stat(*arrs))
    if n < 2:
        return value, math.nan, math.nan
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = float(stat(*(a[idx] for a in arrs)))
        if math.isfinite(v):
            vals.append(v)
    if len(vals) < n_boot / 2:
        return value, math.nan, math.nan
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return value, float(lo), float(hi)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float, float]:
    """The share ``k / n`` and its Wilson score interval (95% at ``z = 1.96``); NaNs when
    ``n == 0``."""
    if n == 0:
        return (math.nan,) * 3
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return p, max(0.0, c - h), min(1.0, c + h)
