"""Deciding labels from similarity candidates and correlation estimates (cheap, re-runnable).

Per task, every document considered gets one label and the reason that decided it:

- ``positive``: a similarity candidate whose correlation is at least ``positive_min`` (and, with
  ``positive_top_fraction``, among the top fraction of the candidates' correlations);
- ``negative``: a candidate whose correlation is at most ``negative_max`` (it looks like the task
  but does not predict the skill), or a random non-candidate (a sample of ordinary documents);
- ``uncertain``: a candidate in between, or one without a correlation (a model gave NaN): kept in
  the output for audit, left out of training.

Nothing here touches a model: thresholds are re-applied to stored correlations in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from retriever.confirm.correlate import ESTIMATORS
from retriever.confirm.docs import TaskCandidates
from retriever.errors import ConfigError
from retriever.thresholds import threshold_for_fraction

LABELS = ("positive", "negative", "uncertain")


@dataclass(frozen=True)
class DecisionRules:
    """Thresholds of the decision.

    Attributes:
        estimator: correlation that decides (see :data:`~retriever.confirm.correlate.ESTIMATORS`).
        positive_min: positive: a candidate with correlation at or above this.
        negative_max: negative: a candidate with correlation at or below this.
        positive_top_fraction: also require positives to be in the top fraction (0-1] of
            candidates by correlation (useful when the panel makes most correlations high).

    The defaults suit rank correlations (``spearman``, ``sign_sign``: -1..1). For ``concordance``
    (0..1, 0.5 = no signal) use e.g. ``positive_min=0.75, negative_max=0.5``.
    """

    estimator: str = "spearman"
    positive_min: float = 0.5
    negative_max: float = 0.0
    positive_top_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"estimator {self.estimator!r} must be one of {list(ESTIMATORS)}")
        if not self.negative_max < self.positive_min:
            raise ConfigError(
                f"negative_max ({self.negative_max}) must be below positive_min "
                f"({self.positive_min}), or a document could be both"
            )
        if self.positive_top_fraction is not None and not 0 < self.positive_top_fraction <= 1:
            raise ConfigError(
                f"positive_top_fraction must be in (0, 1], got {self.positive_top_fraction}"
            )


@dataclass(frozen=True)
class Decision:
    """Labels of the documents considered for one task (indices into the document set).

    Attributes:
        index: ``[n_considered]`` positions in the document set, input order.
        label: ``[n_considered]`` one of :data:`LABELS`.
        reason: ``[n_considered]`` what decided, in words with the numbers.
        correlation: ``[n_considered]`` the deciding estimator (NaN when not computed).
        similarity: ``[n_considered]``.
        source: ``[n_considered]`` where the row comes from, for the student's training set:
            ``confirmed`` (positive candidate), ``hard-negative`` (rejected candidate),
            ``random`` (random non-candidate), ``candidate`` (uncertain).
    """

    index: np.ndarray
    label: list[str]
    reason: list[str]
    correlation: np.ndarray
    similarity: np.ndarray
    source: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {lab: self.label.count(lab) for lab in LABELS}


def decide(
    cand: TaskCandidates,
    correlation: np.ndarray,
    n_models: np.ndarray,
    panel_size: int,
    rules: DecisionRules,
    why_missing: list[str] | None = None,
) -> Decision:
    """Label the candidates and random negatives of one task.

    Args:
        cand: the task's candidates and random non-candidate sample.
        correlation: ``[n_docs]`` the deciding estimator over the whole document set (NaN where not
            computed: non-candidates, or a model gave NaN).
        n_models: ``[n_docs]`` models with a finite BPB per document.
        panel_size: models the correlation was meant to use.
        rules: thresholds.
        why_missing: optional ``[n_docs]`` note for documents without a correlation.

    Returns:
        The :class:`Decision` (candidates first by position, in input order with the negatives).
    """
    est = rules.estimator
    corr = np.asarray(correlation, dtype=np.float64)
    top_cut = -math.inf
    if rules.positive_top_fraction is not None:
        vals = np.sort(corr[cand.candidate & np.isfinite(corr)])[::-1]
        if len(vals):
            top_cut = threshold_for_fraction(vals, None, rules.positive_top_fraction)
    idx = np.nonzero(cand.candidate | cand.random_negative)[0]
    labels: list[str] = []
    reasons: list[str] = []
    sources: list[str] = []
    for i in idx:
        s = cand.similarity[i]
        sim_txt = "" if math.isnan(s) else f"similarity {s:.4f}, "
        if cand.random_negative[i]:
            labels.append("negative")
            reasons.append(
                f"negative: random non-candidate ({sim_txt.rstrip(', ')} < cut {cand.cutoff:.4f})"
            )
            sources.append("random")
            continue
        c = corr[i]
        head = f"candidate ({cand.rule}); {sim_txt}{est} "
        if not np.isfinite(c):
            note = (
                why_missing[i]
                if why_missing is not None and why_missing[i]
                else (f"BPB finite for {int(n_models[i])} of {panel_size} models")
            )
            labels.append("uncertain")
            reasons.append(f"uncertain: {head}not computed ({note})")
            sources.append("candidate")
        elif c >= rules.positive_min and c >= top_cut:
            labels.append("positive")
            extra = (
                f" and in the top {rules.positive_top_fraction:.0%} (>= {top_cut:.3f})"
                if rules.positive_top_fraction is not None
                else ""
            )
            reasons.append(f"positive: {head}{c:.3f} >= {rules.positive_min}{extra}")
            sources.append("confirmed")
        elif c <= rules.negative_max:
            labels.append("negative")
            reasons.append(f"negative: {head}{c:.3f} <= {rules.negative_max}")
            sources.append("hard-negative")
        else:
            why = (
                f"below the top-{rules.positive_top_fraction:.0%} cut {top_cut:.3f}"
                if c >= rules.positive_min
                else f"between {rules.negative_max} and {rules.positive_min}"
            )
            labels.append("uncertain")
            reasons.append(f"uncertain: {head}{c:.3f} {why}")
            sources.append("candidate")
    return Decision(
        index=idx,
        label=labels,
        reason=reasons,
        correlation=corr[idx] if len(idx) else np.zeros(0),
        similarity=cand.similarity[idx] if len(idx) else np.zeros(0),
        source=sources,
    )
