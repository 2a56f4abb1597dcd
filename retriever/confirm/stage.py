"""``ConfirmStage``: similarity candidates -> BPB matrix -> correlations -> labels, every task.

Outputs under ``OUT/`` (see docs/contracts.md)::

    manifest.json               the --docs source and its fingerprint (checked before resuming)
    bpb/                        the cached BPB matrix (see :mod:`retriever.confirm.matrix`)
    correlations/<task>.parquet id, similarity, candidate, every estimator, n_models, sampling
    weights labels/<task>.parquet       id, text, task, similarity, correlation, label, reason,
    shard, row,
                                source (confirmed / hard-negative / random / candidate)
    rejected.jsonl              records the reader rejected and duplicate ids
    summary.json                counts per task and label, models used, throughput, settings

Scoring is kept apart from deciding: the BPB matrix is the expensive, cached part; correlations and
labels are recomputed from it on every run, so changing a threshold costs seconds.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retriever._deps import require
from retriever.confirm.correlate import (
    ESTIMATORS,
    center_per_model,
    correlate,
    project_l2,
    project_linear,
)
from retriever.confirm.decide import LABELS, Decision, DecisionRules, decide
from retriever.confirm.docs import CandidateRule, DocSet
from retriever.confirm.matrix import BpbMatrix, MatrixResult
from retriever.confirm.panel import Panel
from retriever.distill.labels import label_schema
from retriever.errors import ConfigError
from retriever.io import AtomicWriter, RejectWriter, write_json_atomic
from retriever.manifest import check_or_write_manifest, paths_fingerprint
from retriever.stats import Stats

log = logging.getLogger(__name__)

LABEL_FLUSH_ROWS = 1024  # label rows buffered per task before a parquet row group is written


@dataclass(frozen=True)
class BpbOptions:
    """How the BPB matrix is computed (see :class:`~retriever.confirm.bpb.LMScorer`).

    Attributes:
        device: cuda, cpu or auto (default: cuda when available).
        dtype: weights dtype (auto: bf16 on CUDA, fp32 on CPU).
        max_batch_tokens: padded tokens per forward; lower it on small GPUs.
        max_batch_size: windows per forward.
        context_tokens: 1: disjoint windows (lm-eval); k: each later window re-reads k-1 extra
            tokens (see :func:`~retriever.confirm.bpb.rolling_windows`).
        block_docs: documents per cached part (what a kill can lose).
    """

    device: str | None = None
    dtype: str = "auto"
    max_batch_tokens: int = 8192
    max_batch_size: int = 64
    context_tokens: int = 1
    block_docs: int = 256


@dataclass(frozen=True)
class ConfirmSettings:
    """Everything a confirm run decides with.

    Attributes:
        tasks: tasks to label (``None``: the score folder's tasks that the panel has scores for,
            or every task the panel has scores for with a plain corpus).
        candidates: the similarity candidate rule and random negatives.
        rules: the correlation thresholds.
        bpb: BPB computation options.
        min_models: fewest usable, scored models; with fewer, a task's correlations are NaN.
        metric: score metric turned into errors (default: the one most models have, see
            ``Panel.errors``).
        sample_budget: budget fraction behind the sampling-weight caps. The caps are
            ``n_bytes / (sample_budget x total bytes of the scored candidates)``: a document may
            fill at most its own share of a budget that is that fraction of the candidates (so
            no document is repeated).
        center_models: subtract each model's median BPB over the task's candidates before
            correlating, so a model better at everything does not make every document correlate
            (off: raw BPB; see :func:`~retriever.confirm.correlate.center_per_model`).
    """

    tasks: tuple[str, ...] | None = None
    candidates: CandidateRule = field(default_factory=CandidateRule)
    rules: DecisionRules = field(default_factory=DecisionRules)
    bpb: BpbOptions = field(default_factory=BpbOptions)
    min_models: int = 3
    metric: str | None = None
    sample_budget: float = 0.25
    center_models: bool = True

    def __post_init__(self) -> None:
        if self.min_models < 2:
            raise ConfigError("min_models must be >= 2")
        if not 0 < self.sample_budget <= 1:
            raise ConfigError(f"sample_budget must be in (0, 1], got {self.sample_budget}")


class ConfirmStage:
    """The confirm stage: one call, :meth:`run`.

    Args:
        panel: the LM panel with task scores.
        out_dir: run folder (resumable: the BPB cache survives, labels are rewritten).
        settings: see :class:`ConfirmSettings`.
        progress: tqdm bars.
    """

    def __init__(
        self,
        panel: Panel,
        out_dir: str | os.PathLike,
        settings: ConfirmSettings | None = None,
        progress: bool = False,
    ):
        self.panel = panel
        self.out = Path(out_dir)
        self.settings = settings or ConfirmSettings()
        self.progress = progress

    # -- pieces -----------------------------------------------------------------------------------
    def resolve_tasks(self, docs: DocSet) -> list[str]:
        """The tasks to label; each must have panel scores (a clear error says how to get them)."""
        s = self.settings
        if s.tasks:
            tasks = list(s.tasks)
        elif docs.kind == "scores":
            tasks = [t for t in docs.score_tasks if t in self.panel.tasks()]
            if not tasks:
                raise ConfigError(
                    f"the panel has scores for {self.panel.tasks() or 'no task'} but the score "
                    f"folder has tasks {docs.score_tasks}; run `retriever confirm scorecard` for "
                    "one of them or pass --tasks"
                )
        else:
            tasks = self.panel.tasks()
            if not tasks:
                raise ConfigError(
                    "the panel has no scores: run `retriever confirm scorecard` or pass --tasks"
                )
        for t in tasks:
            self.panel.errors(t, s.metric)  # raises ConfigError naming the scorecard command
        return tasks

    def _check_source(self, docs: DocSet) -> None:
        src = [str(Path(p).resolve()) for p in docs.source]
        if docs.kind == "scores":
            fp = paths_fingerprint([str(Path(docs.source[0]) / "manifest.json")])
        else:
            from retriever.corpus import list_shards

            fp = paths_fingerprint(list_shards(docs.source))
        check_or_write_manifest(
            self.out, {"docs": src, "docs_kind": docs.kind, "docs_fingerprint": fp}
        )

    def compute_bpb(self, docs: DocSet, ids: list[str] | None = None) -> MatrixResult:
        """The BPB matrix of ``ids`` (default: every document), cached under ``OUT/bpb``."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._check_source(docs)
        b = self.settings.bpb
        matrix = BpbMatrix(
            self.out,
            self.panel,
            device=b.device,
            dtype=b.dtype,
            max_batch_tokens=b.max_batch_tokens,
            max_batch_size=b.max_batch_size,
            context_tokens=b.context_tokens,
            block_docs=b.block_docs,
            progress=self.progress,
        )
        return matrix.run(list(docs.ids) if ids is None else ids, docs.iter_docs)

    # -- the one call -----------------------------------------------------------------------------
    def run(self, docs: DocSet) -> dict[str, Any]:
        """Label every task's candidates and random negatives; write outputs; return the summary."""
        t0 = time.perf_counter()
        s = self.settings
        tasks = self.resolve_tasks(docs)
        cands = docs.select(tasks, s.candidates)
        wanted = docs.wanted_ids()
        ids = [i for i in docs.ids if i in wanted]
        matrix = self.compute_bpb(docs, ids)
        row_of = {d: i for i, d in enumerate(matrix.ids)}
        doc_rows = np.array([row_of.get(d, -1) for d in docs.ids], dtype=np.int64)  # [n_docs]
        summary: dict[str, Any] = {
            "docs": {
                "in": docs.n_docs + len(docs.rejected),
                "unique": docs.n_docs,
                "rejected": _reason_counts(docs),
            },
            "tasks": {},
            "bpb": _bpb_summary(matrix),
        }
        decisions: dict[str, Decision] = {}
        for task in tasks:
            decisions[task], summary["tasks"][task] = self._task(
                task, cands[task], docs, matrix, doc_rows
            )
            # seen = labelled (kept) + not considered (dropped) + rejected by the reader, per task
            st = Stats()
            st.inc("seen", summary["docs"]["in"])
            st.inc("kept", summary["tasks"][task]["considered"])
            st.inc("dropped/not_considered", summary["tasks"][task]["not_considered"])
            for reason, k in summary["docs"]["rejected"].items():
                st.inc(f"rejected/{reason}", k)
            summary["tasks"][task]["stats"] = st.to_dict()["counts"]
            summary["tasks"][task]["balanced"] = st.balanced()
        self._write_labels(docs, decisions)
        rej = RejectWriter(self.out / "rejected.jsonl")
        for r in docs.rejected:
            rej.add(r)
        (self.out / "rejected.jsonl").unlink(missing_ok=True)
        rej.close()
        summary["settings"] = _jsonable(asdict(s))
        summary["panel"] = {
            "name": self.panel.name,
            "models": self.panel.model_names(),
            "source": self.panel.source,
        }
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        write_json_atomic(self.out / "summary.json", summary)
        return summary

    def _task(self, task: str, cand, docs: DocSet, matrix: MatrixResult, doc_rows: np.ndarray):
        s = self.settings
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        names, err, metric = self.panel.errors(task, s.metric)
        cols = [j for j, m in enumerate(matrix.models) if m in names]
        used = [matrix.models[j] for j in cols]
        err_used = np.array([err[names.index(m)] for m in used], dtype=np.float64)
        n = docs.n_docs
        values = {e: np.full(n, np.nan) for e in ESTIMATORS}
        n_models = np.zeros(n, dtype=np.int64)
        why = [""] * n
        sel = np.nonzero(cand.candidate & (doc_rows >= 0))[0]  # candidates with a matrix row
        problem = None
        if len(used) < s.min_models:
            failed = [m for m, r in matrix.report["models"].items() if r.get("status") != "ok"]
            problem = (
                f"only {len(used)} usable scored model(s) {used} (< min_models {s.min_models}); "
                f"unusable: {failed or 'none'}, unscored: "
                f"{[m for m in matrix.models if m not in names]}"
            )
            for i in sel:
                why[i] = problem
        elif len(np.unique(err_used)) < 2:
            problem = (
                f"every usable model has the same {metric} on {task!r}: no order to correlate with"
            )
            for i in sel:
                why[i] = problem
        elif len(sel):
            sub = matrix.bpb[doc_rows[sel]][:, cols]  # [n_sel, n_used]
            if s.center_models:
                sub = center_per_model(sub)
            c = correlate(sub, err_used, used, min_models=s.min_models)
            for e in ESTIMATORS:
                values[e][sel] = c.values[e]
            n_models[sel] = c.n_models
        corr = values[s.rules.estimator]
        dec = decide(cand, corr, n_models, len(used), s.rules, why_missing=why)
        # sampling distribution over the candidates that have a correlation
        w_lin = np.full(n, np.nan)
        w_l2 = np.full(n, np.nan)
        ok = np.nonzero(np.isfinite(corr))[0]
        if len(ok):
            nb = matrix.n_bytes[doc_rows[ok]].astype(np.float64)
            tau = nb / (s.sample_budget * nb.sum())
            w_lin[ok] = project_linear(corr[ok], tau)
            w_l2[ok] = project_l2(corr[ok], tau)
        keep = np.nonzero(cand.candidate | cand.random_negative)[0]
        table = {
            "id": pa.array([docs.ids[i] for i in keep], pa.string()),
            "similarity": pa.array(cand.similarity[keep], pa.float64()),
            "candidate": pa.array(cand.candidate[keep], pa.bool_()),
            "n_models": pa.array(n_models[keep], pa.int64()),
        }
        for e in ESTIMATORS:
            table[e] = pa.array(values[e][keep], pa.float64())
        table["weight_linear"] = pa.array(w_lin[keep], pa.float64())
        table["weight_l2"] = pa.array(w_l2[keep], pa.float64())
        from retriever.io import AtomicWriter

        with AtomicWriter(self.out / "correlations" / f"{task}.parquet") as tmp:
            pq.write_table(pa.table(table), tmp)
        counts = dec.counts()
        by_reason: dict[str, int] = {}
        for lab, r in zip(dec.label, dec.reason, strict=True):
            key = lab + (
                " (random non-candidate)"
                if "random non-candidate" in r
                else " (not computed)"
                if "not computed" in r
                else ""
            )
            by_reason[key] = by_reason.get(key, 0) + 1
        cc = corr[cand.candidate]
        info = {
            "metric": metric,
            "models": used,
            "errors": dict(zip(used, err_used.round(6).tolist(), strict=True)),
            "candidate_rule": cand.rule,
            "cutoff": None if math.isnan(cand.cutoff) else cand.cutoff,
            "candidates": int(cand.candidate.sum()),
            "random_negatives": int(cand.random_negative.sum()),
            "considered": len(dec.index),
            "not_considered": n - len(dec.index),
            "labels": counts,
            "by_reason": by_reason,
            "correlation_quantiles": _quantiles(cc[np.isfinite(cc)]),
        }
        if problem:
            info["problem"] = problem
        return dec, info

    def _write_labels(self, docs: DocSet, decisions: dict[str, Decision]) -> None:
        """One streaming pass over the documents, appending each task's rows in input order."""
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        schema = label_schema(
            [("shard", pa.string()), ("row", pa.int64()), ("source", pa.string())]
        )
        pos = {d: i for i, d in enumerate(docs.ids)}
        per_task: dict[str, dict[int, int]] = {
            t: {int(i): k for k, i in enumerate(dec.index)} for t, dec in decisions.items()
        }
        wanted = {docs.ids[i] for m in per_task.values() for i in m}
        out_dir = self.out / "labels"
        out_dir.mkdir(parents=True, exist_ok=True)
        writers: dict = {}
        bufs: dict = {}
        tmps: dict[str, AtomicWriter] = {}
        for t in decisions:
            tmps[t] = AtomicWriter(out_dir / f"{t}.parquet")
            writers[t] = pq.ParquetWriter(tmps[t].start(), schema)
            bufs[t] = []
        written = dict.fromkeys(decisions, 0)
        try:
            for doc in docs.iter_docs(wanted):
                i = pos[doc.id]
                for t, dec in decisions.items():
                    k = per_task[t].get(i)
                    if k is None:
                        continue
                    bufs[t].append(
                        (
                            doc.id,
                            doc.text,
                            t,
                            float(dec.similarity[k]),
                            float(dec.correlation[k]),
                            dec.label[k],
                            dec.reason[k],
                            docs.shard[i],
                            docs.row[i],
                            dec.source[k] if dec.source else None,
                        )
                    )
                    if len(bufs[t]) >= LABEL_FLUSH_ROWS:
                        written[t] += _flush(pa, writers[t], schema, bufs[t])
            for t in decisions:
                written[t] += _flush(pa, writers[t], schema, bufs[t])
                writers[t].close()
        except BaseException:
            for t in decisions:
                writers[t].close()
                tmps[t].abort()
            raise
        for t, dec in decisions.items():
            if written[t] != len(dec.index):
                tmps[t].abort()
                raise RuntimeError(
                    f"labels for {t!r}: {written[t]} of {len(dec.index)} documents found when "
                    f"re-reading {docs.source}; did the input change during the run?"
                )
            tmps[t].commit()


