"""Reading each artifact of a run into the plain data a report section takes.

Each ``*_section`` function reads one stage's output (found by :mod:`retriever.report.find`):
score histograms and per-group counts, confirmation labels and their samples, a distilled
filter's held-out metrics, the pools' kept shares and samples.
"""

from __future__ import annotations

import heapq
from collections import Counter
from pathlib import Path

import numpy as np

from retriever._deps import require
from retriever.data import Doc
from retriever.errors import InputError
from retriever.io import read_json
from retriever.names import PROB, SCORE, first_score, score_name, score_spellings, score_tasks
from retriever.score.select import histograms_of


def scores_section(score_dir: Path) -> tuple[dict, dict, dict[str, dict[str, int]]]:
    """Per task the score stage's histogram of ``score_<task>`` (``ScoreHistogram``, shown in
    ``DISPLAY_BINS`` bars over the occupied range), the summary, and the scored documents per
    source shard and per cluster (``{"shard": {...}, "cluster": {...}}``)."""
    pq = require("pyarrow.parquet")
    pc = require("pyarrow.compute")
    summary = read_json(score_dir / "summary.json") if (score_dir / "summary.json").exists() else {}
    settings = read_json(score_dir / "manifest.json").get("settings", {})
    files = sorted((score_dir / "scores").glob("*.parquet"))
    tasks = list(settings.get("tasks") or [])
    if not tasks and files:
        tasks = score_tasks(pq.ParquetFile(files[0]).schema_arrow.names, SCORE)
    hists = histograms_of(files, tasks)
    seen: dict[str, Counter] = {"shard": Counter(), "cluster": Counter()}
    for f in files:
        pf = pq.ParquetFile(f)
        names = set(pf.schema_arrow.names)
        groups = {
            g: col for g, col in (("shard", "shard"), ("cluster", "cluster_id")) if col in names
        }
        if not groups:
            continue
        for batch in pf.iter_batches(batch_size=65536, columns=list(groups.values())):
            for g, col in groups.items():
                # counted per batch (distinct values in order of first appearance), not per row
                vc = pc.value_counts(batch.column(col))
                for v, c in zip(
                    vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True
                ):
                    if v is not None:
                        seen[g][str(v)] += c
    tasks_summary = summary.get("tasks", {})
    out = {}
    for t, h in hists.items():
        counts, edges = h.display()
        if not counts:
            continue
        ts = tasks_summary.get(t, {})
        out[t] = {
            "counts": counts,
            "edges": edges,
            "threshold": ts.get("threshold"),
            "rule": ts.get("rule"),
            "candidates": ts.get("candidates"),
        }
    return out, summary, {g: dict(c) for g, c in seen.items()}


def labels_section(confirm_dir: Path, n: int) -> tuple[dict, dict, dict]:
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


def distill_sections(manifest: Path) -> list[tuple[str, dict]]:
    """``[(task, metrics)]`` of one student manifest (each task of a multi-label one)."""
    m = read_json(manifest)
    if m.get("kind") != "fasttext-multilabel":
        return [distill_section(manifest)]
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


def distill_section(manifest: Path) -> tuple[str, dict]:
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


def pools_section(
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
        prob_keys = score_spellings(prob_key)  # prob_<task>, then a legacy pool's prob/<task>
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
                p = first_score(md, prob_keys)
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
