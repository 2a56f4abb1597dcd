"""Gather what a run left on disk into the plain data :func:`render_report` takes.

Artifacts are found by their shape (docs/contracts.md), not by fixed paths, within ``run_dir``
(three levels deep), and any of them can be given explicitly:

- score folder: ``X/scores/*.parquet`` + ``X/manifest.json`` (+ ``X/summary.json`` thresholds);
- confirm folder: ``X/labels/<task>.parquet`` (+ ``X/summary.json`` rules and cutoffs);
- distilled filters: ``M.bin`` with its manifest ``M.json`` (``"kind": "fasttext-filter"``);
held-out
  predictions for a full PR curve from ``M.heldout.parquet`` / ``.jsonl`` (columns ``y``/``label``
  and ``p``/``prob``) or a ``heldout`` entry ``{"y": [...], "p": [...]}`` in the manifest,
  else the manifest's metrics (one operating point);
- pools: ``X/<task>/*.jsonl.gz|parquet`` in a folder named ``pools``, ``filter`` or ``filtered``;
- training set: ``X/summary.json`` of ``build-dataset``; mixture: a ``mix fit`` json;
- perplexity band: ``X/band.parquet`` + ``X/summary.json`` (``"stage": "band"``);
- LLM ratings: ``X/ratings/`` + ``X/summary.json`` (``X/manifest.json``: ``"stage": "rate"``).
"""

from __future__ import annotations

import heapq
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retriever._deps import require
from retriever.data import Doc
from retriever.errors import InputError
from retriever.io import AtomicWriter, read_json
from retriever.names import PROB, SCORE, score_name, score_tasks, score_value

log = logging.getLogger(__name__)

POOL_DIR_NAMES = ("pools", "filter", "filtered")
MAX_DEPTH = 3
HIST_BINS = 60


@dataclass
class ReportSources:
    """Where each artifact of a run is (``None`` / empty: not found)."""

    scores: Path | None = None
    confirm: Path | None = None
    distill: list[Path] = field(default_factory=list)
    pools: Path | None = None
    dataset: Path | None = None
    mixture: Path | None = None
    arms: Path | None = None  # a `retriever evaluate` summary.json
    band: Path | None = None  # a `retriever band` folder (band.parquet + summary.json)
    rate: Path | None = None  # a `retriever rate` folder (ratings/ + summary.json)
    domains: Path | None = None  # a `retriever domains` folder (domains.parquet + domains.json)


def find_sources(run_dir: str | os.PathLike | None, **given: Any) -> ReportSources:
    """Locate a run's artifacts under ``run_dir``; keyword arguments (``scores=``, ``confirm=``,
    ``distill=[...]``, ``pools=``, ``dataset=``, ``mixture=``) override the search.

    Raises:
        InputError: ``run_dir`` or a given path does not exist.
    """
    src = ReportSources()
    dirs: list[Path] = []
    if run_dir is not None:
        root = Path(run_dir)
        if not root.is_dir():
            raise InputError(f"run folder {root} does not exist")
        dirs = _walk_dirs(root, MAX_DEPTH)
    for d in dirs:
        if (
            src.scores is None
            and (d / "manifest.json").exists()
            and (d / "scores").is_dir()
            and any((d / "scores").glob("*.parquet"))
        ):
            src.scores = d
        if (
            src.confirm is None
            and (d / "labels").is_dir()
            and any((d / "labels").glob("*.parquet"))
            and _json_stage(d / "manifest.json") != "rate"  # rating labels: no correlation
        ):
            src.confirm = d
        if src.pools is None and d.name in POOL_DIR_NAMES and any(p.is_dir() for p in d.iterdir()):
            src.pools = d
        if src.dataset is None and _is_dataset(d):
            src.dataset = d
        for b in sorted(d.glob("*.bin")):
            m = b.with_suffix(".json")
            if m.exists() and _json_kind(m) in ("fasttext-filter", "fasttext-multilabel"):
                src.distill.append(m)
        if src.rate is None and (d / "ratings").is_dir():
            if _json_stage(d / "manifest.json") == "rate" and (d / "summary.json").is_file():
                src.rate = d
        if src.band is None and (d / "band.parquet").is_file():
            if _json_stage(d / "summary.json") == "band":
                src.band = d
        if src.domains is None and (d / "domains.parquet").is_file():
            if (d / "domains.json").is_file():
                src.domains = d
        if src.arms is None and _is_arms(d / "summary.json"):
            src.arms = d / "summary.json"
        if src.mixture is None:
            for j in sorted(d.glob("*mixture*.json")):
                if _is_mixture(j):
                    src.mixture = j
                    break
    for key, value in given.items():
        if value is None or value == []:
            continue
        if key == "distill":
            paths = [Path(v) for v in value]
            paths = [p.with_suffix(".json") if p.suffix == ".bin" else p for p in paths]
            for p in paths:
                if not p.exists():
                    raise InputError(f"distill manifest {p} does not exist")
            src.distill = paths
        else:
            p = Path(value)
            if not p.exists():
                raise InputError(f"{key} artifact {p} does not exist")
            setattr(src, key, p)
    return src


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
        scores, score_summary, seen = _read_scores(src.scores)
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
        labels, rules, labels_samples = _read_labels(src.confirm, n_samples)
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
            for task, pr in _read_distill_any(m):
                out["pr"][task] = pr
                if pr.get("f1") is not None:
                    facts[f"{task}: filter F1 (held-out)"] = round(float(pr["f1"]), 3)
    else:
        missing.append("distilled filter metrics (a fastText model M.bin with its manifest M.json)")
    pool_samples: dict[str, dict[str, list]] = {}
    if src.pools is not None:
        kept, pool_samples = _read_pools(src.pools, seen, n_samples, max_pool_docs)
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


