"""Student-vs-teacher metrics, plain numpy (no model needed to test them).

* :func:`classification_metrics`: precision, recall, F1 and accuracy at a probability threshold,
  ROC-AUC (Mann-Whitney, ties counted half) and average precision.
* :func:`combined_score`: the teacher's ranking of a document, from whatever scores it has.
* :func:`spearman`: rank agreement between the student's probability and that ranking.
"""

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


def classification_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Precision, recall, F1, accuracy at ``threshold``; ROC-AUC and average precision.

    Args:
        y: ``[n]`` true labels (1 = positive).
        p: ``[n]`` predicted probability of the positive label.
        threshold: predicted positive when ``p >= threshold``.
    """
    y = np.asarray(y, dtype=bool)
    pred = np.asarray(p, dtype=np.float64) >= threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": int(len(y)),
        "n_positive": int(y.sum()),
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "roc_auc": roc_auc(y, p),
        "average_precision": average_precision(y, p),
    }


def combined_score(*columns: np.ndarray) -> np.ndarray:
    """The teacher's combined score: mean percentile rank over the score columns a row has.

    Similarity (cosine) and perplexity correlation live on different scales, so each column is
    turned into percentile ranks in (0, 1] among the rows where it is present; a row's combined
    score is the mean over its present columns (NaN when it has none).

    Args:
        columns: each ``[n]`` float, NaN where absent.

    Returns:
        ``[n]`` float64.
    """
    if not columns:
        raise ValueError("combined_score needs at least one column")
    n = len(columns[0])
    total = np.zeros(n)
    count = np.zeros(n)
    for c in columns:
        c = np.asarray(c, dtype=np.float64)
        ok = ~np.isnan(c)
        if ok.any():
            total[ok] += rankdata(c[ok]) / ok.sum()
            count[ok] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation over the rows where both are finite (NaN if fewer than 3)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    ra, rb = rankdata(a[ok]), rankdata(b[ok])
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])