def _flush(pa, writer, schema, buf: list[tuple]) -> int:
    if not buf:
        return 0
    cols = list(zip(*buf, strict=True))
    writer.write_table(
        pa.table(
            {f.name: pa.array(c, f.type) for f, c in zip(schema, cols, strict=True)}, schema=schema
        )
    )
    n = len(buf)
    buf.clear()
    return n


def _quantiles(x: np.ndarray) -> dict[str, float] | None:
    if len(x) == 0:
        return None
    q = np.quantile(x, [0.0, 0.1, 0.5, 0.9, 1.0])
    return dict(zip(["min", "p10", "p50", "p90", "max"], np.round(q, 4).tolist(), strict=True))


def _reason_counts(docs: DocSet) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in docs.rejected:
        out[r.reason] = out.get(r.reason, 0) + 1
    return out


def _bpb_summary(m: MatrixResult) -> dict[str, Any]:
    rep = m.report
    return {
        "docs": len(m.ids),
        "usable_models": m.models,
        "tokens": rep.get("tokens"),
        "seconds": rep.get("seconds"),
        "tokens_per_s": rep.get("tokens_per_s"),
        "device": rep.get("device"),
        "dtype": rep.get("dtype"),
        "models": {
            k: {
                kk: v[kk]
                for kk in ("status", "cached", "computed", "nan_docs", "error", "tokens_per_s")
                if kk in v
            }
            for k, v in rep["models"].items()
        },
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


__all__ = ["LABELS", "BpbOptions", "ConfirmSettings", "ConfirmStage"]
