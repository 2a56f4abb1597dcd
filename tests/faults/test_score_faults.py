"""The score stage under faults, with the real embedder: truncated shard (case 1), replaced shard
(2), another corpus into the same folder (6), a parquet without the text column (11), a store
left broken by a failed first write (5), a read-only / full output folder (11)."""

from __future__ import annotations

import gzip
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import WEB_TEXT
from faults_helpers import write_jsonl_bytes

from retriever.errors import ResumeError
from retriever.score import read_scores, score_corpus

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def _records(n: int, tag: str) -> list[dict]:
    return [
        {"id": f"{tag}{i}", "text": f"{WEB_TEXT[i % len(WEB_TEXT)]} ({tag} {i})"} for i in range(n)
    ]


def _corpus(tmp_path, **shards: list[dict]):
    """``tmp_path/corpus`` holding one ``<name>.jsonl`` per keyword."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, records in shards.items():
        (corpus / f"{name}.jsonl").write_bytes(write_jsonl_bytes(records))
    return corpus


def _score(tiny_indexes, corpus, out, **kw):
    return score_corpus(
        [str(tiny_indexes["tools"]), str(tiny_indexes["math"])],
        corpus,
        out,
        top_fraction=0.2,
        batch_size=17,
        **kw,
    )


def test_truncated_zst_shard_fails_and_is_redone_once_replaced(tmp_path, tiny_indexes):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good = zstandard.ZstdCompressor().compress(write_jsonl_bytes(_records(300, "z")))
    (corpus / "a.jsonl.zst").write_bytes(good[: len(good) // 2])
    (corpus / "b.jsonl").write_bytes(write_jsonl_bytes(_records(10, "b")))
    out = tmp_path / "out"
    s1 = _score(tiny_indexes, [str(corpus)], out, store=None)
    assert s1["shards"]["failed"] == [str(corpus / "a.jsonl.zst")]
    assert s1["scored"] == 10 and s1["shards"]["done"] == 1  # never 146 of 300 called complete
    (corpus / "a.jsonl.zst").write_bytes(good)  # re-downloaded
    s2 = _score(tiny_indexes, [str(corpus)], out, store=None)
    assert s2["shards"]["failed"] == [] and s2["scored"] == 310 and s2["balanced"]
    assert not list((out / "failed").glob("*.json"))


def test_replaced_shard_is_scored_again(tmp_path, tiny_indexes):
    corpus = _corpus(tmp_path, a=_records(8, "old"))
    out = tmp_path / "out"
    _score(tiny_indexes, [str(corpus)], out, store=None)
    (corpus / "a.jsonl").write_bytes(write_jsonl_bytes(_records(12, "new")))
    s = _score(tiny_indexes, [str(corpus)], out)
    assert s["scored"] == 12 and s["docs_in"] == 12
    ids = set(read_scores(out).column("id").to_pylist())
    assert ids == {f"new{i}" for i in range(12)}
    store = json.loads((out / "store.json").read_text())
    assert store["rows"] == 12


def test_another_corpus_into_the_same_out_is_refused(tmp_path, tiny_indexes):
    c1, c2 = tmp_path / "c1", tmp_path / "c2"
    c1.mkdir()
    c2.mkdir()
    (c1 / "a.jsonl").write_bytes(write_jsonl_bytes(_records(10, "a")))
    (c2 / "b.jsonl").write_bytes(write_jsonl_bytes(_records(6, "b")))
    out = tmp_path / "out"
    _score(tiny_indexes, [str(c1)], out, store=None)
    with pytest.raises(ResumeError, match="not in this corpus"):
        _score(tiny_indexes, [str(c2)], out, store=None)
    s = _score(tiny_indexes, [str(c1), str(c2)], out, store=None)  # a grown corpus resumes
    assert s["docs_in"] == 16


def test_parquet_without_text_column_fails_that_shard_only(tmp_path, tiny_indexes):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"id": ["x"], "body": ["no text column"]}), corpus / "bad.parquet")
    (corpus / "good.jsonl.gz").write_bytes(gzip.compress(write_jsonl_bytes(_records(9, "g"))))
    s = _score(tiny_indexes, [str(corpus)], tmp_path / "out", store=None)
    assert s["scored"] == 9 and s["shards"]["failed"] == [str(corpus / "bad.parquet")]
    failed = json.loads(next((tmp_path / "out" / "failed").glob("*.json")).read_text())
    assert "--text-field" in failed["error"]


def test_store_broken_by_a_failed_first_write_is_rebuilt_by_a_rerun(tmp_path, tiny_indexes):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_bytes(write_jsonl_bytes(_records(10, "a")))
    (corpus / "b.jsonl").write_bytes(write_jsonl_bytes(_records(7, "b")))
    out = tmp_path / "out"
    _score(tiny_indexes, [str(corpus)], out)
    # what a full disk during the table's creation leaves: the folder without its versions
    shutil.rmtree(out / "store" / "docs.lance" / "_versions")
    s = _score(tiny_indexes, [str(corpus)], out)
    assert s["scored"] == 17
    assert json.loads((out / "store.json").read_text())["rows"] == 17
    from retriever.store import CorpusStore

    assert CorpusStore(out / "store").count() == 17


def test_store_missing_rows_is_refilled(tmp_path, tiny_indexes):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_bytes(write_jsonl_bytes(_records(10, "a")))
    out = tmp_path / "out"
    _score(tiny_indexes, [str(corpus)], out)
    from retriever.store import CorpusStore

    CorpusStore(out / "store").reset()  # rows lost, markers still say ingested
    _score(tiny_indexes, [str(corpus)], out)
    assert CorpusStore(out / "store").count() == 10


def test_duplicate_ids_across_shards_are_counted_and_warned(tmp_path, tiny_indexes):
    import logging

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_bytes(write_jsonl_bytes(_records(5, "x")))
    (corpus / "b.jsonl").write_bytes(write_jsonl_bytes(_records(3, "x")))  # x0..x2 again
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("retriever").addHandler(handler)
    try:
        s = _score(tiny_indexes, [str(corpus)], tmp_path / "out", store=None)
    finally:
        logging.getLogger("retriever").removeHandler(handler)
    assert s["scored"] == 8
    assert s["duplicate_ids"]["ids"] == 3 and s["duplicate_ids"]["extra_records"] == 3
    assert any("more than one record" in m for m in seen)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["duplicate_ids"]["ids"] == 3
    # re-thresholding (the run's candidates step, `retriever candidates --threshold`) rewrites
    # summary.json: the duplicates it recorded stay
    from retriever.score import summarize

    again = summarize(tmp_path / "out", top_fraction=0.5)
    assert again["duplicate_ids"]["ids"] == 3 and again["top_fraction"] == 0.5
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["duplicate_ids"]["ids"] == 3


def test_export_from_another_cwd_reads_the_shards_a_relative_corpus_named(
    tmp_path, tiny_indexes, monkeypatch
):
    from retriever.cli import main

    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    (here / "corpus").mkdir(parents=True)
    elsewhere.mkdir()
    (here / "corpus" / "a.jsonl").write_bytes(write_jsonl_bytes(_records(10, "a")))
    (here / "b.jsonl").write_bytes(write_jsonl_bytes(_records(6, "b")))  # a bare file name
    monkeypatch.chdir(here)
    _score(tiny_indexes, ["corpus", "b.jsonl"], "out", store=None)
    recorded = json.loads((here / "out" / "shards.json").read_text())
    assert sorted(recorded) == ["corpus__a", "here__b"]  # named from the absolute path
    assert recorded["corpus__a"] == str(here / "corpus" / "a.jsonl")  # absolute
    assert main(["candidates", "out", "--export", "exp"]) == 0
    want = {t: gzip.open(here / "exp" / f"{t}.jsonl.gz").read() for t in ("tools", "math")}
    assert all(want.values())
    monkeypatch.chdir(elsewhere)
    assert main(["candidates", "../here/out", "--export", "exp"]) == 0
    for t, data in want.items():
        assert gzip.open(elsewhere / "exp" / f"{t}.jsonl.gz").read() == data
    # the same corpus named relatively again, from its folder: a resume, not "two shards"
    monkeypatch.chdir(here)
    s = _score(tiny_indexes, ["corpus", "b.jsonl"], "out", store=None)
    assert s["docs_in"] == 16 and s["balanced"]


def test_a_rerun_with_another_path_spelling_resumes(tmp_path, tiny_indexes, monkeypatch):
    # the same files as `corpus/`, as `./corpus/a.jsonl` + an absolute path, and as `.` from
    # inside the folder: one name per file, so nothing is scored twice and no id changes
    no_ids = [{"text": r["text"]} for r in _records(9, "a")]  # ids are <shard name>:<row>
    corpus = _corpus(tmp_path, a=no_ids, b=_records(6, "b"))
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    s1 = _score(tiny_indexes, ["corpus/"], out)
    files = {p.name: p.stat().st_mtime_ns for p in (out / "scores").glob("*.parquet")}
    markers = {p.name: p.read_bytes() for p in (out / "done").glob("*.json")}
    ids = sorted(read_scores(out).column("id").to_pylist())
    assert sorted(files) == ["corpus__a.parquet", "corpus__b.parquet"] and "corpus__a:0" in ids
    spellings = [
        ["./corpus/a.jsonl", str(corpus / "b.jsonl")],
        [str(corpus), "corpus/b.jsonl"],  # b twice: one shard
        ["corpus/../corpus"],
    ]
    for corpus_args in spellings:
        s2 = _score(tiny_indexes, corpus_args, out)
        assert s2["docs_in"] == s1["docs_in"] == 15 and s2["scored"] == 15
    monkeypatch.chdir(corpus)
    s2 = _score(tiny_indexes, [".", "a.jsonl"], tmp_path / "out")
    assert s2["docs_in"] == 15
    # nothing rescored: the same two outputs, untouched; the same markers, ids and store rows
    assert {p.name: p.stat().st_mtime_ns for p in (out / "scores").glob("*.parquet")} == files
    assert {p.name: p.read_bytes() for p in (out / "done").glob("*.json")} == markers
    assert sorted(read_scores(out).column("id").to_pylist()) == ids
    from retriever.store import CorpusStore

    assert CorpusStore(out / "store").count() == 15
    assert json.loads((out / "shards.json").read_text()) == {
        "corpus__a": str(corpus / "a.jsonl"),
        "corpus__b": str(corpus / "b.jsonl"),
    }


def test_a_folder_holding_a_shard_under_its_old_bare_name_is_refused(tmp_path, tiny_indexes):
    # an older version named `a.jsonl`, scored from inside its folder, `a`: its ids were `a:<row>`
    corpus = _corpus(tmp_path, a=_records(4, "a"))
    out = tmp_path / "out"
    _score(tiny_indexes, [str(corpus)], out, store=None)
    (out / "shards.json").write_text(json.dumps({"a": str(corpus / "a.jsonl")}))
    with pytest.raises(ResumeError, match="'a'.*'corpus__a'.*new --out"):
        _score(tiny_indexes, [str(corpus)], out, store=None)


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@pytest.mark.skipif(not _hub_offline(), reason="needs HF_HUB_OFFLINE=1 (no network attempt)")
def test_hub_file_that_cannot_be_opened_fails_that_shard_only(tmp_path, tiny_indexes):
    # the listing worked (the run got this far), then one Hub data file cannot be opened
    # (network gone, access revoked, 5xx): it used to stop the whole run mid-corpus
    from retriever.corpus import shard_name
    from retriever.score.job import ScoreJob

    hub = "hf://datasets/org/name/data/part_1.parquet"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_bytes(write_jsonl_bytes(_records(7, "a")))
    (corpus / "b.jsonl").write_bytes(write_jsonl_bytes(_records(5, "b")))
    local = [str(corpus / "a.jsonl"), str(corpus / "b.jsonl")]

    class WithHubShard(ScoreJob):
        def shards(self):
            return [local[0], hub, local[1]]

    job = WithHubShard(
        index_dirs=[str(tiny_indexes["tools"])], corpus=local, out_dir=str(tmp_path / "out")
    )
    job.prepare()
    stats = job.run()
    assert stats.counts["failed_shards"] == 1 and stats.counts["seen"] == 12
    failed = json.loads((tmp_path / "out" / "failed" / f"{shard_name(hub)}.json").read_text())
    assert hub in failed["error"] and "rerun" in failed["error"]
    assert len(list((tmp_path / "out" / "done").glob("*.json"))) == 2
