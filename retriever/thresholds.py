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


PROB_DECIMALS = 6  # a kept document's probability in its pool metadata


def kept_probability(p: float) -> float:
    """The ``prob_<task>`` a kept document carries in its pool: ``p`` rounded to
    :data:`PROB_DECIMALS` decimals, whether it comes from the model (the filter) or from the
    stored float16 (re-thresholding)."""
    return round(float(p), PROB_DECIMALS)


def to_float16_keeping(p: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """``p`` (``[n, n_tasks]`` probabilities) as float16, each value nudged by at most one float16
    step so that ``stored >= thr`` is exactly ``p >= thr`` (``thr``: ``[n_tasks]``).

    Two bytes a value; re-thresholding the stored values at the run's thresholds gives the run's
    decisions back, at other thresholds it is exact to ~5e-4 (float16's step near 1).
    """
    p = np.asarray(p, dtype=np.float32)
    t = np.broadcast_to(np.asarray(thr, dtype=np.float32), p.shape)
    h = p.astype(np.float16)
    keep = p >= t
    up = keep & (h.astype(np.float32) < t)  # rounded below a kept value's threshold
    h[up] = np.nextafter(h[up], np.float16(np.inf))
    down = ~keep & ~np.isnan(p) & (h.astype(np.float32) >= t)  # rounded up onto the threshold
    h[down] = np.nextafter(h[down], np.float16(-np.inf))
    return h
