"""The query service's engine: the embedder, the task indexes and the corpus store, loaded once.

:class:`QueryService` answers plain Python calls (``gold``, ``corpus``, ``health``,
``manifests``); :mod:`retriever.serve.app` only maps HTTP onto them. Every check of a request
(texts, k, tasks, filters) is here and raises :class:`RequestError` with the HTTP status to answer.

Concurrent requests share forwards (:class:`EmbedBatcher`): texts that arrive while a forward runs
go into the next forward together, so eight clients cost about one batched forward each round
instead of eight forwards fighting for the cores.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retriever.embed import load_embedder
from retriever.embed.embedder import canonical_model_id
from retriever.errors import ConfigError, InputError, ModelMismatchError, RequestError
from retriever.names import SCORE, TOPK, score_name, score_tasks
from retriever.query.corpus_search import SEARCH_MODES, CorpusFilter, open_searcher

log = logging.getLogger(__name__)

SERVE_PAD_MULTIPLE = 32  # token positions; see SentenceEmbedder(pad_multiple=...)
SERVE_WARM_BATCH = 8  # shapes of batches up to this many texts are compiled at start
# ServeConfig's integer limits that must be >= 1 (the CLI adds one --flag per name)
POSITIVE_INT_FIELDS = (
    "max_k",
    "max_texts",
    "max_text_chars",
    "max_body_bytes",
    "nprobes",
    "refine_factor",
    "max_batch",
    "memory_mb",
    "lanes",
)


@dataclass(frozen=True)
class ServeConfig:
    """Settings of ``retriever serve`` (the CLI's options are these fields).

    Args:
        indexes: task index folders (``indexes/<task>``) searched by ``/gold``.
        store: score folder (``retriever score --out``) or LanceDB URI, searched by ``/corpus``.
            At least one of ``indexes`` / ``store``.
        model: embedding model (default: the one the indexes and the store were built with).
        backend: embedder backend: auto, torch, openvino.
        host: address to listen on.
        port: port to listen on (0: a free one, printed at start).
        max_k: largest ``k`` a request may ask.
        max_texts: most texts in one request.
        max_text_chars: longest text accepted (characters; the model reads ~1,000 anyway).
        max_body_bytes: largest request body in bytes (413 above it).
        nprobes: IVF partitions searched in the corpus store.
        refine_factor: ANN candidates re-ranked exactly, per hit (LanceDB only).
        search: corpus search: memory (the store read once into FAISS and an Arrow table, about
            a millisecond a query), store (LanceDB each query), auto (memory when it fits in
            ``memory_mb``).
        memory_mb: most memory (MB) search auto may give the corpus store (vectors + columns).
        threads: CPU threads per embedding forward (default: 1 on machines with <= 2 CPUs, else
            torch's: ``OMP_NUM_THREADS`` or every core; see docs/serve.md). Set by
            :func:`~retriever.serve.run_server` for the whole process
            (:func:`default_threads`). On a 2-core machine 2 threads were faster when the box
            was quiet (8 clients: 82 vs 60 QPS) and slower under load (0.76x): 1 is the default
            there.
        max_batch: most texts per embedding forward across concurrent requests.
        lanes: embedding forwards run at once, each on its own OpenVINO stream of ``threads``
            threads (2 on a quiet 2-core machine: 1.5x the queries of 1 at 8 clients; slower
            under load; docs/serve.md). More lanes use more cores for concurrent requests.
        max_seq_length: query truncation in tokens (default: the model's, as the store was
            embedded; shorter is faster but moves the hits, see docs/serve.md). The model's is
            256 for all-MiniLM-L6-v2; docs/serve.md: top-10 overlap 0.63-0.86 at 128.
    """

    indexes: tuple[str, ...] = ()
    store: str | None = None
    model: str | None = None
    backend: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    max_k: int = 100
    max_texts: int = 64
    max_text_chars: int = 20_000
    max_body_bytes: int = 2_000_000
    nprobes: int = 32
    refine_factor: int = 4
    max_batch: int = 64
    search: str = "auto"
    memory_mb: int = 4096
    threads: int | None = None
    lanes: int = 1
    max_seq_length: int | None = None

    def __post_init__(self):
        if not self.indexes and not self.store:
            raise ConfigError(
                "serve needs --index (task gold) and/or --corpus-store (scored corpus)"
            )
        for name in POSITIVE_INT_FIELDS:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("threads", "max_seq_length"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.search not in SEARCH_MODES:
            raise ConfigError(f"search must be one of {SEARCH_MODES}, got {self.search!r}")
        if not 0 <= int(self.port) < 65536:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")


def default_threads() -> int | None:
    """Threads per forward when ``--threads`` is not given: 1 with at most 2 CPUs usable (on
    2 cores a second thread paid only while the other core was free: 0.76x under load), else
    ``None`` (torch's own setting)."""
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return 1 if cpus <= 2 else None


class EmbedBatcher:
    """Embeds the texts of concurrent callers together, ``lanes`` forwards at a time.

    A caller queues its texts, then takes a free lane: if another caller's forward already
    embedded them it returns at once; else it embeds everything queued (up to ``max_batch``
    texts, its own among them) for everyone. So a lone request runs its forward in its own
    thread (no hand-off to another thread, which cost 10-25 ms on a loaded 2-core machine), and
    requests arriving while every lane is busy share the next forward instead of fighting for the
    cores. Each lane is used by one thread at a time (an OpenVINO request is not thread-safe);
    with ``lanes`` > 1 the embedder's ``encode(texts, lane=i)`` runs that many forwards at once.
    """

    def __init__(self, embedder, max_batch: int = 64, lanes: int = 1):
        self.embedder = embedder
        self.max_batch = max_batch
        self.lanes = max(1, int(lanes))
        self._queue: list[tuple[list[str], Future]] = []
        self._queue_lock = threading.Lock()
        self._free = list(range(self.lanes))  # lanes not in a forward
        self._lane_free = threading.Semaphore(self.lanes)
        self.forwards = 0
        self.texts = 0
        self.forward_seconds = 0.0  # wall time inside forwards, summed over lanes

    def encode(self, texts: list[str]) -> np.ndarray:
        """``[len(texts), dim]`` unit vectors."""
        fut: Future = Future()
        with self._queue_lock:
            self._queue.append((list(texts), fut))
        while True:
            with self._lane_free:  # a free lane
                with self._queue_lock:
                    if not any(f is fut for _, f in self._queue):
                        break  # a forward took these texts: its result comes in fut
                    lane = self._free.pop()
                try:
                    self._forward(lane)
                finally:
                    with self._queue_lock:
                        self._free.append(lane)
        return fut.result()

    def close(self) -> None:
        """Nothing to stop (no thread of its own); kept so callers can close every service part."""

    def _forward(self, lane: int) -> None:
        with self._queue_lock:  # the oldest jobs first, whole jobs, at least one
            n, take = 0, 0
            while take < len(self._queue) and (
                take == 0 or n + len(self._queue[take][0]) <= self.max_batch
            ):
                n += len(self._queue[take][0])
                take += 1
            jobs, self._queue[:take] = self._queue[:take], []
        texts = [t for job, _ in jobs for t in job]
        t0 = time.perf_counter()
        try:
            xq = (
                self.embedder.encode(texts, lane=lane)
                if self.lanes > 1
                else self.embedder.encode(texts)
            )
        except Exception as e:  # hand the error to every waiting request
            for _, fut in jobs:
                fut.set_exception(e)
            return
        with self._queue_lock:
            self.forwards += 1
            self.texts += len(texts)
            self.forward_seconds += time.perf_counter() - t0
        start = 0
        for job, fut in jobs:
            fut.set_result(xq[start : start + len(job)])
            start += len(job)


class QueryService:
    """Loads the embedder, the task indexes and the corpus store once; answers queries.

    Args:
        config: the :class:`ServeConfig`.
        embedder: an already loaded embedder (default: the cached one of the indexes' model).

    Raises:
        InputError: an index or store is missing; two indexes hold the same task.
        ModelMismatchError: the indexes / store / embedder are of different models.
    """

    def __init__(self, config: ServeConfig, embedder=None):
        from retriever.query.cache import open_index, open_store
        from retriever.query.search import check_store_embedder

        t0 = time.perf_counter()
        self.config = config
        self.indexes: dict[str, Any] = {}
        for path in config.indexes:
            gi = open_index(path)
            if gi.task in self.indexes:
                raise InputError(f"two --index folders hold task {gi.task!r}; pass each task once")
            self.indexes[gi.task] = gi
        self.store = open_store(config.store) if config.store else None
        models = {gi.model for gi in self.indexes.values()} | (
            {self.store.model} if self.store else set()
        )
        if config.model:
            models.add(canonical_model_id(config.model))
        if len(models) > 1:
            raise ModelMismatchError(
                f"the indexes and the store were built with different models {sorted(models)}; "
                "serve the ones of one model"
            )
        model = config.model or next(iter(models))
        # padded shapes: OpenVINO keeps state per input shape, and queries come in every length;
        # a gathered batch of mixed lengths is split into forwards of similar lengths
        kw: dict[str, Any] = {"group_lengths": True}
        if config.lanes > 1:
            kw["lanes"] = config.lanes
        if config.max_seq_length:
            kw["max_seq_length"] = config.max_seq_length
        self.embedder = embedder or load_embedder(
            model, backend=config.backend, pad_multiple=SERVE_PAD_MULTIPLE, **kw
        )
        for gi in self.indexes.values():
            gi.check_embedder(self.embedder)
        if self.store is not None:
            check_store_embedder(self.store, self.embedder)
        self.model = canonical_model_id(self.embedder.model_id)
        # every (batch, length) shape a few concurrent requests make, compiled now (the
        # embedder loaded here, padded to 32): each new shape costs OpenVINO memory and a slow
        # first forward, so memory stays flat after start
        if embedder is None:
            t_warm = time.perf_counter()
            shapes = self.embedder.warm(min(SERVE_WARM_BATCH, config.max_batch))
            log.info("compiled %d input shapes in %.1fs", shapes, time.perf_counter() - t_warm)
        self.batcher = EmbedBatcher(
            self.embedder, config.max_batch, min(config.lanes, getattr(self.embedder, "lanes", 1))
        )
        cols = self.store.columns() if self.store is not None else []
        self.score_tasks = score_tasks(cols, SCORE)
        self.topk_tasks = score_tasks(cols, TOPK)
        self.has_cluster = "cluster_id" in cols
        self.store_rows = self.store.count() if self.store is not None else 0
        self.ann_index = bool(self.store.has_ann_index()) if self.store is not None else False
        self.searcher = (
            open_searcher(
                self.store,
                config.search,
                config.memory_mb,
                nprobes=config.nprobes,
                refine_factor=config.refine_factor,
            )
            if self.store is not None
            else None
        )
        self.started = time.time()
        self.load_seconds = round(time.perf_counter() - t0, 3)
        self.requests = 0
        self._count_lock = threading.Lock()
        self.seconds = {"embed": 0.0, "search": 0.0}  # per request part, summed over requests
        log.info(
            "query service ready in %.1fs: tasks %s, store %s (%d rows, ANN %s), model %s",
            self.load_seconds,
            sorted(self.indexes),
            self.store.uri if self.store else None,
            self.store_rows,
            self.ann_index,
            self.model,
        )

    # -- request checks ---------------------------------------------------------------------------
    def texts_of(self, text: str | None, texts: list[str] | None) -> list[str]:
        """The request's texts (``text`` xor ``texts``), each non-empty and within the caps."""
        if (text is None) == (texts is None):
            raise RequestError(
                "give exactly one of `text` (a string) or `texts` (a list of strings)"
            )
        items = [text] if text is not None else (texts or [])
        if not items:
            raise RequestError("`texts` is empty; give at least one text")
        cap = self.config.max_texts
        if len(items) > cap:
            raise RequestError(
                f"{len(items)} texts in one request; the limit is {cap} (--max-texts)", 413
            )
        for i, t in enumerate(items):
            where = "text" if texts is None else f"texts[{i}]"
            if not t.strip():
                raise RequestError(f"{where} is empty; give some text to embed")
            if len(t) > self.config.max_text_chars:
                raise RequestError(
                    f"{where} has {len(t):,} characters; the limit is "
                    f"{self.config.max_text_chars:,} (--max-text-chars)",
                    413,
                )
        return items

    def check_k(self, k: int) -> int:
        if not 1 <= k <= self.config.max_k:
            raise RequestError(f"k must be between 1 and {self.config.max_k} (--max-k), got {k}")
        return k

    def _tasks(self, tasks: list[str] | None) -> list[str]:
        if not self.indexes:
            raise RequestError("this server has no task index; start it with --index", 404)
        if tasks is None:
            return sorted(self.indexes)
        if not tasks:
            raise RequestError("`tasks` is empty; leave it out for every task")
        for t in tasks:
            if t not in self.indexes:
                raise RequestError(f"unknown task {t!r}; this server has {sorted(self.indexes)}")
        return list(dict.fromkeys(tasks))

    def filter_of(self, min_score: dict[str, float] | None, cluster: str | None) -> CorpusFilter:
        """The corpus filter of a request: ``score_<task> >= x`` per task, ``cluster_id = c``."""
        parts = []
        for task, x in (min_score or {}).items():
            if task not in self.score_tasks:
                have = (
                    self.score_tasks
                    or "none (re-ingest it with this version: `retriever score` again)"
                )
                raise RequestError(
                    f"unknown task {task!r} in min_score; the store has scores for {have}"
                )
            if not math.isfinite(x):
                raise RequestError(f"min_score[{task!r}] must be a finite number, got {x}")
            parts.append((task, float(x)))
        if cluster is not None:
            if not self.has_cluster:
                raise RequestError("this store has no cluster_id column; leave `cluster` out")
        return CorpusFilter(tuple(parts), None if cluster is None else str(cluster))

    # -- queries ----------------------------------------------------------------------------------
    def gold(
        self, texts: list[str], k: int = 10, tasks: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Per text, per task, the ``k`` nearest gold exemplars ``[{rank, score, id, text,
        source}]``."""
        tasks = self._tasks(tasks)
        self.check_k(k)
        t0 = time.perf_counter()
        xq = self.batcher.encode(texts)  # [n, dim]
        t1 = time.perf_counter()
        out: list[dict[str, Any]] = [{} for _ in texts]
        for t in tasks:
            gi = self.indexes[t]
            D, I = gi.search(xq, k)
            for i, hits in enumerate(gi.hits(D, I)):
                out[i][t] = hits
        self._count(t1 - t0, time.perf_counter() - t1)
        return out

    def corpus(
        self,
        texts: list[str],
        k: int = 10,
        min_score: dict[str, float] | None = None,
        cluster: str | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Per text, the ``k`` nearest corpus documents with their task scores and previews.

        Hits: ``{rank, score, id, shard, row, preview, scores: {task: max cosine},
        topk: {task: mean top-k cosine}, cluster_id}`` (the last three when the store has them).
        With filters, only documents passing every filter are searched.
        """
        if self.store is None or self.searcher is None:
            raise RequestError("this server has no corpus store; start it with --corpus-store", 404)
        self.check_k(k)
        flt = self.filter_of(min_score, cluster)
        t0 = time.perf_counter()
        xq = self.batcher.encode(texts)  # [n, dim]
        t1 = time.perf_counter()
        out = [
            [self._hit(r + 1, h) for r, h in enumerate(hits)]
            for hits in self.searcher.search(xq, k, flt)
        ]
        self._count(t1 - t0, time.perf_counter() - t1)
        return out

    def _count(self, embed_s: float, search_s: float) -> None:
        with self._count_lock:
            self.requests += 1
            self.seconds["embed"] += embed_s
            self.seconds["search"] += search_s

    def _hit(self, rank: int, h: dict[str, Any]) -> dict[str, Any]:
        hit = {
            "rank": rank,
            "score": h["score"],
            "id": h["id"],
            "shard": h["shard"],
            "row": h["row"],
            "preview": h["preview"],
        }
        if self.score_tasks:
            hit["scores"] = {t: _num(h.get(score_name(SCORE, t))) for t in self.score_tasks}
        if self.topk_tasks:
            hit["topk"] = {t: _num(h.get(score_name(TOPK, t))) for t in self.topk_tasks}
        if self.has_cluster:
            hit["cluster_id"] = h.get("cluster_id")
        return hit

    # -- info -------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "model": self.model,
            "dim": int(self.embedder.dim),
            "backend": getattr(self.embedder, "backend", None),
            "tasks": sorted(self.indexes),
            "store": None
            if self.store is None or self.searcher is None
            else {
                "uri": self.store.uri,
                "rows": self.store_rows,
                "ann_index": self.ann_index,
                **self.searcher.describe(),
                "score_tasks": self.score_tasks,
                "cluster": self.has_cluster,
            },
            "limits": {
                "max_k": self.config.max_k,
                "max_texts": self.config.max_texts,
                "max_text_chars": self.config.max_text_chars,
                "max_body_bytes": self.config.max_body_bytes,
            },
            "uptime_s": round(time.time() - self.started, 1),
            "load_s": self.load_seconds,
            "requests": self.requests,
            "embed_forwards": self.batcher.forwards,
            "embedded_texts": self.batcher.texts,
            "lanes": self.batcher.lanes,
            "max_seq_length": int(self.embedder.max_seq_length),
            # seconds summed over requests: embed (queueing + forward), search (+ rows, hits);
            # forward: inside embedding forwards; tokenize / forward / post: the OpenVINO path's
            "seconds": {
                **{k: round(v, 4) for k, v in self.seconds.items()},
                "forwards": round(self.batcher.forward_seconds, 4),
                "embedder": {
                    k: round(v, 4)
                    for k, v in (getattr(self.embedder, "seconds", None) or {}).items()
                },
            },
        }

    def manifests(self) -> dict[str, Any]:
        """The task indexes' manifests and the store's description (plus its score folder's
        manifest when ``--corpus-store`` is a score folder)."""
        from retriever.io import read_json

        out: dict[str, Any] = {
            "indexes": {t: gi.manifest for t, gi in sorted(self.indexes.items())},
            "store": None,
        }
        if self.store is not None:
            out["store"] = {
                "uri": self.store.uri,
                "model": self.store.model,
                "dim": self.store.dim,
                "rows": self.store_rows,
                "ann_index": self.ann_index,
                "columns": self.store.columns(),
            }
            folder = Path(str(self.config.store))
            if (folder / "manifest.json").is_file():
                out["scores"] = read_json(folder / "manifest.json")
        out["config"] = asdict(self.config)
        return out

    def close(self) -> None:
        self.batcher.close()


def _num(x) -> float | None:
    return None if x is None else float(x)
