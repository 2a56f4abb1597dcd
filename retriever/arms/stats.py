"""Intervals over proxy seeds: the pure numpy core of ``retriever evaluate`` (no I/O, no models).

An arm's proxies differ only by seed (initialisation and data order), so the spread over seeds is
the training noise the comparison has to beat. With a handful of seeds a bootstrap over them is
too narrow (three values resample to at most ten distinct means), so the interval of a mean is
Student's t over the seeds; a difference to the reference arm is paired by seed (seed ``s`` of
both arms starts from the same initial weights) and gets the t interval of the per-seed
differences. Every interval is NaN when fewer than two values exist: one seed says nothing about
noise, and the table shows that rather than a zero-width interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

METRICS = ("acc", "acc_norm", "bpb")
HIGHER_IS_BETTER = {"acc": True, "acc_norm": True, "bpb": False}


@dataclass(frozen=True)
class Interval:
    """A mean and its two-sided interval over ``n`` values (``lo``/``hi`` NaN when ``n < 2``)."""

    mean: float
    lo: float
    hi: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n}

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies entirely on one side of zero (a difference that holds)."""
        return bool(self.n >= 2 and (self.lo > 0 or self.hi < 0))


def t_quantile(confidence: float, dof: int) -> float:
    """Two-sided Student t quantile, e.g. 4.303 for 95% and 2 degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2.0, dof))


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean of the finite ``values`` with a Student t interval (NaN-free input is not required)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    m = float(x.mean())
    if n < 2:
        return Interval(m, math.nan, math.nan, n)
    half = t_quantile(confidence, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Interval(m, m - half, m + half, n)


def paired_difference(
    values: Mapping[int, float], reference: Mapping[int, float], confidence: float = 0.95
) -> Interval:
    """``values - reference`` over the seeds both have (finite values only), with a t interval."""
    seeds = sorted(
        s
        for s in set(values) & set(reference)
        if math.isfinite(values[s]) and math.isfinite(reference[s])
    )
    return mean_interval([values[s] - reference[s] for s in seeds], confidence)


def summarize_arms(
    rows: Sequence[Mapping],
    reference: str | None = "random",
    confidence: float = 0.95,
) -> list[dict]:
    """Per (arm, task, metric): the mean over seeds with its interval, and the paired difference
    to ``reference`` (when that arm was run).

    Args:
        rows: ``{"arm", "seed", "task", "metric", "value"}`` per proxy measurement.
        reference: the arm differences are taken to (``None``: no differences).
        confidence: interval level.

    Returns:
        One dict per (arm, task, metric), in first-seen order: ``arm, task, metric, n, mean, lo,
        hi`` and, against the reference, ``diff, diff_lo, diff_hi, diff_n`` and ``better``
        (``True``/``False`` when the interval excludes zero in the metric's good / bad direction,
        ``None`` when it does not).
    """
    by: dict[tuple[str, str, str], dict[int, float]] = {}
    for r in rows:
        key = (str(r["arm"]), str(r["task"]), str(r["metric"]))
        v = r["value"]
        by.setdefault(key, {})[int(r["seed"])] = math.nan if v is None else float(v)
    out = []
    for (arm, task, metric), vals in by.items():
        iv = mean_interval(list(vals.values()), confidence)
        row: dict = {"arm": arm, "task": task, "metric": metric, **iv.as_dict()}
        ref = by.get((reference, task, metric)) if reference else None
        if ref is not None and arm != reference:
            d = paired_difference(vals, ref, confidence)
            row.update(diff=d.mean, diff_lo=d.lo, diff_hi=d.hi, diff_n=d.n)
            good = HIGHER_IS_BETTER.get(metric, True)
            row["better"] = (d.lo > 0) == good if d.excludes_zero else None
        out.append(row)
    return out
