"""Deciding what to keep: a probability threshold, or the top fraction of docs / chars / tokens.

The decision is apart from scoring: :func:`passes` compares probabilities (arrays, from the
scorer or from the stored float16 values) with the thresholds, in float32 as both compare them.

PreSelect keeps the top share of tokens by classifier score. Sorting a whole corpus by score
would need a second pass, so the threshold is found on a sample (:func:`sample_docs`, spread
over the shards) and recorded in the run's manifest; the pass over the corpus then only compares
each probability with it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from retriever.corpus import CorpusReader
from retriever.data import Doc
from retriever.errors import ConfigError
from retriever.thresholds import threshold_for_fraction

log = logging.getLogger(__name__)

BY = ("docs", "chars", "tokens")
__all__ = [
    "BY",
    "FLOOR_PROB",
    "ThresholdDecision",
    "above_floor",
    "passes",
    "sample_docs",
    "sample_weights",
    "threshold_for_fraction",
    "top_fraction_decisions",
]


# fastText reports a label's probability as p + 1e-5 (its predict takes log(p + 1e-5)): 1e-5 is a
# student's floor, no evidence of the task at all. FLOOR_PROB (the floor plus 1e-7; float16, the
# stored scores, tells the two apart) is the lowest threshold a top fraction may give: when more
# documents than the fraction's rest sit tied at the floor, they are not its top, and none is kept.
FLOOR_PROB = 1.01e-5


def above_floor(threshold: float) -> float:
    """A top-fraction threshold, raised to :data:`FLOOR_PROB` when it fell on the floor."""
    return max(float(threshold), FLOOR_PROB)


def passes(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``[n_docs, n_tasks]`` bool: ``p >= threshold`` per task, in float32 (the values the float16
    storage keeps each decision of; NaN passes nothing).

    Args:
        probs: ``[n_docs, n_tasks]`` probabilities.
        thresholds: ``[n_tasks]`` each task's threshold.
    """
    p = np.asarray(probs, dtype=np.float32)
    return p >= np.asarray(thresholds, dtype=np.float32)[None, :]


def sample_docs(
    shards: list[str], reader: CorpusReader, n_docs: int, max_shards: int = 16
) -> list[Doc]:
    """Up to ``n_docs`` documents from up to ``max_shards`` shards spread evenly over the list.

    Each chosen shard gives its first ``ceil(n_docs / shards chosen)`` readable documents, so the
    sample is deterministic (a resumed run finds the same threshold) and costs a few reads.
    """
    if n_docs < 1:
        raise ConfigError(f"sample size must be >= 1, got {n_docs}")
    k = max(1, min(max_shards, len(shards)))
    picks = (
        sorted({round(i * (len(shards) - 1) / max(1, k - 1)) for i in range(k)}) if k > 1 else [0]
    )
    per = math.ceil(n_docs / len(picks))
    out: list[Doc] = []
    for i in picks:
        got = 0
        for rec in reader.read(shards[i]):
            if isinstance(rec, Doc):
                out.append(rec)
                got += 1
                if got >= per or len(out) >= n_docs:
                    break
        if len(out) >= n_docs:
            break
    return out


@dataclass(frozen=True)
class ThresholdDecision:
    """How a task decides: ``threshold`` is what the pass over the corpus compares with."""

    task: str
    threshold: float
    mode: str  # "threshold" or "top-fraction"
    fraction: float | None = None
    by: str | None = None
    sample_docs: int = 0
    sample_kept_share: float | None = None
    sample_floor_share: float | None = None  # of the weight at the floor, when it stopped the cut

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def top_fraction_decisions(
    tasks: list[str],
    probs: np.ndarray,
    weights: np.ndarray,
    fraction: float,
    by: str,
) -> dict[str, ThresholdDecision]:
    """One :class:`ThresholdDecision` per task from sample probabilities ``[n_sample, n_tasks]``."""
    out = {}
    for j, t in enumerate(tasks):
        ok = np.isfinite(probs[:, j])
        p, w = probs[ok, j], weights[ok]
        total = max(float(w.sum()), 1e-12)
        thr = threshold_for_fraction(p, w, fraction)
        floor = None
        if thr < FLOOR_PROB:  # the cut fell among the documents tied at the student's floor
            thr = above_floor(thr)
            floor = float(w[p < np.float32(thr)].sum() / total)
            log.warning(
                "%s: %.0f%% of the sampled %s sit at the student's floor probability (1e-05, no "
                "evidence of the task): the top %g keeps only the %.1f%% above it",
                t,
                100 * floor,
                by,
                fraction,
                100 * (1 - floor),
            )
        share = float(w[p >= np.float32(thr)].sum() / total)
        out[t] = ThresholdDecision(
            t, thr, "top-fraction", fraction, by, int(ok.sum()), share, floor
        )
    return out


def sample_weights(
    docs: list[Doc], by: str, count_tokens: Callable[[list[Doc]], list[int]]
) -> np.ndarray:
    """``[n]`` weight of each sampled document: 1, its characters, or its tokens."""
    if by not in BY:
        raise ConfigError(f"--by must be one of {BY}, got {by!r}")
    if by == "docs":
        return np.ones(len(docs))
    if by == "chars":
        return np.array([len(d.text) for d in docs], dtype=np.float64)
    return np.asarray(count_tokens(docs), dtype=np.float64)
