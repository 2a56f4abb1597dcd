"""Retrieval quality of the similarity stage: do a task's own (held-out) records score highest?

Per task: ROC-AUC of the task's held-out gold records against everything else (corpus documents and
the other tasks' held-out records), against the corpus only and against the other tasks only, and
precision at N (N = number of held-out records of the task: the R-precision).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from retriever.gold.loader import GoldSet
from retriever.metrics import roc_auc


def holdout_split(
    gold: GoldSet, n_holdout: int, max_index: int | None = None, seed: int = 0
) -> tuple[GoldSet, list[str]]:
    """Split a gold set into ``(indexed gold, held-out texts)``, shuffled with ``seed``.

    Held-out records never enter the index; ``max_index`` caps the indexed part (speed).
    """
    docs = list(gold.docs)
    random.Random(seed).shuffle(docs)
    held, rest = docs[:n_holdout], docs[n_holdout:]
    if max_index is not None:
        rest = rest[:max_index]
    return GoldSet(rest, gold.stats, gold.sources), [d.text for d in held]


def precision_at(y: np.ndarray, s: np.ndarray, n: int) -> float:
    """Share of true positives among the ``n`` highest scores."""
    if n <= 0:
        return float("nan")
    top = np.argsort(-np.asarray(s, dtype=np.float64), kind="stable")[:n]
    return float(np.asarray(y, dtype=bool)[top].mean())


def retrieval_metrics(
    label: np.ndarray, scores: dict[str, np.ndarray], corpus_label: str = "corpus"
) -> dict[str, Any]:
    """Per task, how well ``scores[task]`` separates the task's records from the rest.

    Args:
        label: ``[n_docs]`` source of each document: a task name or ``corpus_label``.
        scores: task -> ``[n_docs]`` scores.
    """
    label = np.asarray(label)
    out = {}
    for task, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        pos = label == task
        is_corpus = label == corpus_label
        other = ~pos & ~is_corpus
        n = int(pos.sum())
        out[task] = {
            "n_positive": n,
            "roc_auc": roc_auc(pos, s),
            "roc_auc_vs_corpus": roc_auc(pos[pos | is_corpus], s[pos | is_corpus]),
            "roc_auc_vs_other_tasks": roc_auc(pos[pos | other], s[pos | other]),
            "precision_at_n": precision_at(pos, s, n),
            "precision_at_n_vs_corpus": precision_at(pos[pos | is_corpus], s[pos | is_corpus], n),
        }
    return out


def bootstrap_metrics(
    label: np.ndarray,
    scores: dict[str, np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Per task ROC-AUC and P@N (N = the task's count) with stratified bootstrap intervals.

    Each resample draws the task's records and the other documents separately with replacement
    (so every resample keeps N positives); the interval is the percentile one at ``level``.

    Args:
        label: ``[n_docs]`` a task name or ``"corpus"`` per document.
        scores: task -> ``[n_docs]`` scores.
    """
    label = np.asarray(label)
    rng = np.random.default_rng(seed)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for task, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        pos = label == task
        n = int(pos.sum())
        ip, ineg = np.flatnonzero(pos), np.flatnonzero(~pos)
        aucs, pans = np.empty(n_boot), np.empty(n_boot)
        for b in range(n_boot):
            idx = np.concatenate([rng.choice(ip, len(ip)), rng.choice(ineg, len(ineg))])
            y, sb = pos[idx], s[idx]
            aucs[b] = roc_auc(y, sb)
            pans[b] = precision_at(y, sb, n)
        out[task] = {
            "n_positive": n,
            "n_negative": int(len(ineg)),
            "roc_auc": roc_auc(pos, s),
            "roc_auc_ci": [float(np.percentile(aucs, lo)), float(np.percentile(aucs, hi))],
            "precision_at_n": precision_at(pos, s, n),
            "precision_at_n_ci": [float(np.percentile(pans, lo)), float(np.percentile(pans, hi))],
            "roc_auc_vs_corpus": roc_auc(
                pos[pos | (label == "corpus")], s[pos | (label == "corpus")]
            ),
            "roc_auc_vs_other_tasks": roc_auc(pos[label != "corpus"], s[label != "corpus"]),
        }
    return out
