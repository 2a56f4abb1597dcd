"""Ranking metrics shared by stages (retrieval quality, distillation): plain numpy."""

from __future__ import annotations

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
