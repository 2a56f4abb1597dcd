"""Corpus search for the query service: the in-memory FAISS searcher against brute force and
against LanceDB, filters, the request batcher, and the server socket (no model loaded)."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("lancedb")
pytest.importorskip("faiss")

from retriever.query.corpus_search import (  # noqa: E402
    CorpusFilter,
    MemorySearcher,
    StoreSearcher,
    open_searcher,
)
from retriever.store import CorpusStore  # noqa: E402

DIM = 16


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _store(path, n, seed=0, shards=3):
    """A LanceDB store of ``n`` random unit vectors with two task scores and three clusters,
    ingested as ``shards`` shards of awkward sizes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    xb = _unit(rng.standard_normal((n, DIM)))
    st = CorpusStore(path / "store", "test-model", DIM)
    cuts = np.linspace(0, n, shards + 1).astype(int)
    for s, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        cols = {
            "id": [f"d{i}" for i in range(a, b)],
            "shard": [f"s{s}"] * (b - a),
            "row": np.arange(b - a),
            "preview": [f"document {i}" for i in range(a, b)],
            "cluster_id": [f"c{i % 3}" for i in range(a, b)],
            "score_math": pa.array(rng.random(b - a).astype(np.float32)),
            "score_tools": pa.array(rng.random(b - a).astype(np.float32)),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(xb[a:b].ravel()), DIM),
        }
        pq.write_table(pa.table(cols), path / f"s{s}.parquet")
        st.ingest_shard(f"s{s}", path / f"s{s}.parquet")
    return st, xb


def _brute(st, xb, xq, k, keep=None):
    tbl = st.iter_batches(["id", "score_math", "score_tools", "cluster_id"])
    rows = [r for b in tbl for r in b.to_pylist()]
    order = {r["id"]: i for i, r in enumerate(rows)}
    ids = [f"d{i}" for i in range(len(xb))]
    passing = np.array([keep is None or keep(rows[order[i]]) for i in ids])
    out = []
    for q in xq:
        s = np.where(passing, xb @ q, -np.inf)
        top = [j for j in np.argsort(-s, kind="stable")[:k] if np.isfinite(s[j])]
        out.append(([ids[j] for j in top], s[top]))
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("small"), 157)


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("large"), 2_003, seed=1, shards=5)


def _queries(n, seed=7):
    return _unit(np.random.default_rng(seed).standard_normal((n, DIM)))


def test_exact_memory_search_equals_brute_force_and_lancedb(small):
    st, xb = small
    mem = MemorySearcher(st)
    assert mem.nlist == 0 and mem.rows == 157
    lance = StoreSearcher(st)  # no ANN index at this size: LanceDB searches exactly
    xq = _queries(5)
    got, ref = mem.search(xq, 7, CorpusFilter()), lance.search(xq, 7, CorpusFilter())
    for g, r, (want, scores) in zip(got, ref, _brute(st, xb, xq, 7), strict=True):
        assert [h["id"] for h in g] == want == [h["id"] for h in r]
        np.testing.assert_allclose([h["score"] for h in g], scores, atol=1e-5)
        np.testing.assert_allclose([h["score"] for h in r], scores, atol=1e-5)
        for a, b in zip(g, r, strict=True):  # same columns, same values
            assert set(a) == set(b)
            assert (a["shard"], a["row"], a["preview"], a["cluster_id"]) == (
                b["shard"],
                b["row"],
                b["preview"],
                b["cluster_id"],
            )
            assert a["score_math"] == pytest.approx(b["score_math"])