# -- readers --------------------------------------------------------------------------------------
def _read_scores(score_dir: Path) -> tuple[dict, dict, dict[str, dict[str, int]]]:
    """Per task a rebinned histogram of ``score_<task>``, the summary, and the scored documents
    per source shard and per cluster (``{"shard": {...}, "cluster": {...}}``)."""
    pq = require("pyarrow.parquet")
    summary = read_json(score_dir / "summary.json") if (score_dir / "summary.json").exists() else {}
    settings = read_json(score_dir / "manifest.json").get("settings", {})
    files = sorted((score_dir / "scores").glob("*.parquet"))
    tasks = list(settings.get("tasks") or [])
    if not tasks and files:
        tasks = score_tasks(pq.ParquetFile(files[0]).schema_arrow.names, SCORE)
    fine = 4000  # fine fixed bins over [-1, 1], rebinned to the occupied range below
    counts = {t: np.zeros(fine, dtype=np.int64) for t in tasks}
    seen: dict[str, Counter] = {"shard": Counter(), "cluster": Counter()}
    for f in files:
        pf = pq.ParquetFile(f)
        names = set(pf.schema_arrow.names)
        groups = [g for g, col in (("shard", "shard"), ("cluster", "cluster_id")) if col in names]
        cols = [score_name(SCORE, t) for t in tasks if score_name(SCORE, t) in names] + [
            "shard" if g == "shard" else "cluster_id" for g in groups
        ]
        for batch in pf.iter_batches(batch_size=65536, columns=cols):
            for t in tasks:
                if score_name(SCORE, t) not in names:
                    continue
                x = batch.column(score_name(SCORE, t)).to_numpy(zero_copy_only=False)
                x = x.astype(np.float64)
                x = x[np.isfinite(x)]
                idx = np.clip(((x + 1.0) / 2.0 * fine).astype(np.int64), 0, fine - 1)
                counts[t] += np.bincount(idx, minlength=fine)
            for g in groups:
                col = batch.column("shard" if g == "shard" else "cluster_id").to_pylist()
                seen[g].update(str(v) for v in col if v is not None)
    tasks_summary = summary.get("tasks", {})
    out = {}
    for t in tasks:
        c = counts[t]
        nz = np.nonzero(c)[0]
        if not len(nz):
            continue
        lo, hi = nz[0], nz[-1] + 1
        step = max(1, math.ceil((hi - lo) / HIST_BINS))
        hi = lo + step * math.ceil((hi - lo) / step)
        cc = np.pad(c, (0, max(0, hi - fine)))[lo:hi].reshape(-1, step).sum(axis=1)
        edges = -1.0 + 2.0 * np.arange(lo, hi + 1, step) / fine
        ts = tasks_summary.get(t, {})
        out[t] = {
            "counts": cc.tolist(),
            "edges": edges.tolist(),
            "threshold": ts.get("threshold"),
            "rule": ts.get("rule"),
            "candidates": ts.get("candidates"),
        }
    return out, summary, {g: dict(c) for g, c in seen.items()}


def _read_labels(confirm_dir: Path, n: int) -> tuple[dict, dict, dict]:
    pq = require("pyarrow.parquet")
    summary = (
        read_json(confirm_dir / "summary.json") if (confirm_dir / "summary.json").exists() else {}
    )
    rules = (summary.get("settings") or {}).get("rules") or {}
    labels, rule_map, samples = {}, {}, {}
    for f in sorted((confirm_dir / "labels").glob("*.parquet")):
        task = f.stem
        t = pq.read_table(f)
        cols = {c: t.column(c).to_pylist() for c in t.column_names}
        labels[task] = {k: cols.get(k, []) for k in ("similarity", "correlation", "label")}
        ts = (summary.get("tasks") or {}).get(task, {})
        rule_map[task] = {
            "positive_min": rules.get("positive_min"),
            "negative_max": rules.get("negative_max"),
            "estimator": rules.get("estimator", "correlation"),
            "similarity_cutoff": ts.get("cutoff"),
        }
        samples[task] = _label_samples(cols, n, rules)
    return labels, rule_map, samples


