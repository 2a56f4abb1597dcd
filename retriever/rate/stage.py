"""The rating stage: ask an LLM to rate documents 0-5 per task, FineWeb-Edu style.

Which documents: those of ``--docs`` (a score folder or a corpus, as the confirm stage reads it):
from a score folder, each task's similarity candidates (``top_fraction`` / ``threshold``, else the
score stage's threshold; at most ``max_candidates``) plus a seeded sample of the other documents
(``negatives_per_positive``), so the ratings cover both ends; from a plain corpus, every document
(or a seeded ``max_candidates`` of them).

Layout of ``OUT``::

    cache.sqlite            every answer by (prompt version, model, id): asked once
    ratings/<task>.parquet  id, score, int_score, raw, error, similarity, sample, cached, attempts
    labels/<task>.parquet   the distill labels contract (source = "rating"), rated rows only
    manifest.json           endpoint, prompts and their versions, threshold, candidate rule
    summary.json            per task: docs in = rated + rejected (+ over budget), histogram, cost

Scores are kept apart from the decision: ``ratings/`` holds every score and every raw answer
(rejected ones with their ``error``: ``unparseable``, ``out_of_range``, ``http_<code>``,
``timeout``...); ``labels/`` applies ``threshold`` (``int_score >= threshold`` is positive), so a
new threshold is a rerun that answers everything from the cache. Outputs are rewritten whole on
every run; the cache makes that free.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retriever._deps import require
from retriever.corpus.readers import ReaderConfig
from retriever.distill.labels import label_schema
from retriever.errors import ConfigError
from retriever.io import AtomicWriter, write_json_atomic
from retriever.progress import progress_bar
from retriever.rate.cache import AnswerCache, text_sha
from retriever.rate.client import (
    BudgetExhausted,
    ChatClient,
    EndpointConfig,
    RequestBudget,
    RequestFailed,
)
from retriever.rate.prompt import SYSTEM, TaskPrompt, parse_score, prompt_version, score_pattern
from retriever.stats import Stats

RATING = "rating"  # the ``source`` of rating rows in the distill labels


@dataclass(frozen=True)
class RateConfig:
    """Settings of ``retriever rate`` (the ``[rate]`` section of a run config).

    Attributes:
        tasks: tasks to rate (default: the score folder's tasks).
        endpoint: where and how to ask (:class:`~retriever.rate.client.EndpointConfig`: the URL,
            the model, the API, sampling, timeouts and retries; ``[rate.endpoint]``).
        api_key_env: environment variable holding the API key (unset or empty: no key sent).
        concurrency: requests in flight at once (threads).
        max_requests: HTTP requests this run may send, retries included (default: no cap).
        max_chars: characters of a document put into the prompt (its start).
        score_marker: what precedes the score in an answer.
        threshold: ``int_score >= threshold`` is a positive label.
        prompts: task -> a whole template (with ``{text}``) replacing the spec's rubric frame.
        system: the system message (chat) or preamble (completions); part of the prompt (''
            sends none).
        top_fraction: candidates of a score folder: the top fraction by similarity.
        threshold_sim: candidates: task -> similarity at or above.
        max_candidates: at most this many candidates per task.
        negatives_per_positive: random non-candidates rated per candidate.
        max_random_negatives: at most this many random non-candidates per task.
        sample_seed: seeds the random non-candidates.
        cache: answer cache file (default ``OUT/cache.sqlite``; share one across runs).
        reader: how corpus records are read (plain corpus input; a run: ``[corpus]``'s options).
    """

    tasks: tuple[str, ...] = ()
    # no default endpoint: EndpointConfig needs a model name
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    max_requests: int | None = None
    max_chars: int = 6000
    score_marker: str = "Score:"
    threshold: int = 3
    prompts: Mapping[str, str] = field(default_factory=dict)
    system: str = SYSTEM
    top_fraction: float | None = None
    threshold_sim: Mapping[str, float] = field(default_factory=dict)
    max_candidates: int | None = None
    negatives_per_positive: float = 1.0
    max_random_negatives: int = 100_000
    sample_seed: int = 0
    cache: str | None = None
    reader: ReaderConfig = ReaderConfig()

    def __post_init__(self) -> None:
        if not isinstance(self.endpoint, EndpointConfig):
            raise ConfigError(f"rate endpoint must be an EndpointConfig, got {self.endpoint!r}")
        for name in ("concurrency", "max_chars"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"rate {name} must be an integer >= 1, got {v!r}")
        if isinstance(self.threshold, bool) or self.threshold not in range(0, 6):
            raise ConfigError(f"rate threshold must be an integer 0-5, got {self.threshold!r}")
        score_pattern(self.score_marker)  # an empty marker fails here
        self.candidate_rule()  # fractions and caps are checked by the confirm stage's rule

    def candidate_rule(self):
        from retriever.confirm.docs import CandidateRule

        return CandidateRule(
            top_fraction=self.top_fraction,
            threshold=dict(self.threshold_sim),
            negatives_per_positive=self.negatives_per_positive,
            max_random_negatives=self.max_random_negatives,
            max_candidates=self.max_candidates,
            seed=self.sample_seed,
        )

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None if self.api_key_env else None


def load_prompts(
    tasks: Sequence[str],
    config: RateConfig,
    indexes_dir: str | os.PathLike | None = "indexes",
) -> dict[str, TaskPrompt]:
    """Each task's prompt: ``config.prompts[task]`` if given, else its spec's rubric in the frame.

    Raises:
        ConfigError: a task with neither (the message says where to add a rubric).
    """
    from retriever.config import load_task_spec
    from retriever.rate.prompt import task_prompt

    out = {}
    for t in tasks:
        rubric, desc = "", ""
        spec_path = Path(indexes_dir) / f"{t}.toml" if indexes_dir else None
        if spec_path is not None and spec_path.is_file():
            spec = load_task_spec(spec_path)
            rubric, desc = spec.rubric, spec.description
        out[t] = task_prompt(t, rubric, desc, config.prompts.get(t), config.system)
    return out


@dataclass
class _Job:
    task: str
    doc_id: str
    text: str
    sha: str


class RatingStage:
    """Rates the selected documents of every task; one call, :meth:`run`.

    Args:
        config: the settings.
        prompts: task -> :class:`TaskPrompt` (see :func:`load_prompts`).
        out_dir: the output folder (see the module docstring).
        progress: show a bar per task.
    """

    def __init__(
        self,
        config: RateConfig,
        prompts: Mapping[str, TaskPrompt],
        out_dir: str | os.PathLike,
        progress: bool | None = None,
    ):
        self.config = config
        self.prompts = dict(prompts)
        self.out = Path(out_dir)
        self.progress = progress
        self.pattern = score_pattern(config.score_marker)
        self.endpoint = config.endpoint
        self.budget = RequestBudget(config.max_requests)
        self.client = ChatClient(
            self.endpoint, config.api_key(), self.budget, seed=config.sample_seed
        )

    def version(self, task: str) -> str:
        e = self.endpoint
        return prompt_version(
            self.prompts[task],
            max_chars=self.config.max_chars,
            api=e.api,
            temperature=e.temperature,
            max_tokens=e.max_tokens,
            seed=e.seed,
        )

    def run(self, docs) -> dict[str, Any]:
        """Rate every task's documents of ``docs`` (a :class:`~retriever.confirm.docs.DocSet`)."""
        c = self.config
        tasks = list(c.tasks) or list(docs.score_tasks)
        if not tasks:
            raise ConfigError("no task to rate: pass --task (a plain corpus has no score tasks)")
        missing = [t for t in tasks if t not in self.prompts]
        if missing:
            raise ConfigError(f"no rating prompt for task(s) {missing}")
        if docs.kind == "scores" and c.top_fraction is None:
            from retriever.score.read import candidate_thresholds

            recorded = candidate_thresholds(docs.source[0])
            bare = [t for t in tasks if t not in c.threshold_sim and recorded.get(t) is None]
            if bare:
                raise ConfigError(
                    f"{docs.source[0]} records no candidate threshold for {bare}: pass "
                    "--top-fraction F or --sim-threshold TASK=SCORE (run config: [rate] "
                    "top_fraction / threshold_sim)"
                )
        cands = docs.select(tasks, c.candidate_rule())
        self.out.mkdir(parents=True, exist_ok=True)
        versions = {t: self.version(t) for t in tasks}
        write_json_atomic(self.out / "manifest.json", self._manifest(docs, tasks, versions))
        t0 = time.perf_counter()
        e = c.endpoint
        summary: dict[str, Any] = {"model": e.model, "base_url": e.base_url, "tasks": {}}
        with AnswerCache(c.cache or self.out / "cache.sqlite") as cache:
            for t in tasks:
                summary["tasks"][t] = self._task(t, cands[t], docs, cache, versions[t])
        secs = time.perf_counter() - t0
        asked = sum(s["asked"] for s in summary["tasks"].values())
        summary.update(
            requests=self.budget.used,
            max_requests=c.max_requests,
            asked=asked,
            cached=sum(s["cached"] for s in summary["tasks"].values()),
            seconds=round(secs, 3),
            requests_per_s=round(self.budget.used / secs, 2) if secs and asked else None,
            docs_per_s=round(asked / secs, 2) if secs and asked else None,
            prompt_tokens=sum(s["prompt_tokens"] for s in summary["tasks"].values()),
            completion_tokens=sum(s["completion_tokens"] for s in summary["tasks"].values()),
            complete=all(s["complete"] for s in summary["tasks"].values()),
            balanced=all(s["balanced"] for s in summary["tasks"].values()),
        )
        write_json_atomic(self.out / "summary.json", summary)
        return summary

    def _manifest(self, docs, tasks: list[str], versions: dict[str, str]) -> dict[str, Any]:
        c = self.config
        settings: dict[str, Any] = {}
        for k, v in asdict(c).items():  # the endpoint's options flat, in the section's order
            if k == "endpoint":
                settings.update(v)
            elif k not in ("prompts", "cache", "api_key_env", "reader"):
                settings[k] = v
        settings.update(c.reader.to_dict())
        return {
            "stage": "rate",
            "docs": list(docs.source),
            "docs_kind": docs.kind,
            "settings": settings,
            "label_rule": f"positive: int_score >= {c.threshold}; negative: below; "
            "rejected answers are not labelled",
            "prompts": {
                t: {
                    "version": versions[t],
                    "template": self.prompts[t].template,
                    "system": self.prompts[t].system,
                }
                for t in tasks
            },
        }

    # -- one task ---------------------------------------------------------------------------------
    def _task(self, task: str, tc, docs, cache: AnswerCache, version: str) -> dict[str, Any]:
        c = self.config
        model = c.endpoint.model
        chosen = np.nonzero(tc.candidate | tc.random_negative)[0]
        pos = {docs.ids[i]: k for k, i in enumerate(chosen)}
        sim = {docs.ids[i]: float(tc.similarity[i]) for i in chosen}
        role = {docs.ids[i]: ("candidate" if tc.candidate[i] else "random") for i in chosen}
        stats = Stats()
        rows: dict[str, dict] = {}
        texts: dict[str, str] = {}
        usage = Counter[str]()
        counts = Counter[str]()
        bar = progress_bar(
            total=len(chosen), desc=f"rate {task}", unit="doc", progress=self.progress
        )

        def record(job: _Job, raw: str, error: str | None, cached: bool, attempts: int) -> None:
            stats.inc("seen")
            p = parse_score(raw, self.pattern) if error is None else None
            err = error or (p.error if p else None)
            rows[job.doc_id] = {
                "id": job.doc_id,
                "score": p.score if p and p.error is None else math.nan,
                "int_score": p.int_score if p and p.error is None else -1,
                "raw": raw,
                "error": err,
                "similarity": sim[job.doc_id],
                "sample": role[job.doc_id],
                "cached": cached,
                "attempts": attempts,
            }
            if err is None:
                stats.inc("kept")
                texts[job.doc_id] = job.text
            else:
                stats.inc(f"rejected/{err}")
            bar.update(1)

        def jobs() -> Iterator[_Job]:
            for doc in docs.iter_docs(set(pos)):
                text = doc.text[: c.max_chars]
                job = _Job(task, doc.id, text, text_sha(text))
                if not text.strip():
                    record(job, "", "empty", False, 0)
                    continue
                hit = cache.get(version, model, doc.id, job.sha)
                if hit is not None:
                    counts["cached"] += 1
                    record(job, hit, None, True, 0)
                    continue
                yield job

        prompt = self.prompts[task]
        t0 = time.perf_counter()
        over_budget: list[_Job] = []
        pool = ThreadPoolExecutor(c.concurrency, thread_name_prefix="rate")
        pending: dict[Future, _Job] = {}

        def collect(done) -> None:
            for f in done:
                job = pending.pop(f)
                try:
                    ans = f.result()
                except BudgetExhausted:
                    over_budget.append(job)
                    continue
                except RequestFailed as e:
                    counts["asked"] += 1
                    record(job, e.detail, e.kind, False, e.attempts)
                    continue
                counts["asked"] += 1
                usage.update({k: int(v) for k, v in ans.usage.items() if isinstance(v, int)})
                cache.put(version, model, job.doc_id, job.sha, ans.text, ans.usage)
                record(job, ans.text, None, False, ans.attempts)

        try:
            stream = jobs()
            for job in stream:
                if self.budget.left <= 0:
                    over_budget.append(job)
                    over_budget.extend(stream)  # the rest is counted, not asked
                    break
                f = pool.submit(self.client.ask, prompt.build(job.text), prompt.system)
                pending[f] = job
                if len(pending) >= 2 * c.concurrency:
                    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                    collect(done)
                else:  # write finished answers at once: a kill loses only what is in flight
                    collect([f for f in pending if f.done()])
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                collect(done)
            pool.shutdown(wait=True)
        except BaseException:
            # a fatal endpoint error or Ctrl-C: stop at once; what was answered is cached, and a
            # rerun asks the rest (requests still in flight finish in their threads, unread)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            bar.close()
        stats.inc("seen", len(over_budget))
        stats.inc("dropped/over_budget", len(over_budget))
        stats.seconds = time.perf_counter() - t0
        ordered = sorted(rows.values(), key=lambda r: pos[r["id"]])
        self._write_ratings(task, ordered)
        labels = self._write_labels(task, ordered, texts)
        ints = [r["int_score"] for r in ordered if r["error"] is None]
        asked = counts["asked"]
        return {
            "docs_in": stats.counts["seen"],
            "rated": stats.counts["kept"],
            "rejected": {
                k.split("/", 1)[1]: v for k, v in stats.counts.items() if k.startswith("rejected/")
            },
            "over_budget": stats.counts["dropped/over_budget"],
            "balanced": stats.balanced(),
            "complete": stats.counts["dropped/over_budget"] == 0,
            "candidates": int(tc.candidate.sum()),
            "random": int(tc.random_negative.sum()),
            "rule": tc.rule,
            "cached": counts["cached"],
            "asked": asked,
            "prompt_version": version,
            "histogram": {str(k): ints.count(k) for k in range(6)},
            "mean_score": round(float(np.mean(ints)), 4) if ints else None,
            "labels": labels,
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "seconds": round(stats.seconds, 3),
        }

    def _write_ratings(self, task: str, rows: list[dict]) -> Path:
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        schema = pa.schema(
            [
                ("id", pa.string()),
                ("score", pa.float64()),
                ("int_score", pa.int64()),
                ("raw", pa.string()),
                ("error", pa.string()),
                ("similarity", pa.float64()),
                ("sample", pa.string()),
                ("cached", pa.bool_()),
                ("attempts", pa.int64()),
            ]
        )
        p = self.out / "ratings" / f"{task}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        with AtomicWriter(p) as tmp:
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
        return p

    def _write_labels(self, task: str, rows: list[dict], texts: dict[str, str]) -> dict[str, int]:
        rated = [r for r in rows if r["error"] is None]
        write_rating_labels(
            self.out / "labels" / f"{task}.parquet",
            task,
            rated,
            texts,
            self.config.threshold,
            self.config.endpoint.model,
        )
        pos = sum(1 for r in rated if r["int_score"] >= self.config.threshold)
        return {"positive": pos, "negative": len(rated) - pos}


def rating_label_rows(
    task: str, ratings: list[dict], texts: Mapping[str, str], threshold: int, model: str = ""
) -> list[dict]:
    """Label rows (the distill contract) from rated rows: ``int_score >= threshold`` is positive."""
    out = []
    by = f" by {model}" if model else ""
    for r in ratings:
        positive = r["int_score"] >= threshold
        op = ">=" if positive else "<"
        out.append(
            {
                "id": r["id"],
                "text": texts[r["id"]],
                "task": task,
                "similarity": r.get("similarity", math.nan),
                "correlation": math.nan,
                "label": "positive" if positive else "negative",
                "reason": f"{'positive' if positive else 'negative'}: rated {r['int_score']} "
                f"{op} {threshold}{by}",
                "source": RATING,
                "score": r["score"],
                "int_score": r["int_score"],
            }
        )
    return out


def write_rating_labels(
    path: str | os.PathLike,
    task: str,
    ratings: list[dict],
    texts: Mapping[str, str],
    threshold: int,
    model: str = "",
) -> Path:
    """The rated rows as a distill labels file (``source = "rating"``, plus score columns)."""
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    schema = label_schema(
        [("source", pa.string()), ("score", pa.float64()), ("int_score", pa.int64())]
    )
    rows = rating_label_rows(task, ratings, texts, threshold, model)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with AtomicWriter(p) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    return p


def preview_prompts(
    docs: str | os.PathLike | Sequence[str],
    config: RateConfig,
    prompts: Mapping[str, TaskPrompt] | None = None,
    indexes_dir: str | os.PathLike | None = "indexes",
    reader=None,
) -> dict[str, dict[str, Any]]:
    """Per task, the prompt its first selected document would be sent with; asks nothing.

    Returns ``{task: {"id", "version", "system", "prompt", "documents"}}`` (``documents``: how
    many the run would rate).
    """
    from retriever.confirm.docs import open_docs

    rd = reader or config.reader.reader()
    ds = open_docs(docs, rd)
    tasks = list(config.tasks) or list(ds.score_tasks)
    if not tasks:
        raise ConfigError("no task to rate: pass --task (a plain corpus has no score tasks)")
    prompts = prompts or load_prompts(tasks, config, indexes_dir)
    stage = RatingStage(config, prompts, ".", progress=False)
    out: dict[str, dict[str, Any]] = {}
    for t, tc in ds.select(tasks, config.candidate_rule()).items():
        chosen = np.nonzero(tc.candidate | tc.random_negative)[0]
        first = next(ds.iter_docs({ds.ids[chosen[0]]}), None) if len(chosen) else None
        text = first.text[: config.max_chars] if first is not None else ""
        out[t] = {
            "id": first.id if first is not None else None,
            "version": stage.version(t),
            "system": prompts[t].system,
            "prompt": prompts[t].build(text),
            "documents": int(len(chosen)),
        }
    return out


def read_ratings(out_dir: str | os.PathLike, task: str):
    """``OUT/ratings/<task>.parquet`` as a ``pyarrow.Table``.

    Raises:
        InputError: no ratings for ``task`` there.
    """
    from retriever.errors import InputError

    pq = require("pyarrow.parquet")
    p = Path(out_dir) / "ratings" / f"{task}.parquet"
    if not p.is_file():
        raise InputError(f"no ratings of task {task!r} in {out_dir} (run `retriever rate` first)")
    return pq.read_table(p)


def rate_docs(
    docs: str | os.PathLike | Sequence[str],
    out: str | os.PathLike,
    config: RateConfig,
    prompts: Mapping[str, TaskPrompt] | None = None,
    indexes_dir: str | os.PathLike | None = "indexes",
    reader=None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Rate the documents of ``docs`` (a score folder or corpus paths) into ``out``.

    Returns the summary (also ``OUT/summary.json``).
    """
    from retriever.confirm.docs import open_docs

    rd = reader or config.reader.reader()
    ds = open_docs(docs, rd)
    tasks = list(config.tasks) or list(ds.score_tasks)
    if prompts is None:
        prompts = load_prompts(tasks, config, indexes_dir)
    return RatingStage(config, prompts, out, progress=progress).run(ds)