def test_memory_filters_equal_brute_force_and_lancedb(small):
    st, xb = small
    mem, lance = MemorySearcher(st), StoreSearcher(st)
    xq = _queries(4, seed=3)
    cases = [
        (CorpusFilter((("math", 0.5),)), lambda r: r["score_math"] >= np.float32(0.5)),
        (CorpusFilter(cluster="c1"), lambda r: r["cluster_id"] == "c1"),
        (
            CorpusFilter((("math", 0.3),), cluster="c2"),
            lambda r: r["score_math"] >= np.float32(0.3) and r["cluster_id"] == "c2",
        ),
        (CorpusFilter((("math", 0.97),)), lambda r: r["score_math"] >= np.float32(0.97)),
    ]
    for flt, keep in cases:
        want = _brute(st, xb, xq, 10, keep)
        for g, r, (ids, _) in zip(
            mem.search(xq, 10, flt), lance.search(xq, 10, flt), want, strict=True
        ):
            assert [h["id"] for h in g] == ids == [h["id"] for h in r], flt
    assert mem.search(xq, 10, CorpusFilter(cluster="no-such-cluster")) == [[]] * 4
    assert mem.search(xq, 10, CorpusFilter((("math", 2.0),))) == [[]] * 4


def test_ivf_memory_search_finds_the_nearest(large):
    st, xb = large
    mem = MemorySearcher(st, nprobes=8, ivf_min_rows=1_000)
    assert mem.nlist == int(np.sqrt(2_003)) and mem.nprobe == 8
    xq = _queries(20, seed=5)
    want = _brute(st, xb, xq, 10)
    got = mem.search(xq, 10, CorpusFilter())
    recall = np.mean(
        [len({h["id"] for h in g} & set(w)) / 10 for g, (w, _) in zip(got, want, strict=True)]
    )
    assert recall >= 0.6  # 8 of 44 lists of random vectors; every list below is exact
    full = MemorySearcher(st, nprobes=10_000, ivf_min_rows=1_000)  # nprobe = every list
    assert full.nprobe == full.nlist
    for g, (w, scores) in zip(full.search(xq, 10, CorpusFilter()), want, strict=True):
        assert [h["id"] for h in g] == w
        np.testing.assert_allclose([h["score"] for h in g], scores, atol=1e-5)


def test_ivf_filtered_search_widens_until_k_hits(large):
    st, xb = large
    mem = MemorySearcher(st, nprobes=1, ivf_min_rows=1_000)
    xq = _queries(6, seed=11)
    # a filter keeping ~1% of the rows: one list rarely holds 10 of them, so it searches wider
    flt = CorpusFilter((("math", 0.9), ("tools", 0.9)))

    def keep(r):
        return r["score_math"] >= np.float32(0.9) and r["score_tools"] >= np.float32(0.9)

    n_pass = int(mem.mask(flt).sum())
    assert 5 <= n_pass <= 60
    for g, (w, _) in zip(mem.search(xq, 10, flt), _brute(st, xb, xq, 10, keep), strict=True):
        assert len(g) == min(10, n_pass) and [h["id"] for h in g] == w
        assert all(h["score_math"] >= 0.9 and h["score_tools"] >= 0.9 for h in g)


def test_open_searcher_picks_by_memory(small):
    st, _ = small
    assert open_searcher(st, "auto", memory_mb=100).mode == "memory"
    assert open_searcher(st, "auto", memory_mb=1e-6).mode == "store"
    assert open_searcher(st, "store").mode == "store"
    from retriever.errors import ConfigError

    with pytest.raises(ConfigError, match="search must be one of"):
        open_searcher(st, "disk")


def test_corpus_filter_sql_quotes_the_cluster():
    f = CorpusFilter((("rag", 0.5),), cluster="it's")
    assert f.where() == "`score_rag` >= 0.5 AND cluster_id = 'it''s'"
    assert not CorpusFilter() and CorpusFilter().where() is None


class _SlowEmbedder:
    """Vectors that say which text they came from (its number in dimension 0), one forward at a
    time (raises if two forwards overlap), 20 ms each so concurrent callers queue up."""

    dim = 4

    def __init__(self):
        self.busy = threading.Lock()
        self.batches: list[int] = []

    def encode(self, texts):
        if not self.busy.acquire(blocking=False):
            raise AssertionError("two forwards at once")
        try:
            time.sleep(0.02)
            if any(t == "boom" for t in texts):
                raise ValueError("cannot embed boom")
            self.batches.append(len(texts))
            return np.array([[float(t.split()[-1]), 1, 0, 0] for t in texts], dtype=np.float32)
        finally:
            self.busy.release()


