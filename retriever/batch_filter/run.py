"""Stage batch_filter: filter whole shards for several tasks at once, resumably, on any executor.

``BatchFilter(FilterConfig(tasks=[...], ...)).run(inputs, output)`` lists the shards, checks or
writes ``output/manifest.json``, settles each task's threshold (given, or found on a sample for
a top fraction), runs :class:`~retriever.batch_filter.shard.FilterShard` over every unfinished
shard with :func:`retriever.executors.run_sharded` (datatrove local / Slurm / Ray), and writes
the manifest's accounting: per shard and in total, docs in, kept and dropped per task, rejected
per reason, characters and tokens kept, throughput.

Output folder::

    DIR/manifest.json                      settings, thresholds, per-shard counts, totals
    DIR/<task>/<shard_name>.jsonl.gz       kept documents (or .jsonl / .parquet / .json LMFlow)
    DIR/rejected/<shard_name>.jsonl        rejected records (shard, row, reason, raw)
    DIR/scores/<shard_name>.parquet        id, row, n_chars, prob_<task> (float16; write_scores)
    DIR/done/<shard_name>.json             per-shard counters; marks the shard finished
    DIR/logs/                              datatrove logs and stats; failed/<shard_name>.json
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retriever.batch_filter.config import DEFAULT_THRESHOLD, FilterConfig, FilterPlan
from retriever.batch_filter.scorer import FastTextScorer, load_model, resolve_models
from retriever.batch_filter.shard import FilterShard
from retriever.batch_filter.thresholds import (
    FLOOR_PROB,
    ThresholdDecision,
    sample_docs,
    sample_weights,
    top_fraction_decisions,
)
from retriever.corpus import list_shards, shard_name, write_json_atomic
from retriever.errors import ConfigError
from retriever.executors import ShardedRun, cpu_count, read_done, run_sharded
from retriever.io import check_writable, read_json, sweep_temp
from retriever.lock import OutputLock
from retriever.manifest import check_or_write_manifest, file_fingerprint
from retriever.stats import Stats
from retriever.tokens import TokenCounter

MANIFEST = "manifest.json"
# Local workers are forked after the models are loaded, so they share one copy of each model
# (copy-on-write; fastText only reads it): with 2M buckets x 64 dims that is ~520 MB per model
# instead of ~520 MB per model per worker, and no per-worker load time. forkserver elsewhere.
DEFAULT_START_METHOD = "fork" if sys.platform.startswith("linux") else "forkserver"

log = logging.getLogger(__name__)


@dataclass
class FilterReport:
    """Outcome of :meth:`BatchFilter.run`: the manifest written, and the executor's result."""

    output: str
    manifest: dict[str, Any]
    run: ShardedRun = field(repr=False)

    @property
    def totals(self) -> dict[str, Any]:
        return self.manifest["totals"]


