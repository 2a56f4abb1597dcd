"""Deciding, kept apart from scoring: candidates per task and the run summary.

Thresholds are cheap to recompute from the stored scores, so re-thresholding never re-embeds.
Quantiles come from fixed-bin histograms streamed over the score files (memory is one histogram per
task, whatever the corpus size; resolution ``2 / bins`` in cosine, 1e-4 with the default bins).
The bin [0, 1e-4) is itself cut into log-spaced bins down to 1e-30: a learned head's
probabilities (``score_<task>`` of an index with a head) put most documents there, and a top
fraction must be cut among them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retriever._deps import require
from retriever.errors import ConfigError, InputError
from retriever.io import read_json, write_json_atomic
from retriever.names import score_name
from retriever.stats import Stats

BINS = 20_000
LO, HI = -1.0, 1.0
QUANTILES = (0.5, 0.9, 0.99, 0.999)
FINE = 2_000  # log-spaced bins in [1e-30, 1e-4), plus [0, 1e-30)
DISPLAY_BINS = 60  # bars of a shown histogram (the report), over the occupied range


def _edges() -> np.ndarray:
    """Lower edges of every bin, increasing: equal bins of [-1, 1] with [0, 1e-4) cut finer."""
    regular = LO + np.arange(BINS) * (HI - LO) / BINS
    zero = int(round((0 - LO) / (HI - LO) * BINS))  # the bin starting at 0
    fine = np.r_[0.0, np.logspace(-30, np.log10(regular[zero + 1]), FINE, endpoint=False)]
    return np.r_[regular[:zero], fine, regular[zero + 1 :]]


EDGES = _edges()


@dataclass
class ScoreHistogram:
    """Counts of one task's scores in ``BINS`` equal bins over [-1, 1], plus exact min/max/sum."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(EDGES), dtype=np.int64))
    n: int = 0
    total: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        x = x[np.isfinite(x)]
        if not len(x):
            return
        idx = np.clip(np.searchsorted(EDGES, x, side="right") - 1, 0, len(EDGES) - 1)
        self.counts += np.bincount(idx, minlength=len(EDGES))
        self.n += len(x)
        self.total += float(x.sum())
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))

    def quantile(self, q: float) -> float:
        """Upper edge of the bin holding the ``q`` quantile."""
        if self.n == 0:
            return float("nan")
        c = np.cumsum(self.counts)
        i = int(np.searchsorted(c, q * self.n, side="left"))
        upper = EDGES[i + 1] if i + 1 < len(EDGES) else HI
        return min(float(upper), self.max)

    def threshold_for_top(self, fraction: float) -> float:
        """Lowest bin edge such that at most ~``fraction`` of the scores lie at or above it."""
        if self.n == 0:
            return float("inf")
        tail = np.cumsum(self.counts[::-1])[::-1]  # tail[i] = scores in bins >= i
        want = max(1, int(round(fraction * self.n)))
        ok = np.nonzero(tail <= want)[0]
        i = int(ok[0]) if len(ok) else len(EDGES) - 1
        if i > 0 and tail[i] < want and abs(tail[i - 1] - want) < abs(tail[i] - want):
            i -= 1  # the bin just below gets closer to the asked fraction
        return float(EDGES[i])

    def count_at_least(self, t: float) -> int:
        """Scores in the bins from the one holding ``t`` up (exact when ``t`` is a bin edge)."""
        if t > HI:
            return 0
        i = int(np.clip(np.searchsorted(EDGES, t, side="right") - 1, 0, len(EDGES)))
        return int(self.counts[i:].sum())

    def display(self, bins: int = DISPLAY_BINS) -> tuple[list[int], list[float]]:
        """At most ``bins`` equal bars over the occupied range, for showing: ``(counts, edges)``
        with ``len(edges) == len(counts) + 1``; both empty when no score was added.

        The fine bins of [0, 1e-4) are folded back into their regular bin, then runs of ``step``
        regular bins (``2 / BINS`` wide each) are summed, so each bar's edges are bin edges.
        """
        zero = int(round((0 - LO) / (HI - LO) * BINS))
        folded = self.counts[zero : zero + FINE + 1].sum()
        c = np.r_[self.counts[:zero], folded, self.counts[zero + FINE + 1 :]]
        nz = np.nonzero(c)[0]
        if not len(nz):
            return [], []
        lo, hi = int(nz[0]), int(nz[-1]) + 1
        step = max(1, -(-(hi - lo) // bins))
        hi = lo + step * -(-(hi - lo) // step)
        bars = np.pad(c, (0, max(0, hi - BINS)))[lo:hi].reshape(-1, step).sum(axis=1)
        edges = LO + (HI - LO) * np.arange(lo, hi + 1, step) / BINS
        return bars.tolist(), edges.tolist()

    def describe(self) -> dict[str, float]:
        out = {
            "n": self.n,
            "mean": self.total / self.n if self.n else float("nan"),
            "min": self.min if self.n else float("nan"),
            "max": self.max if self.n else float("nan"),
        }
        for q in QUANTILES:
            out[f"p{q * 100:g}"] = self.quantile(q)
        return out


def score_columns(score_dir: str | os.PathLike) -> list[str]:
    """Tasks of a score folder, from its manifest."""
    man = Path(score_dir) / "manifest.json"
    if not man.exists():
        raise InputError(
            f"{score_dir} is not a score folder (no manifest.json); run `retriever score` first"
        )
    return list(read_json(man)["settings"]["tasks"])


def histograms(score_dir: str | os.PathLike, column: str = "score") -> dict[str, ScoreHistogram]:
    """Stream every finished shard's ``<column>_<task>`` into one histogram per task."""
    from retriever.score.job import shard_outputs

    return histograms_of(shard_outputs(score_dir).values(), score_columns(score_dir), column)


def histograms_of(
    files: Iterable[str | os.PathLike], tasks: Sequence[str], column: str = "score"
) -> dict[str, ScoreHistogram]:
    """Stream ``<column>_<task>`` of the given score parquet files into one histogram per task
    (a file without a task's column adds nothing to that task's)."""
    pq = require("pyarrow.parquet")
    hists = {t: ScoreHistogram() for t in tasks}
    for path in files:
        pf = pq.ParquetFile(path)
        names = set(pf.schema_arrow.names)
        have = {t: score_name(column, t) for t in tasks if score_name(column, t) in names}
        if not have:
            continue
        for batch in pf.iter_batches(batch_size=65536, columns=list(have.values())):
            for t, c in have.items():
                hists[t].add(batch.column(c).to_numpy(zero_copy_only=False))
    return hists


def choose_thresholds(
    hists: dict[str, ScoreHistogram],
    top_fraction: float | None = None,
    thresholds: dict[str, float] | None = None,
    top_fractions: dict[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per task, the candidate threshold and how it was chosen.

    Precedence per task: an explicit ``thresholds[task]``, then ``top_fractions[task]``, then the
    shared ``top_fraction``; with none of them the task has no candidates.
    """
    thresholds, top_fractions = thresholds or {}, top_fractions or {}
    unknown = sorted((set(thresholds) | set(top_fractions)) - set(hists))
    if unknown:
        raise ConfigError(
            f"--threshold names unknown task(s) {unknown}; tasks here: {sorted(hists)}"
        )
    for f in [top_fraction, *top_fractions.values()]:
        if f is not None and not 0 < f <= 1:
            raise ConfigError(f"--top-fraction must be in (0, 1], got {f}")
    out: dict[str, dict[str, Any]] = {}
    for t, h in hists.items():
        frac = top_fractions.get(t, top_fraction)
        if t in thresholds:
            out[t] = {
                "threshold": float(thresholds[t]),
                "rule": f"score >= {thresholds[t]} (--threshold)",
                "top_fraction": None,
            }
        elif frac is not None:
            out[t] = {
                "threshold": h.threshold_for_top(frac),
                "rule": f"top {frac:g} of documents by score",
                "top_fraction": frac,
            }
        else:
            out[t] = {"threshold": None, "rule": "no threshold set", "top_fraction": None}
        thr = out[t]["threshold"]
        out[t]["candidates"] = h.count_at_least(float(thr)) if thr is not None else 0
    return out


def previous_rules(summary: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """The rules of an earlier ``summary.json``: (explicit thresholds, top fractions) per task."""
    thresholds, fractions = {}, {}
    for t, d in (summary.get("tasks") or {}).items():
        rule = str(d.get("rule", ""))
        if d.get("top_fraction") is not None:
            fractions[t] = float(d["top_fraction"])
        elif rule.endswith("(--threshold)") and d.get("threshold") is not None:
            thresholds[t] = float(d["threshold"])
        elif rule.startswith("top ") and summary.get("top_fraction") is not None:  # older summaries
            fractions[t] = float(summary["top_fraction"])
    return thresholds, fractions


def rethreshold(
    score_dir: str | os.PathLike,
    top_fraction: float | None = None,
    thresholds: dict[str, float] | None = None,
    keep: bool = True,
    column: str = "score",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``retriever candidates``: new rules for some tasks, the earlier rules for the others.

    A ``top_fraction`` applies to every task without a ``thresholds`` entry (replacing their earlier
    rules); without one, tasks not named in ``thresholds`` keep the rule of the last summary
    (``keep=False``: they get none). Returns the new summary (written to ``summary.json``) and one
    change record per task: ``{task, before, after}`` with rule, threshold and candidates.
    """
    path = Path(score_dir) / "summary.json"
    prev = read_json(path) if path.exists() else {}
    thresholds = dict(thresholds or {})
    fractions: dict[str, float] = {}
    if keep and top_fraction is None and prev:
        old_thr, old_frac = previous_rules(prev)
        thresholds = {**{t: v for t, v in old_thr.items() if t not in thresholds}, **thresholds}
        fractions = {t: f for t, f in old_frac.items() if t not in thresholds}
    summary = summarize(score_dir, top_fraction, thresholds, column, top_fractions=fractions)
    changes = []
    for t, d in summary["tasks"].items():
        before = (prev.get("tasks") or {}).get(t)
        fields = ("rule", "threshold", "candidates")
        changes.append(
            {
                "task": t,
                "before": {k: before.get(k) for k in fields} if before else None,
                "after": {k: d.get(k) for k in fields},
            }
        )
    return summary, changes


def format_changes(changes: list[dict[str, Any]]) -> str:
    """One line per task: what re-thresholding changed (or that it kept the rule)."""
    lines = []
    for c in changes:
        b, a = c["before"], c["after"]
        thr = "-" if a["threshold"] is None else f"{a['threshold']:.4f}"
        if b is None:
            lines.append(
                f"{c['task']}: {a['rule']} -> {a['candidates']:,} candidates (threshold {thr})"
            )
        elif b == a:
            lines.append(f"{c['task']}: unchanged ({a['rule']}, {a['candidates']:,} candidates)")
        else:
            bthr = "-" if b["threshold"] is None else f"{b['threshold']:.4f}"
            lines.append(
                f"{c['task']}: {b['rule']} -> {a['rule']}; threshold {bthr} -> {thr}; "
                f"candidates {b['candidates']:,} -> {a['candidates']:,}"
            )
    return "\n".join(lines)


def summarize(
    score_dir: str | os.PathLike,
    top_fraction: float | None = None,
    thresholds: dict[str, float] | None = None,
    column: str = "score",
    top_fractions: dict[str, float] | None = None,
    duplicates: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Counters of all shards, candidates per task and score distributions; written to
    summary.json, with ``duplicates`` (:func:`~retriever.score.api.duplicate_ids`) under
    ``duplicate_ids``. ``None`` keeps what summary.json recorded: the duplicate ids do not depend
    on thresholds, so re-thresholding (the run's ``candidates`` step) does not drop them."""
    out = Path(score_dir)
    if duplicates is None and (out / "summary.json").exists():
        duplicates = read_json(out / "summary.json").get("duplicate_ids")
    stats = Stats()
    for p in sorted((out / "done").glob("*.json")):
        stats += Stats.from_dict(read_json(p))
    failed = (
        [read_json(p) for p in sorted((out / "failed").glob("*.json"))]
        if (out / "failed").is_dir()
        else []
    )
    shards = read_json(out / "shards.json") if (out / "shards.json").exists() else {}
    hists = histograms(score_dir, column)
    chosen = choose_thresholds(hists, top_fraction, thresholds, top_fractions)
    c = stats.counts
    summary = {
        "docs_in": c["seen"],
        "scored": c["kept"],
        "rejected": stats.total("rejected"),
        "rejected_by_reason": {
            k.split("/", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("rejected/")
        },
        "balanced": stats.balanced(),
        "chars_scored": c["chars"],
        "shards": {
            "total": len(shards),
            "done": len(list((out / "done").glob("*.json"))),
            "failed": [f["shard"] for f in failed],
        },
        "seconds": round(stats.seconds, 2),
        "docs_per_second": round(c["kept"] / stats.seconds, 2) if stats.seconds else None,
        "column": column,
        "sample": _sample_info(out, c),
        "top_fraction": top_fraction,
        "tasks": {t: {**chosen[t], "distribution": hists[t].describe()} for t in hists},
    }
    if duplicates is not None:
        summary["duplicate_ids"] = duplicates
    write_json_atomic(out / "summary.json", summary)
    return summary


def _sample_info(out: Path, c) -> dict[str, Any] | None:
    man = out / "manifest.json"
    sample = read_json(man)["settings"].get("sample") if man.exists() else None
    if sample is None:
        return None
    return {**sample, "unsampled": c["dropped/unsampled"]}


def format_summary(s: dict[str, Any]) -> str:
    """A one-screen table of a summary."""
    lines = [
        f"docs in {s['docs_in']:,}  scored {s['scored']:,}  rejected {s['rejected']:,} "
        f"{s['rejected_by_reason'] or ''}  shards {s['shards']['done']}/{s['shards']['total']} done"
        + (f", {len(s['shards']['failed'])} FAILED" if s["shards"]["failed"] else ""),
        *(
            [
                f"sampled {s['sample']['requested']} (fraction {s['sample']['fraction']:.6g}): "
                f"{s['sample']['unsampled']:,} documents not embedded"
            ]
            if s.get("sample")
            else []
        ),
        f"{'task':<20}{'candidates':>11}{'threshold':>11}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}  "
        "rule",
    ]
    for t, d in s["tasks"].items():
        q = d["distribution"]
        thr = "-" if d["threshold"] is None else f"{d['threshold']:.4f}"
        lines.append(
            f"{t:<20}{d['candidates']:>11,}{thr:>11}{q['p50']:>8.3f}{q['p90']:>8.3f}"
            f"{q['p99']:>8.3f}{q['max']:>8.3f}  {d['rule']}"
        )
    return "\n".join(lines)
