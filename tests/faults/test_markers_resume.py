"""Case 2 and 3: done markers know their input (a replaced shard is redone); a failure marker is
cleared once the shard succeeds; temp names are unique to their writer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retriever.corpus import shard_name
from retriever.executors import read_done, run_sharded
from retriever.io import AtomicWriter, is_temp, sweep_temp, temp_path
from retriever.manifest import DoneMarkers, shard_fingerprint
from retriever.stats import Stats

pytestmark = pytest.mark.faults


class CountLines:
    """Per-shard function: counts lines; raises on a shard whose text says FAIL."""

    __name__ = "CountLines"

    def __call__(self, shard: str, rank: int) -> Stats:
        text = Path(shard).read_text()
        if "FAIL" in text:
            raise ValueError(f"cannot read {shard}")
        st = Stats()
        st.inc("seen", len(text.splitlines()))
        return st


def _bump(p: Path) -> None:
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_marker_is_void_once_the_shard_is_replaced(tmp_path):
    shard = tmp_path / "c" / "s.jsonl"
    shard.parent.mkdir()
    shard.write_text("a\nb\n")
    m = DoneMarkers(tmp_path / "done")
    m.write(str(shard), {"stats": {"counts": {"seen": 2}}})
    assert m.read(str(shard))["stats"]["counts"]["seen"] == 2
    shard.write_text("a\nb\nc\n")  # another file under the same name
    assert m.read(str(shard)) is None
    m.write(str(shard), {"x": 1})
    _bump(shard)  # same size, rewritten later (a re-download)
    assert m.read(str(shard)) is None


def test_parquet_fingerprint_has_footer_rows(tmp_path):
    p = tmp_path / "s.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "c"]}), p)
    assert shard_fingerprint(str(p))["rows"] == 3


def test_marker_from_before_fingerprints_is_trusted_only_if_newer(tmp_path):
    shard = tmp_path / "s.jsonl"
    shard.write_text("a\n")
    m = DoneMarkers(tmp_path / "done")
    m.path(str(shard)).parent.mkdir()
    m.path(str(shard)).write_text('{"stats": {"counts": {"seen": 1}}}')
    assert m.read(str(shard)) is not None
    time.sleep(0.01)
    shard.write_text("b\n")
    os.utime(shard, (time.time() + 5, time.time() + 5))
    assert m.read(str(shard)) is None


def test_hand_edited_marker_means_redo(tmp_path):
    shard = tmp_path / "s.jsonl"
    shard.write_text("a\n")
    m = DoneMarkers(tmp_path / "done")
    m.write(str(shard), {"x": 1})
    m.path(str(shard)).write_text("{not json")
    assert m.read(str(shard)) is None


def test_run_sharded_redoes_a_replaced_shard_and_clears_failures(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    a, b = corpus / "a.jsonl", corpus / "b.jsonl"
    a.write_text("1\n2\n")
    b.write_text("FAIL\n")
    kw = dict(
        executor="local", workers=1, logging_dir=tmp_path / "logs", done_dir=tmp_path / "done"
    )
    r1 = run_sharded(CountLines(), [str(a), str(b)], **kw)
    assert set(r1.failed) == {str(b)} and r1.stats.counts["seen"] == 2
    b.write_text("x\ny\nz\n")  # the re-downloaded shard
    a.write_text("1\n2\n3\n4\n")  # replaced after it was done
    r2 = run_sharded(CountLines(), [str(a), str(b)], **kw)
    assert r2.complete and not r2.failed
    assert read_done(tmp_path / "done", str(a)).counts["seen"] == 4
    assert r2.stats.counts["seen"] == 7
    assert not list((tmp_path / "logs" / "failed").glob("*.json"))


def test_failed_marker_of_a_done_shard_is_cleared_on_rerun(tmp_path):
    """What two identical concurrent runs used to leave: done and failed for the same shard."""
    a = tmp_path / "a.jsonl"
    a.write_text("1\n")
    kw = dict(
        executor="local", workers=1, logging_dir=tmp_path / "logs", done_dir=tmp_path / "done"
    )
    run_sharded(CountLines(), [str(a)], **kw)
    failed = tmp_path / "logs" / "failed" / f"{shard_name(str(a))}.json"
    failed.parent.mkdir(parents=True, exist_ok=True)
    failed.write_text('{"shard": "x", "error": "stale"}')
    r = run_sharded(CountLines(), [str(a)], **kw)
    assert r.complete and not failed.exists()


def test_temp_names_are_unique_per_writer(tmp_path):
    target = tmp_path / "out.parquet"
    w1, w2 = AtomicWriter(target), AtomicWriter(target)
    assert w1.tmp != w2.tmp and is_temp(w1.tmp) and is_temp(temp_path(target))
    with w1 as t1, w2 as t2:
        t1.write_bytes(b"one")
        t2.write_bytes(b"two")
    assert target.read_bytes() in (b"one", b"two") and not list(tmp_path.glob("*.tmp"))


def test_sweep_removes_only_writer_temps(tmp_path):
    (tmp_path / "sub").mkdir()
    left = temp_path(tmp_path / "sub" / "x.parquet")
    left.write_bytes(b"partial")
    keep = tmp_path / "notes.tmp"
    keep.write_text("a user's file")
    assert sweep_temp(tmp_path) == 1
    assert not left.exists() and keep.exists()


def _fake_score_folder(out: Path, shards: dict[str, int], dim: int = 8) -> None:
    """A score folder as ``ingest_store`` reads it: manifest, done markers, scores parquets."""
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    (out / "done").mkdir(parents=True)
    (out / "scores").mkdir()
    (out / "manifest.json").write_text(json.dumps({"settings": {"model": "m", "dim": dim}}))
    for name, n in shards.items():
        (out / "done" / f"{name}.json").write_text("{}")
        vec = rng.standard_normal((n, dim)).astype("float32")
        cols = {
            "id": [f"{name}:{i}" for i in range(n)],
            "shard": [name] * n,
            "row": list(range(n)),
            "preview": ["text"] * n,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), dim),
        }
        pq.write_table(pa.table(cols), out / "scores" / f"{name}.parquet")


def test_store_ingest_marker_has_one_path_for_writer_and_clearer(tmp_path):
    pytest.importorskip("lancedb")
    from retriever.score import ingest_store
    from retriever.store import CorpusStore, forget_ingested, ingest_marker

    out = tmp_path / "out"
    _fake_score_folder(out, {"corpus__a": 3, "corpus__b": 5})
    assert ingest_store(out) == 8
    for name, n in (("corpus__a", 3), ("corpus__b", 5)):
        mark = ingest_marker(out, name)
        assert mark.exists() and mark.parent.name == "store_ingested"
        assert __import__("json").loads(mark.read_text())["rows"] == n
    assert ingest_store(out) == 0  # every marker found where the writer put it
    forget_ingested(out, "corpus__b")  # what a rescored shard does (ScoreJob.score_shard)
    assert not ingest_marker(out, "corpus__b").exists()
    # taken again, never duplicated, and only that shard: its 5 rows replaced, corpus__a's kept
    assert ingest_store(out) == 5
    assert ingest_marker(out, "corpus__b").exists()
    assert CorpusStore(out / "store").count() == 8
    forget_ingested(out, "corpus__never")  # no marker: nothing to do, no error


def test_a_relative_shard_of_an_older_score_folder_is_a_clear_error_elsewhere(
    tmp_path, monkeypatch
):
    import json

    from retriever.errors import InputError
    from retriever.score.job import recorded_shards

    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl").write_text('{"text": "x"}\n')
    (out / "shards.json").write_text(json.dumps({"corpus__a": "corpus/a.jsonl"}))
    monkeypatch.chdir(tmp_path)  # where that folder was scored: read as before
    assert recorded_shards(out) == {"corpus__a": "corpus/a.jsonl"}
    monkeypatch.chdir(out)
    with pytest.raises(InputError, match=r"relative to the folder .*retriever score.* ran in"):
        recorded_shards(out)
    (out / "shards.json").write_text(json.dumps({"x": "hf://datasets/o/n/x.parquet"}))
    assert recorded_shards(out) == {"x": "hf://datasets/o/n/x.parquet"}  # Hub shards as they are


def test_one_file_has_one_shard_name_however_it_is_spelled(tmp_path, monkeypatch):
    from retriever.corpus.sharding import list_shards

    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.jsonl").write_text('{"text": "x"}\n')
    monkeypatch.chdir(tmp_path)
    spellings = [
        "corpus/a.jsonl",
        "./corpus/a.jsonl",
        str(corpus / "a.jsonl"),
        "corpus/sub/../a.jsonl",
    ]
    monkeypatch.chdir(corpus)
    spellings_inside = ["a.jsonl", "./a.jsonl", "../corpus/a.jsonl"]
    names = {shard_name(s) for s in spellings_inside}
    assert [shard_name(s) for s in list_shards(["."])] == ["corpus__a"]
    monkeypatch.chdir(tmp_path)
    names |= {shard_name(s) for s in spellings}
    assert names == {"corpus__a"}
    markers = DoneMarkers(tmp_path / "done")
    assert {markers.path(s) for s in spellings} == {tmp_path / "done" / "corpus__a.json"}
    # one file given twice is one shard (its first spelling), scored once
    assert list_shards(["corpus/a.jsonl", str(corpus / "a.jsonl"), "corpus"]) == ["corpus/a.jsonl"]