class BatchFilter:
    """Stage: fastText-filter corpus shards for several tasks (see module docstring)."""

    name = "batch_filter"

    def __init__(self, config: FilterConfig):
        self.config = config

    def settings(self, shards: list[str], models: dict[str, str]) -> dict[str, Any]:
        """The manifest settings: a resumed run must match them exactly."""
        c = self.config
        return {
            "tasks": list(c.tasks),
            "models": {t: [p, file_fingerprint(p)] for t, p in models.items()},
            "mode": c.mode,
            "threshold": (DEFAULT_THRESHOLD if c.threshold is None else c.threshold)
            if c.mode == "threshold"
            else None,
            "top_fraction": c.top_fraction,
            "by": c.by if c.mode == "top-fraction" else None,
            "sample_docs": c.sample_docs if c.mode == "top-fraction" else None,
            "format": c.format,
            "text_field": c.reader.text_field,
            "id_field": c.reader.id_field,
            "keep_fields": list(c.reader.keep_fields) if c.reader.keep_fields is not None else None,
            "tokenizer": c.tokenizer,
            "detokenizer": c.reader.detokenizer,
            **(
                {"tokens_field": c.reader.tokens_field} if c.reader.tokens_field != "tokens" else {}
            ),
            "max_chars": c.max_chars,
            "write_scores": c.write_scores,
            "shards": shards,
        }

    def prepare(
        self, inputs: list[str] | str, output: str | os.PathLike
    ) -> tuple[list[str], FilterPlan, dict]:
        """List shards, check or write the manifest, settle thresholds; return what to run."""
        c = self.config
        shards = list_shards(inputs)
        models = resolve_models(list(c.tasks), c.models, c.indexes)
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        manifest = check_or_write_manifest(out, self.settings(shards, models), MANIFEST)
        if "decisions" in manifest:  # resuming: reuse the thresholds found before
            decisions = {t: ThresholdDecision(**d) for t, d in manifest["decisions"].items()}
            for d in decisions.values():
                if d.mode == "top-fraction" and d.threshold < FLOOR_PROB:
                    # decided before a top fraction stopped cutting among the documents tied at
                    # the student's floor: its pool holds them all
                    log.warning(
                        "%s: this filter run's threshold %.3g lies on the student's floor (1e-05): "
                        "its pool keeps every document at the floor. `retriever "
                        "filter-rethreshold %s --top-fraction %g --by %s --out NEW_DIR` writes the "
                        "pools of the current rule from the stored scores, without rescoring",
                        d.task,
                        d.threshold,
                        out,
                        d.fraction,
                        "chars" if d.by == "tokens" else d.by,  # stored scores count no tokens
                    )
        else:
            decisions = self._decide(shards, models)
            manifest["decisions"] = {t: d.to_dict() for t, d in decisions.items()}
            manifest["tokens_method"] = TokenCounter(c.tokenizer).method
            write_json_atomic(out / MANIFEST, manifest)
        settings = FilterPlan(
            config=c,
            output=str(out),
            models=models,
            thresholds={t: decisions[t].threshold for t in c.tasks},
        )
        return shards, settings, manifest

    def _decide(self, shards: list[str], models: dict[str, str]) -> dict[str, ThresholdDecision]:
        c = self.config
        if c.mode == "threshold":
            thr = c.threshold if c.threshold is not None else DEFAULT_THRESHOLD
            return {
                t: ThresholdDecision(
                    t, float(thr[t] if isinstance(thr, dict) else thr), "threshold"
                )
                for t in c.tasks
            }
        reader = c.reader.reader()
        docs = sample_docs(shards, reader, c.sample_docs)
        if not docs:
            raise ConfigError(
                "no readable document in the sampled shards to set a top-fraction threshold"
            )
        scorer = FastTextScorer(models, max_chars=c.max_chars, batch_size=c.batch_size)
        probs = np.concatenate(
            [
                scorer.score_batch(docs[i : i + c.batch_size]).probs
                for i in range(0, len(docs), c.batch_size)
            ]
        )  # [n_sample, n_tasks]
        w = sample_weights(docs, c.by, TokenCounter(c.tokenizer).count_tokens)
        frac = c.top_fraction
        if frac is None:  # only called for a top-fraction rule
            raise ConfigError("a top-fraction decision needs top_fraction")
        return top_fraction_decisions(list(c.tasks), probs, w, frac, c.by)

    def run(
        self,
        inputs: list[str] | str,
        output: str | os.PathLike,
        executor: str = "local",
        tasks: int | None = None,
        workers: int | None = None,
        progress: bool = False,
        **executor_settings: Any,
    ) -> FilterReport:
        """Filter every unfinished shard of ``inputs`` into ``output``; write the manifest.

        Args:
            inputs: shard files, folders or Hub ids (see :func:`retriever.corpus.list_shards`).
            output: output folder; rerun with the same settings to resume.
            executor: ``local`` (default), ``slurm`` or ``ray``.
            tasks, workers, executor_settings: see :func:`retriever.executors.run_sharded`. For
                ``local``, ``start_method`` defaults to :data:`DEFAULT_START_METHOD`.
            progress: tqdm bar of finished shards.

        Raises:
            ResumeError: ``output`` holds a run with other settings.
        """
        check_writable(output)
        with OutputLock(output):  # one writer per folder: a second run is refused, naming this one
            sweep_temp(output)
            return self._run_locked(
                inputs, output, executor, tasks, workers, progress, **executor_settings
            )

    def _run_locked(
        self, inputs, output, executor, tasks, workers, progress, **executor_settings: Any
    ) -> FilterReport:
        shards, settings, _ = self.prepare(inputs, output)
        out = Path(output)
        if executor == "local":
            executor_settings.setdefault("start_method", DEFAULT_START_METHOD)
            if executor_settings["start_method"] == "fork":
                for path in settings.models.values():
                    load_model(path)  # before the fork: the workers share it
        result = run_sharded(
            FilterShard(settings),
            shards,
            executor=executor,
            tasks=tasks,
            workers=workers,
            logging_dir=out / "logs",
            done_dir=out / "done",
            progress=progress,
            **executor_settings,
        )
        if workers is None and executor == "local":
            workers = min(len(shards), cpu_count())
        manifest = write_summary(out, result, executor=executor, workers=workers)
        return FilterReport(str(out), manifest, result)


