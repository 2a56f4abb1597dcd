"""Student-vs-teacher metrics, plain numpy (no model needed to test them).

* :func:`classification_metrics`: precision, recall, F1 and accuracy at a probability threshold,
  ROC-AUC (Mann-Whitney, ties counted half) and average precision.
* :func:`combined_score`: the teacher's ranking of a document, from whatever scores it has.
* :func:`spearman`: rank agreement between the student's probability and that ranking.
"""

from __future__ import annotations

import numpy as np

from retriever.metrics import average_precision, rankdata, roc_auc  # noqa: F401 - re-exported


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
