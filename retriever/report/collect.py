"""Gather what a run left on disk into the plain data :func:`render_report` takes.

The artifacts are located by :func:`~retriever.report.find.find_sources` and read by the
section readers of :mod:`retriever.report.readers`.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from retriever.errors import InputError
from retriever.io import AtomicWriter, read_json
from retriever.report.find import ReportSources, find_sources
from retriever.report.readers import (
    distill_sections,
    labels_section,
    pools_section,
    scores_section,
)

__all__ = ["ReportSources", "collect_report", "find_sources", "write_report"]

log = logging.getLogger(__name__)


def collect_report(
    run_dir: str | os.PathLike | None = None,
    *,
    sources: ReportSources | None = None,
    n_samples: int = 4,
    max_pool_docs: int = 200_000,
) -> dict[str, Any]:
    """Read the artifacts of a run into the keyword arguments of :func:`render_report`.

    Args:
        run_dir: the run folder (searched when ``sources`` is not given).
        sources: artifacts located beforehand (:func:`find_sources`).
        n_samples: documents shown per task and kind (kept, borderline, rejected).
        max_pool_docs: pool records read per task for the kept shares and samples (the page says
            when a pool was larger).
    """
    src = sources or find_sources(run_dir)
    out: dict[str, Any] = {
        "title": f"retriever report: {Path(run_dir).name}" if run_dir else "retriever report"
    }
    facts: dict[str, Any] = {}
    missing = []
    score_summary: dict[str, Any] = {}
    if src.scores is not None:
        scores, score_summary, seen = scores_section(src.scores)
        out["scores"] = scores
        for k in ("docs_in", "scored", "rejected"):
            if k in score_summary:
                facts[f"corpus {k.replace('_', ' ')}"] = score_summary[k]
        for t, d in scores.items():
            if d.get("candidates") is not None:
                facts[f"{t}: similarity candidates"] = d["candidates"]
    else:
        seen = {}
        missing.append("similarity scores (a `retriever score` folder: scores/*.parquet)")
    labels_samples: dict[str, dict[str, list]] = {}
    if src.confirm is not None:
        labels, rules, labels_samples = labels_section(src.confirm, n_samples)
        out["labels"], out["label_rules"] = labels, rules
        for t, tab in labels.items():
            c = Counter(tab["label"])
            facts[f"{t}: labels"] = ", ".join(
                f"{k} {c.get(k, 0):,}" for k in ("positive", "uncertain", "negative")
            )
    else:
        missing.append("confirmation labels (labels/<task>.parquet)")
    if src.distill:
        out["pr"] = {}
        for m in src.distill:
            for task, pr in distill_sections(m):
                out["pr"][task] = pr
                if pr.get("f1") is not None:
                    facts[f"{task}: filter F1 (held-out)"] = round(float(pr["f1"]), 3)
    else:
        missing.append("distilled filter metrics (a fastText model M.bin with its manifest M.json)")
    pool_samples: dict[str, dict[str, list]] = {}
    if src.pools is not None:
        kept, pool_samples = pools_section(src.pools, seen, n_samples, max_pool_docs)
        out["kept"] = kept
    else:
        missing.append("filtered pools (pools/<task>/*.jsonl.gz or .parquet)")
    samples = {}
    for t in sorted(set(labels_samples) | set(pool_samples)):
        ls, ps = labels_samples.get(t, {}), pool_samples.get(t, {})
        samples[t] = {
            "kept": ps.get("kept") or ls.get("kept", []),
            "borderline": (ps.get("borderline", []) + ls.get("borderline", []))[: 2 * n_samples],
            "rejected": ls.get("rejected", []),
        }
    if samples:
        out["samples"] = samples
    if src.dataset is not None:
        out["dataset"] = read_json(src.dataset / "summary.json")
        facts["training set tokens"] = out["dataset"].get("tokens")
    if src.mixture is not None:
        out["mixture"] = read_json(src.mixture)
    if src.arms is not None:
        out["arms"] = read_json(src.arms)
    if src.rate is not None:
        out["ratings"] = read_json(src.rate / "summary.json")
        for t, d in out["ratings"].get("tasks", {}).items():
            facts[f"{t}: LLM ratings"] = (
                f"{d.get('rated', 0):,} rated, {sum((d.get('rejected') or {}).values()):,} rejected"
            )
    if src.band is not None:
        out["band"] = read_json(src.band / "summary.json")
        facts["perplexity band: in band"] = out["band"].get("in_band")
    if src.domains is not None:
        out["domains"] = read_json(src.domains / "domains.json")
        facts["domains"] = (
            f"{len(out['domains'].get('domains') or [])} ({out['domains'].get('method', '?')})"
        )
    out["facts"] = facts
    out["missing"] = missing
    return out


def write_report(
    run_dir: str | os.PathLike | None,
    out: str | os.PathLike | None = None,
    *,
    sources: ReportSources | None = None,
    **kwargs: Any,
) -> Path:
    """Collect, render and write ``report.html`` atomically (default ``RUN_DIR/report.html``)."""
    from retriever.report.render import render_report

    if out is None:
        if run_dir is None:
            raise InputError("give a run folder or an output path for the report")
        out = Path(run_dir) / "report.html"
    data = collect_report(run_dir, sources=sources, **kwargs)
    html = render_report(**data)
    from retriever.io import disk_guard

    with disk_guard(str(out)), AtomicWriter(out) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    return Path(out)