def shard_entry(path: str, st: Stats, tasks: list[str]) -> dict[str, Any]:
    """Per-shard accounting from its counters."""
    c = st.counts
    rejected = {k.split("/", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("rejected/")}
    n_rej = sum(rejected.values())
    kept = {t: c.get(f"kept/{t}", 0) for t in tasks}
    dropped = {t: c.get(f"dropped/{t}", 0) for t in tasks}
    return {
        "path": path,
        "docs_in": c.get("seen", 0),
        "kept": kept,
        "dropped": dropped,
        "rejected": rejected,
        "rejected_total": n_rej,
        "chars_in": c.get("chars_in", 0),
        "chars_kept": {t: c.get(f"chars_kept/{t}", 0) for t in tasks},
        "tokens_kept": {t: c.get(f"tokens_kept/{t}", 0) for t in tasks},
        "seconds": round(st.seconds, 3),
        "balanced": all(c.get("seen", 0) == kept[t] + dropped[t] + n_rej for t in tasks),
    }


def write_summary(
    output: str | os.PathLike,
    result: ShardedRun | None = None,
    executor: str = "local",
    workers: int | None = None,
) -> dict[str, Any]:
    """Write the manifest's accounting from the done markers (and this run's timing).

    Also what ``retriever filter --collect`` calls after a Slurm job array has finished.
    """
    out = Path(output)
    manifest = read_json(out / MANIFEST)
    tasks = manifest["settings"]["tasks"]
    shards = manifest["settings"]["shards"]
    per: dict[str, Any] = {}
    total = Stats()
    missing = []
    for s in shards:
        st = read_done(out / "done", s)
        if st is None:
            missing.append(s)
            continue
        per[shard_name(s)] = shard_entry(s, st, tasks)
        total += st
    totals = shard_entry("", total, tasks)
    totals.pop("path")
    totals["shards_done"] = len(per)
    totals["shards_total"] = len(shards)
    totals["kept_share_chars"] = {
        t: totals["chars_kept"][t] / max(1, totals["chars_in"]) for t in tasks
    }
    manifest["shards"] = per
    manifest["totals"] = totals
    manifest["tokens_method"] = manifest.get("tokens_method", "")
    cpu = sum(per[k]["seconds"] for k in per)
    through: dict[str, Any] = {
        "docs_per_core_second": round(totals["docs_in"] / cpu, 1) if cpu else None,
        "chars_per_core_second": round(totals["chars_in"] / cpu, 1) if cpu else None,
        "core_seconds": round(cpu, 3),
    }
    if result is not None:
        fresh = [s for s in result.per_shard if s not in set(result.skipped)]
        docs = sum(result.per_shard[s].counts.get("seen", 0) for s in fresh)
        chars = sum(result.per_shard[s].counts.get("chars_in", 0) for s in fresh)
        through |= {
            "executor": executor,
            "workers": workers,
            "wall_seconds": round(result.seconds, 3),
            "shards_this_run": len(fresh),
            "shards_skipped": len(result.skipped),
            "docs_this_run": docs,
            "docs_per_second": round(docs / result.seconds, 1) if result.seconds else None,
            "chars_per_second": round(chars / result.seconds, 1) if result.seconds else None,
        }
        manifest["submitted"] = result.submitted
    failed = {}
    for s in missing:  # a failure record counts only while the shard has no done marker
        f = out / "logs" / "failed" / f"{shard_name(s)}.json"
        if f.is_file():
            failed[shard_name(s)] = read_json(f).get("error", "failed")
    manifest["failed"] = failed
    manifest["throughput"] = through
    manifest["missing"] = [s for s in missing if shard_name(s) not in manifest.get("failed", {})]
    manifest["complete"] = not missing
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(out / MANIFEST, manifest)
    return manifest
