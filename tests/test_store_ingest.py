"""The corpus store follows its score folder shard by shard: a rescored shard's rows are replaced,
the others are left as they are, a killed ingest resumes without a duplicate or a lost row, and the
result is the store a full rebuild makes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("lancedb")

from retriever.score import ingest_store  # noqa: E402
from retriever.store import CorpusStore, forget_ingested, ingest_marker  # noqa: E402

DIM = 16


def _write_shard(out: Path, name: str, n: int, seed: int) -> np.ndarray:
    """A finished shard of a score folder: its done marker and scores parquet (unit vectors)."""
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype("float32")
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    (out / "done" / f"{name}.json").write_text("{}")
    cols = {
        "id": [f"{name}:{i}" for i in range(n)],
        "shard": [name] * n,
        "row": list(range(n)),
        "preview": [f"{name} text {i} seed {seed}" for i in range(n)],
        "score_rag": np.linspace(0, 1, n).astype("float32"),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), DIM),
    }
    pq.write_table(pa.table(cols), out / "scores" / f"{name}.parquet", row_group_size=4)
    return v


def _folder(out: Path, shards: dict[str, int]) -> dict[str, np.ndarray]:
    (out / "done").mkdir(parents=True)
    (out / "scores").mkdir()
    (out / "manifest.json").write_text(json.dumps({"settings": {"model": "m", "dim": DIM}}))
    return {name: _write_shard(out, name, n, seed) for seed, (name, n) in enumerate(shards.items())}


def _rescore(out: Path, name: str, n: int, seed: int) -> np.ndarray:
    """What ``ScoreJob.score_shard`` does to a shard whose file changed."""
    forget_ingested(out, name)
    return _write_shard(out, name, n, seed)


def _content(uri: Path | str) -> list[tuple]:
    st = CorpusStore(uri)
    rows = []
    for b in st.iter_batches(["id", "shard", "row", "preview", "score_rag", "vector"]):
        for r in b.to_pylist():
            rows.append(
                (r["id"], r["shard"], r["row"], r["preview"], r["score_rag"], tuple(r["vector"]))
            )
    return sorted(rows)


def _rebuilt(out: Path, tmp: Path) -> list[tuple]:
    """The store a full rebuild of ``out`` makes: a copy of the folder without store or markers."""
    fresh = tmp / "rebuilt"
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(out, fresh, ignore=shutil.ignore_patterns("store", "store_ingested"))
    ingest_store(fresh)
    return _content(fresh / "store")


class Adds:
    """Records which shards ``CorpusStore.add_shard`` wrote into ``out``'s store, to prove the
    others were not."""

    def __init__(self, monkeypatch, out: Path):
        self.names: list[str] = []
        real = CorpusStore.add_shard

        def add_shard(store, name, path):
            if store.uri == str(out / "store"):
                self.names.append(name)
            return real(store, name, path)

        monkeypatch.setattr(CorpusStore, "add_shard", add_shard)


def test_a_rescored_shard_replaces_only_its_rows(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _folder(out, {"c__a": 5, "c__b": 7, "c__c": 6})
    assert ingest_store(out) == 18
    adds = Adds(monkeypatch, out)
    _rescore(out, "c__b", 9, seed=11)  # more rows, other vectors
    assert ingest_store(out) == 9  # b only: a and c are not written again
    assert adds.names == ["c__b"]
    assert CorpusStore(out / "store").count() == 20
    assert json.loads(ingest_marker(out, "c__b").read_text())["rows"] == 9
    assert json.loads((out / "store.json").read_text())["rows"] == 20
    assert _content(out / "store") == _rebuilt(out, tmp_path)
    assert ingest_store(out) == 0 and adds.names == ["c__b"]  # nothing left to do


def test_a_shard_rescored_smaller_leaves_no_old_row(tmp_path):
    out = tmp_path / "out"
    _folder(out, {"c__a": 5, "c__b": 7})
    ingest_store(out)
    _rescore(out, "c__b", 2, seed=5)
    assert ingest_store(out) == 2
    assert _content(out / "store") == _rebuilt(out, tmp_path)
    ids = [r[0] for r in _content(out / "store")]
    assert len(ids) == len(set(ids)) == 7


@pytest.mark.parametrize(
    "kill_at",
    [
        "first add",  # after the delete, before any row of the shard is back
        "second add",  # some of the shard's rows are back
        "marker",  # every row is back, its marker not yet written
    ],
)
def test_a_killed_ingest_resumes_without_duplicate_or_lost_row(tmp_path, monkeypatch, kill_at):
    import lancedb.table

    import retriever.score.api as api
    import retriever.store as store_mod

    out = tmp_path / "out"
    _folder(out, {"c__a": 5, "c__b": 7, "c__c": 6})
    ingest_store(out)
    _rescore(out, "c__b", 9, seed=11)
    _rescore(out, "c__c", 3, seed=12)
    monkeypatch.setattr(store_mod, "INGEST_BATCH", 4)  # a shard goes in over several appends
    calls = {"add": 0}
    fail_at = {"first add": 1, "second add": 2}.get(kill_at)
    real_add, real_write = lancedb.table.LanceTable.add, api.write_json_atomic

    def add(self, *a, **kw):
        calls["add"] += 1
        if calls["add"] == fail_at:
            raise KeyboardInterrupt  # a kill: not an error ingest_store could handle
        return real_add(self, *a, **kw)

    def write(path, doc):
        if kill_at == "marker" and Path(path).parent.name == "store_ingested":
            raise KeyboardInterrupt
        return real_write(path, doc)

    monkeypatch.setattr(lancedb.table.LanceTable, "add", add)
    monkeypatch.setattr(api, "write_json_atomic", write)
    with pytest.raises(KeyboardInterrupt):
        ingest_store(out)
    assert not ingest_marker(out, "c__b").exists()  # the interrupted shard is still to do
    monkeypatch.setattr(lancedb.table.LanceTable, "add", real_add)
    monkeypatch.setattr(api, "write_json_atomic", real_write)
    adds = Adds(monkeypatch, out)
    assert ingest_store(out) == 12  # b and c again, a untouched
    assert sorted(adds.names) == ["c__b", "c__c"]
    got = _content(out / "store")
    assert got == _rebuilt(out, tmp_path)
    assert len(got) == 5 + 9 + 3 == len({r[0] for r in got})


def test_rows_of_a_shard_no_longer_done_leave_the_store(tmp_path, monkeypatch):
    # a shard rescored and failed this time: no done marker, its old rows are not the folder's
    out = tmp_path / "out"
    _folder(out, {"c__a": 5, "c__b": 7, "c__c": 6})
    ingest_store(out)
    forget_ingested(out, "c__b")
    (out / "done" / "c__b.json").unlink()
    adds = Adds(monkeypatch, out)
    assert ingest_store(out) == 0 and adds.names == []  # deleted, nothing rewritten
    assert CorpusStore(out / "store").count() == 11
    assert _content(out / "store") == _rebuilt(out, tmp_path)


def test_lost_rows_are_put_back_shard_by_shard(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _folder(out, {"c__a": 5, "c__b": 7, "c__c": 6})
    ingest_store(out)
    import lancedb

    lancedb.connect(out / "store").open_table("docs").delete("shard = 'c__c' AND row < 2")
    adds = Adds(monkeypatch, out)
    assert ingest_store(out) == 6 and adds.names == ["c__c"]
    assert _content(out / "store") == _rebuilt(out, tmp_path)


def test_an_unreadable_ingest_marker_redoes_that_shard_only(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _folder(out, {"c__a": 5, "c__b": 7})
    ingest_store(out)
    ingest_marker(out, "c__a").write_text("{trunc")
    adds = Adds(monkeypatch, out)
    assert ingest_store(out) == 5 and adds.names == ["c__a"]
    assert _content(out / "store") == _rebuilt(out, tmp_path)


def test_another_store_uri_gets_every_shard(tmp_path):
    # the markers of the default store do not say the rows are in another one
    out = tmp_path / "out"
    _folder(out, {"c__a": 5, "c__b": 7})
    ingest_store(out)
    other = tmp_path / "elsewhere"
    assert ingest_store(out, str(other)) == 12
    assert _content(other) == _content(out / "store")
    assert ingest_store(out, str(other)) == 0


def test_the_ann_index_stays_valid_when_a_shard_is_replaced(tmp_path):
    out = tmp_path / "out"
    vecs = _folder(out, {"c__a": 300, "c__b": 300})
    ingest_store(out, ann_min_rows=500)
    st = CorpusStore(out / "store")
    assert st.has_ann_index()
    old_b = vecs["c__b"]
    new_b = _rescore(out, "c__b", 300, seed=21)
    assert ingest_store(out, ann_min_rows=500) == 300
    st = CorpusStore(out / "store")
    assert st.has_ann_index() and st.count() == 600
    # the new rows are found, the old ones are gone (no hit at their exact vector)
    for i in (0, 17, 299):
        hit = st.search(new_b[i], k=1)[0]
        assert hit["id"] == f"c__b:{i}" and hit["score"] > 0.999
        assert st.search(old_b[i], k=1)[0]["score"] < 0.999
    # half the table is new since the build (as when it doubles): the index is rebuilt
    assert st.unindexed_rows() == 0
    assert _content(out / "store") == _rebuilt(out, tmp_path)