def _callers(batcher, n: int, texts_per: int) -> dict:
    """``n`` threads calling ``batcher.encode`` at once (caller ``c`` sends ``c % texts_per + 1``
    texts); ``{c: (texts, vectors)}``, after checking each got its own vectors back."""
    got, errors = {}, []

    def caller(c):
        try:
            texts = [f"caller {c} text {10 * c + j}" for j in range(c % texts_per + 1)]
            got[c] = (texts, batcher.encode(texts))
        except Exception as e:  # noqa: BLE001 - the test reports any
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(c,)) for c in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(got) == n
    for texts, xq in got.values():
        assert xq[:, 0].tolist() == [float(t.split()[-1]) for t in texts]
    return got


def test_batcher_shares_forwards_and_returns_each_callers_vectors():
    from retriever.serve.service import EmbedBatcher

    emb = _SlowEmbedder()
    batcher = EmbedBatcher(emb, max_batch=5)
    got = _callers(batcher, 12, texts_per=3)
    assert batcher.forwards < 12 and max(emb.batches) <= 5  # shared, within max_batch
    assert batcher.texts == sum(len(t) for t, _ in got.values())


def test_batcher_hands_an_error_to_its_callers_only():
    from retriever.serve.service import EmbedBatcher

    batcher = EmbedBatcher(_SlowEmbedder())
    with pytest.raises(ValueError, match="boom"):
        batcher.encode(["boom"])
    assert batcher.encode(["fine 3"])[0, 0] == 3.0


class _LaneEmbedder:
    """Like :class:`_SlowEmbedder` with two lanes: raises if one lane runs two forwards at once;
    records the most forwards running together."""

    dim = 4
    lanes = 2

    def __init__(self):
        self.busy = [threading.Lock() for _ in range(self.lanes)]
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.batches: list[int] = []

    def encode(self, texts, lane=0):
        if not self.busy[lane].acquire(blocking=False):
            raise AssertionError(f"two forwards at once on lane {lane}")
        try:
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            time.sleep(0.02)
            self.batches.append(len(texts))
            return np.array([[float(t.split()[-1]), 1, 0, 0] for t in texts], dtype=np.float32)
        finally:
            with self.lock:
                self.running -= 1
            self.busy[lane].release()


def test_batcher_lanes_run_forwards_side_by_side_each_lane_alone():
    from retriever.serve.service import EmbedBatcher

    emb = _LaneEmbedder()
    batcher = EmbedBatcher(emb, max_batch=3, lanes=2)
    got = _callers(batcher, 16, texts_per=2)
    assert emb.most == 2  # two lanes ran forwards together, never more
    assert max(emb.batches) <= 3 and batcher.forwards == len(emb.batches) < 16
    assert batcher.texts == sum(len(t) for t, _ in got.values()) and batcher.forward_seconds > 0


def test_serve_threads_default_to_one_on_two_cpus(monkeypatch):
    import os

    from retriever.serve.service import default_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert default_threads() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert default_threads() is None  # torch's own setting


def test_server_socket_turns_nagle_off():
    from retriever.serve.server import bind

    sock = bind("127.0.0.1", 0)
    try:
        # without TCP_NODELAY each response waited ~40 ms for the client's delayed ACK
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_serve_config_checks_search_and_threads():
    pytest.importorskip("fastapi")
    from retriever.errors import ConfigError
    from retriever.serve import ServeConfig

    with pytest.raises(ConfigError, match="search must be one of"):
        ServeConfig(store="s", search="disk")
    with pytest.raises(ConfigError, match="threads must be >= 1"):
        ServeConfig(store="s", threads=0)
    with pytest.raises(ConfigError, match="memory_mb must be >= 1"):
        ServeConfig(store="s", memory_mb=0)
    with pytest.raises(ConfigError, match="lanes must be >= 1"):
        ServeConfig(store="s", lanes=0)
    with pytest.raises(ConfigError, match="max_seq_length must be >= 1"):
        ServeConfig(store="s", max_seq_length=0)
    assert ServeConfig(store="s", threads=1, search="memory").threads == 1
