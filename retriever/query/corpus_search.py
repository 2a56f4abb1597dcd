"""Searching the corpus store for the query service: in memory (FAISS) or in the store (LanceDB).

A request's filter (:class:`CorpusFilter`: ``score_<task> >= x``, a cluster) is checked once and
applied by either searcher:

* :class:`MemorySearcher` reads the store once: its vectors into a FAISS inner-product index
  (exact below :data:`IVF_MIN_ROWS` rows, IVF-Flat with ``sqrt(n)`` lists above) and its other
  columns into one Arrow table, so a query costs about a millisecond and its rows are fetched by
  position (``take``), not by a second query. Filters become a row mask (numpy over the score
  columns) handed to FAISS as an ID selector.
* :class:`StoreSearcher` asks LanceDB each time (its IVF-PQ index, ``prefilter`` for filters):
  for stores larger than the memory cap, or remote ones.

:func:`open_searcher` picks one (``mode="auto"``: memory when the vectors and columns fit in
``memory_mb``). Both return, per query vector, hits ``{id, shard, row, score, preview, <extra
columns>}`` best first, ``score`` being the cosine similarity.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from retriever._deps import require
from retriever.errors import ConfigError
from retriever.names import SCORE, TOPK, score_kind, score_name

if TYPE_CHECKING:
    from retriever.store import CorpusStore

log = logging.getLogger(__name__)

SEARCH_MODES = ("auto", "memory", "store")
IVF_MIN_ROWS = 20_000  # below: exact search (a 20k x 384 scan is ~2 ms), above: IVF-Flat
TRAIN_PER_LIST = 64  # k-means training points per IVF list (FAISS warns below 39)
BASE = ("id", "shard", "row", "preview")


@dataclass(frozen=True)
class CorpusFilter:
    """Which documents a corpus query may return: ``score_<task> >= x`` for each ``(task, x)`` of
    ``min_score``, and ``cluster_id == cluster`` when ``cluster`` is given (both checked by the
    caller)."""

    min_score: tuple[tuple[str, float], ...] = ()
    cluster: str | None = None

    def __bool__(self) -> bool:
        return bool(self.min_score) or self.cluster is not None

    def where(self) -> str | None:
        """The same filter as a LanceDB SQL ``WHERE`` clause (None: no filter)."""
        parts = [f"`{score_name(SCORE, task)}` >= {float(x)!r}" for task, x in self.min_score]
        if self.cluster is not None:
            from retriever.store import sql_str

            parts.append(f"cluster_id = {sql_str(str(self.cluster))}")
        return " AND ".join(parts) or None


def _estimate_mb(store: CorpusStore) -> float:
    """Memory of the store read in: vectors (float32) plus ~400 bytes of other columns per row."""
    return store.count() * (store.dim * 4 + 400) / 2**20


def open_searcher(
    store: CorpusStore,
    mode: str = "auto",
    memory_mb: int = 4096,
    nprobes: int = 32,
    refine_factor: int = 4,
) -> MemorySearcher | StoreSearcher:
    """The searcher of ``store``: ``"memory"``, ``"store"``, or ``"auto"`` (memory when it fits in
    ``memory_mb``, else the store)."""
    if mode not in SEARCH_MODES:
        raise ConfigError(f"search must be one of {SEARCH_MODES}, got {mode!r}")
    need = _estimate_mb(store)
    if store.count() == 0:  # nothing to read in; LanceDB answers [] for an empty store
        mode = "store"
    if mode == "auto":
        mode = "memory" if need <= memory_mb else "store"
        if mode == "store":
            log.info(
                "store %s needs ~%.0f MB in memory (> --memory-mb %d): searching it in LanceDB",
                store.uri,
                need,
                memory_mb,
            )
    if mode == "memory":
        return MemorySearcher(store, nprobes=nprobes)
    return StoreSearcher(store, nprobes=nprobes, refine_factor=refine_factor)


class StoreSearcher:
    """Each query asks LanceDB (the store's ANN index when it has one)."""

    mode = "store"

    def __init__(self, store: CorpusStore, nprobes: int = 32, refine_factor: int = 4):
        self.store = store
        self.nprobes = nprobes
        self.refine_factor = refine_factor
        cols = store.columns()
        self.extra = tuple(c for c in cols if score_kind(c) in (SCORE, TOPK) or c == "cluster_id")
        self.rows = store.count()
        self.ann = bool(store.has_ann_index())

    def search(self, xq: np.ndarray, k: int, flt: CorpusFilter) -> list[list[dict[str, Any]]]:
        where = flt.where()
        return [
            self.store.search(
                vec,
                k,
                nprobes=self.nprobes,
                refine_factor=self.refine_factor,
                where=where,
                extra_columns=self.extra,
            )
            for vec in xq
        ]

    def describe(self) -> dict[str, Any]:
        return {"search": self.mode, "ann_index": self.ann}


class MemorySearcher:
    """The store read into memory once: vectors in a FAISS index, other columns in Arrow.

    Args:
        store: the corpus store to read.
        nprobes: IVF lists searched per query (IVF only; filtered queries search more, see
            :meth:`search`).
        ivf_min_rows: from this many rows on, IVF-Flat with ``sqrt(rows)`` lists; exact below.
        seed: k-means seed of the IVF lists.

    Memory: ``rows x (dim x 4 + ~400)`` bytes (100k rows of 384 dimensions: ~190 MB).
    """

    mode = "memory"

    def __init__(
        self,
        store: CorpusStore,
        nprobes: int = 32,
        ivf_min_rows: int = IVF_MIN_ROWS,
        seed: int = 0,
    ):
        faiss = require("faiss")
        t0 = time.perf_counter()
        self.store = store
        cols = store.columns()
        self.extra = tuple(c for c in cols if score_kind(c) in (SCORE, TOPK) or c == "cluster_id")
        keep = [c for c in (*BASE, *self.extra) if c in cols]
        xb, self.table = _read_store(store, keep)  # xb: [n, dim] unit rows
        self.rows = self.table.num_rows
        self._scores = {
            c: np.asarray(self.table.column(c).to_numpy(zero_copy_only=False), dtype=np.float32)
            for c in self.extra
            if score_kind(c) == SCORE
        }
        self._clusters: tuple[dict[Any, int], np.ndarray] | None = None
        if "cluster_id" in self.extra:
            enc = self.table.column("cluster_id").dictionary_encode().combine_chunks()
            self._clusters = (
                {v: i for i, v in enumerate(enc.dictionary.to_pylist())},
                enc.indices.to_numpy(zero_copy_only=False),
            )
        d = store.dim
        if self.rows >= ivf_min_rows:
            self.nlist = max(1, int(math.sqrt(self.rows)))
            index = faiss.IndexIVFFlat(
                faiss.IndexFlatIP(d), d, self.nlist, faiss.METRIC_INNER_PRODUCT
            )
            n_train = min(self.rows, TRAIN_PER_LIST * self.nlist)
            sample = np.random.default_rng(seed).choice(self.rows, n_train, replace=False)
            index.cp.seed = seed
            index.train(xb[np.sort(sample)])
            index.add(xb)
            self.nprobe = min(nprobes, self.nlist)
        else:
            self.nlist = 0
            index = faiss.IndexFlatIP(d)
            index.add(xb)
            self.nprobe = 0
        del xb  # FAISS holds its own copy
        self.index = index
        _trim_heap()
        self.load_seconds = time.perf_counter() - t0
        log.info(
            "corpus store %s in memory: %d rows, %s, %.1fs",
            store.uri,
            self.rows,
            f"IVF-Flat {self.nlist} lists, nprobe {self.nprobe}" if self.nlist else "exact",
            self.load_seconds,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "search": self.mode,
            "index": f"IVF{self.nlist},Flat" if self.nlist else "Flat",
            "nprobe": self.nprobe,
            "load_s": round(self.load_seconds, 2),
        }

    def mask(self, flt: CorpusFilter) -> np.ndarray | None:
        """``[rows]`` bool: the rows passing ``flt`` (None: no filter)."""
        if not flt:
            return None
        keep = np.ones(self.rows, dtype=bool)
        for task, x in flt.min_score:
            keep &= self._scores[score_name(SCORE, task)] >= np.float32(x)
        if flt.cluster is not None:
            if self._clusters is None:  # no cluster_id column: no row is in the cluster
                return np.zeros(self.rows, dtype=bool)
            codes, idx = self._clusters
            code = codes.get(flt.cluster)
            if code is None:
                return np.zeros(self.rows, dtype=bool)
            keep &= idx == code
        return keep

    def search(self, xq: np.ndarray, k: int, flt: CorpusFilter) -> list[list[dict[str, Any]]]:
        """Per row of ``xq`` (unit vectors ``[n, dim]``), the ``k`` nearest rows passing ``flt``.

        With a filter keeping a fraction ``f`` of the rows, IVF searches ``nprobe / f`` lists (the
        same expected number of candidates), and every list when that finds fewer than ``k``
        passing rows, so the hits are the nearest passing rows as far as IVF finds them.
        """
        xq = np.ascontiguousarray(xq, dtype=np.float32).reshape(-1, self.store.dim)
        keep = self.mask(flt)
        if keep is None:
            D, I = self._search(xq, k, self.nprobe, None)
        else:
            n_keep = int(keep.sum())
            if n_keep == 0:
                return [[] for _ in range(len(xq))]
            kk = min(k, n_keep)
            nprobe = min(self.nlist, math.ceil(self.nprobe * self.rows / n_keep))
            D, I = self._search(xq, kk, nprobe, keep)
            if self.nlist and nprobe < self.nlist and (I < 0).any():
                D, I = self._search(xq, kk, self.nlist, keep)
        return [self._hits(d, i) for d, i in zip(D, I, strict=True)]

    def _search(self, xq, k, nprobe, keep):
        faiss = require("faiss")
        sel = bits = None
        if keep is not None:
            bits = np.packbits(keep, bitorder="little")
            sel = faiss.IDSelectorBitmap(self.rows, faiss.swig_ptr(bits))
        if self.nlist:
            params = faiss.SearchParametersIVF(nprobe=nprobe, sel=sel)
        else:
            params = faiss.SearchParameters(sel=sel) if sel is not None else None
        D, I = self.index.search(xq, k, params=params)  # D: [n, k] cosine, I: [n, k] row positions
        del bits  # the selector reads it during the search only
        return D, I

    def _hits(self, d: np.ndarray, i: np.ndarray) -> list[dict[str, Any]]:
        ok = i >= 0
        pos, scores = i[ok], d[ok]
        if not len(pos):
            return []
        cols = {c: self.table.column(c).take(pos).to_pylist() for c in self.table.column_names}
        return [
            {**{c: v[j] for c, v in cols.items()}, "score": float(scores[j])}
            for j in range(len(pos))
        ]


def _read_store(store: CorpusStore, columns: list[str]):
    """``(vectors [n, dim] float32 unit rows, the other columns as one Arrow table)``, read batch
    by batch (a whole-table read held ~4x the table in memory at its peak)."""
    pa = require("pyarrow")
    vecs, parts = [], []
    for batch in store.iter_batches([*columns, "vector"]):
        flat = batch.column("vector").flatten()
        vecs.append(np.asarray(flat, dtype=np.float32).reshape(-1, store.dim))
        parts.append(batch.select(columns))
    xb = np.concatenate(vecs) if vecs else np.zeros((0, store.dim), dtype=np.float32)
    del vecs
    xb /= np.maximum(np.linalg.norm(xb, axis=1, keepdims=True), 1e-12)
    table = (
        pa.Table.from_batches(parts).combine_chunks()
        if parts
        else pa.table({c: pa.array([], type=pa.string()) for c in columns})
    )
    return xb, table


def _trim_heap() -> None:
    """Give the scan's freed buffers back to the OS (glibc keeps them: +500 MB of RSS for a
    100k-row store read once, 35 MB after ``malloc_trim``); a no-op elsewhere."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass
    require("pyarrow").default_memory_pool().release_unused()