def _label_samples(cols: dict[str, list], n: int, rules: dict) -> dict[str, list]:
    """Kept: highest-correlation positives; borderline: uncertain rows nearest a threshold;
    rejected: negatives that looked most like the task (highest similarity)."""
    lab = np.asarray(cols.get("label", []), dtype=object)
    sim = np.asarray(cols.get("similarity", []), dtype=np.float64)
    cor = np.asarray(cols.get("correlation", []), dtype=np.float64)
    pos_min, neg_max = rules.get("positive_min"), rules.get("negative_max")

    def pick(mask: np.ndarray, key: np.ndarray) -> list[dict]:
        idx = np.nonzero(mask)[0]
        key = np.where(np.isfinite(key[idx]), key[idx], np.inf)
        rows = idx[np.argsort(key, kind="stable")[:n]]
        return [
            {
                "id": cols.get("id", [""] * len(lab))[i],
                "text": (cols.get("text") or [""] * len(lab))[i],
                "scores": {"similarity": sim[i], "correlation": cor[i]},
                "why": (cols.get("reason") or [""] * len(lab))[i],
            }
            for i in rows
        ]

    if pos_min is not None and neg_max is not None:
        dist = np.minimum(np.abs(cor - pos_min), np.abs(cor - neg_max))
    else:
        dist = np.abs(cor)
    return {
        "kept": pick(lab == "positive", -cor),
        "borderline": pick(lab == "uncertain", dist),
        "rejected": pick(lab == "negative", -sim),
    }


def _read_distill_any(manifest: Path) -> list[tuple[str, dict]]:
    """``[(task, metrics)]`` of one student manifest (each task of a multi-label one)."""
    m = read_json(manifest)
    if m.get("kind") != "fasttext-multilabel":
        return [_read_distill(manifest)]
    out = []
    for task in m.get("tasks") or []:
        metrics = dict((m.get("metrics") or {}).get(task) or {})
        pr = {
            k: metrics.get(k)
            for k in ("precision", "recall", "f1", "average_precision", "roc_auc", "n")
        }
        pr["threshold"] = metrics.get("threshold", (m.get("config") or {}).get("threshold", 0.5))
        cmp_ = metrics.get("heldout_vs_similarity") or {}
        pr["student_auc"], pr["similarity_auc"] = (
            cmp_.get("student_auc"),
            cmp_.get("similarity_auc"),
        )
        pr["checks_rows"] = cmp_.get("rows")
        pr["warnings"] = list((m.get("warnings") or {}).get(task) or [])
        held = (m.get("heldout") or {}).get(task) or {}
        if held.get("y") is not None and held.get("p") is not None:
            pr["y"], pr["p"] = held["y"], held["p"]
        out.append((task, pr))
    return out


def _read_distill(manifest: Path) -> tuple[str, dict]:
    m = read_json(manifest)
    task = m.get("task") or manifest.stem
    metrics = dict(m.get("metrics") or {})
    pr = {
        k: metrics.get(k)
        for k in ("precision", "recall", "f1", "average_precision", "roc_auc", "n")
    }
    pr["threshold"] = metrics.get("threshold", (m.get("config") or {}).get("threshold", 0.5))
    # the student's checks (retriever.distill.checks): AUC beside the similarity stage's, warnings
    cmp_ = metrics.get("heldout_vs_similarity") or {}
    pr["student_auc"], pr["similarity_auc"] = cmp_.get("student_auc"), cmp_.get("similarity_auc")
    pr["checks_rows"] = cmp_.get("rows")
    pr["warnings"] = list(m.get("warnings") or [])
    held = m.get("heldout")
    if isinstance(held, dict) and held.get("y") is not None and held.get("p") is not None:
        pr["y"], pr["p"] = held["y"], held["p"]
    sides = [manifest.with_suffix(".heldout.parquet"), manifest.with_suffix(".heldout.jsonl")]
    if isinstance(m.get("heldout_file"), str):  # named by the distill manifest, beside it
        sides.insert(0, manifest.parent / m["heldout_file"])
    for side in sides:
        if "y" in pr or not side.exists():
            continue
        rows = _read_table_rows(side)
        ykey = next((k for k in ("y", "label", "is_positive") if rows and k in rows[0]), None)
        pkey = next((k for k in ("p", "prob", "p_positive") if rows and k in rows[0]), None)
        if ykey and pkey:
            pr["y"] = [(r[ykey] in (1, True, "positive", "1")) for r in rows]
            pr["p"] = [float(r[pkey]) for r in rows]
    return task, pr


