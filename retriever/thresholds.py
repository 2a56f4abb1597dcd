"""The one top-fraction rule: the threshold that keeps a share of the documents (or of their
characters / tokens) by score.

Used by the filter (on a sample's probabilities), the confirmation's candidates (similarity) and
its positives (correlation). The streamed score summary, which keeps no per-document scores,
approximates the same rule on its histogram
(:meth:`retriever.score.select.ScoreHistogram.threshold_for_top`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from retriever.errors import ConfigError


def threshold_for_fraction(p: ArrayLike, w: ArrayLike | None, fraction: float) -> float:
    """The highest threshold ``thr`` such that the documents with ``p >= thr`` hold at least
    ``fraction`` of the total weight.

    Args:
        p: ``[n]`` probabilities.
        w: ``[n]`` non-negative weights (characters or tokens); ``None``: 1 per document.
        fraction: share of the weight to keep, in (0, 1].

    Returns:
        The threshold (one of the values of ``p``); ``0.0`` when ``p`` is empty.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"top fraction must be in (0, 1], got {fraction}")
    pa = np.asarray(p, dtype=np.float64)
    wa = np.ones(len(pa)) if w is None else np.asarray(w, dtype=np.float64)
    if len(pa) == 0 or wa.sum() <= 0:
        return 0.0
    order = np.argsort(-pa, kind="stable")
    cum = np.cumsum(wa[order])  # [n] weight kept when cutting after each rank
    k = int(np.searchsorted(cum, fraction * cum[-1] * (1 - 1e-12), side="left"))
    return float(pa[order[min(k, len(pa) - 1)]])