def _read_table_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return require("pyarrow.parquet").read_table(path).to_pylist()
    import orjson

    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _read_pools(
    pools_dir: Path, seen: dict[str, dict[str, int]], n: int, max_docs: int
) -> tuple[dict, dict]:
    """Kept documents per cluster (or per source shard, with the share of the scored documents
    when the score folder is known), plus top and bottom samples by ``prob_<task>`` (or a legacy
    pool's ``prob/<task>``)."""
    from retriever.dataset.pools import NOT_POOL_DIRS, list_pool_files, read_pool_shard

    kept, samples = {}, {}
    for sub in sorted(p for p in pools_dir.iterdir() if p.is_dir() and p.name not in NOT_POOL_DIRS):
        task = sub.name
        prob_key = score_name(PROB, task)
        try:
            files = list_pool_files(sub)
        except InputError:
            continue
        by_cluster: Counter = Counter()
        by_source: Counter = Counter()
        top: list = []  # min-heap of (prob, i, doc): the n highest
        low: list = []  # min-heap of (-prob, i, doc): the n lowest (closest to the threshold)
        read = 0
        capped = False
        for f in files:
            for rec in read_pool_shard(f):
                if not isinstance(rec, Doc):
                    continue
                if read >= max_docs:
                    capped = True
                    break
                read += 1
                md = rec.metadata
                if md.get("cluster_id") is not None:
                    by_cluster[str(md["cluster_id"])] += 1
                by_source[str(md.get("shard", "?"))] += 1
                p = score_value(md, prob_key)
                if p is None:
                    continue
                item = {"id": rec.id, "text": rec.text[:4000], "scores": {prob_key: p}}
                _push(top, (p, read, item), n)
                _push(low, (-p, read, item), n)
            if capped:
                break
        note = f"first {max_docs:,} documents of the pool read" if capped else ""
        # a share needs the scored documents of every group (from the score folder)
        for by, counts in (("cluster", by_cluster), ("source", by_source)):
            if not counts:
                continue
            ref = seen.get("cluster" if by == "cluster" else "shard") or {}
            share = bool(ref) and all(k in ref for k in counts) and not capped
            key = task if by == "cluster" or not by_cluster else f"{task} (by source)"
            kept[key] = {
                "by": by,
                "groups": {
                    k: {"kept": v, "seen": ref.get(k) if share else None} for k, v in counts.items()
                },
                "note": note,
            }
        samples[task] = {
            "kept": [it for _, _, it in sorted(top, key=lambda x: -x[0])],
            "borderline": [
                {**it, "why": "lowest filter probability kept"}
                for _, _, it in sorted(low, key=lambda x: -x[0])
            ],
        }
    return kept, samples


def _push(heap: list, item: tuple, n: int) -> None:
    """Keep the ``n`` largest items of a stream in a min-heap."""
    if len(heap) < n:
        heapq.heappush(heap, item)
    elif item[0] > heap[0][0]:
        heapq.heapreplace(heap, item)


def _walk_dirs(root: Path, depth: int) -> list[Path]:
    """``root`` and its sub-folders up to ``depth`` levels, breadth first (hidden ones skipped)."""
    out, frontier = [root], [root]
    for _ in range(depth):
        nxt = []
        for d in frontier:
            try:
                nxt.extend(
                    sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
                )
            except OSError:
                continue
        out.extend(nxt)
        frontier = nxt
    return out


def _json_stage(path: Path) -> str | None:
    try:
        return read_json(path).get("stage") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None


def _json_kind(path: Path) -> str | None:
    try:
        return read_json(path).get("kind")
    except Exception:  # not JSON or not an object: not a manifest
        return None


def _is_dataset(d: Path) -> bool:
    s = d / "summary.json"
    m = d / "manifest.json"
    if not (s.exists() and m.exists()):
        return False
    try:
        return read_json(m).get("settings", {}).get("stage") == "build-dataset"
    except Exception:
        return False


def _is_mixture(path: Path) -> bool:
    try:
        d = read_json(path)
    except Exception:
        return False
    return isinstance(d, dict) and "weights" in d and "held_out_spearman" in d


def _is_arms(path: Path) -> bool:
    """A ``retriever evaluate`` summary: settings with arms, and the interval table."""
    if not path.exists():
        return False
    try:
        d = read_json(path)
    except Exception:
        return False
    return isinstance(d, dict) and "table" in d and "arms" in (d.get("settings") or {})
