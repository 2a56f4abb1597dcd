import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from retriever.corpus import AtomicWriter, CorpusReader, get_shard, list_shards, shard_name
from retriever.data import Doc, Rejected
from retriever.errors import InputError
from retriever.stats import Stats

LINES = [
    b'{"text": "first good doc", "id": "a"}',
    b'{"text": "second good doc", "cluster_id": 3}',
    b"{not json",
    b'{"title": "no text field"}',
    b'{"text": "   "}',
    b"\xff\xfe broken bytes",
    b"",
    b'["a list, not a record"]',
    b'{"text": "last good doc"}',
]


def _write(path, lines):
    data = b"\n".join(lines) + b"\n"
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    elif path.name.endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["s.jsonl", "s.jsonl.gz", "s.jsonl.zst"])
def test_jsonl_readers_yield_docs_and_reasoned_rejects(tmp_path, name):
    shard = _write(tmp_path / name, LINES)
    out = list(CorpusReader().read(str(shard)))
    assert len(out) == len(LINES)  # every line accounted for
    docs = [r for r in out if isinstance(r, Doc)]
    rej = {r.row: r.reason for r in out if isinstance(r, Rejected)}
    assert [d.text for d in docs] == ["first good doc", "second good doc", "last good doc"]
    assert docs[0].id == "a"
    assert docs[1].id == f"{shard_name(str(shard))}:1"
    assert docs[1].metadata["cluster_id"] == 3
    assert rej == {
        2: "bad_json",
        3: "no_text",
        4: "empty",
        5: "undecodable",
        6: "empty",
        7: "bad_record",
    }


def test_parquet_reader_streams_batches_and_rejects(tmp_path):
    table = pa.table({"text": ["one", None, "", "four"] * 5, "cluster_id": list(range(20))})
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=3)
    out = list(CorpusReader(batch_size=7).read(str(tmp_path / "p.parquet")))
    assert len(out) == 20
    assert sum(isinstance(r, Doc) for r in out) == 10
    assert {r.reason for r in out if isinstance(r, Rejected)} == {"no_text", "empty"}
    assert out[3].metadata["cluster_id"] == 3


def test_parquet_without_text_column_is_a_clear_error(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "p.parquet")
    with pytest.raises(InputError, match="--text-field"):
        list(CorpusReader().read(str(tmp_path / "p.parquet")))


def test_token_shards_use_the_detokenizer(tmp_path):
    table = pa.table({"tokens": [[104, 105], [1, 2, 3]], "token_count": [2, 3]})
    pq.write_table(table, tmp_path / "t.parquet")

    def detok(ids):  # a byte-level detokenizer stand-in: ids are bytes
        return bytes(ids).decode("latin-1")

    docs = list(CorpusReader(detokenizer=detok).read(str(tmp_path / "t.parquet")))
    assert docs[0].text == "hi"
    with pytest.raises(InputError, match="detokenizer"):
        list(CorpusReader().read(str(tmp_path / "t.parquet")))


def test_json_object_keyed_by_id(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"k1": {"text": "x"}, "k2": {"text": "y"}}))
    docs = list(CorpusReader().read(str(tmp_path / "d.json")))
    assert [d.id for d in docs] == ["k1", "k2"]


def test_list_and_get_shard_partition_exactly(tmp_path):
    for i in range(7):
        _write(tmp_path / f"s{i}.jsonl", LINES[:1])
    (tmp_path / "notes.txt").write_text("ignored")
    shards = list_shards([str(tmp_path)])
    assert len(shards) == 7
    parts = [get_shard(shards, r, 3) for r in range(3)]
    assert sorted(s for p in parts for s in p) == shards
    with pytest.raises(InputError):
        get_shard(shards, 3, 3)
    with pytest.raises(InputError, match="does not exist"):
        list_shards([str(tmp_path / "missing.jsonl")])
    with pytest.raises(InputError, match="unknown shard format"):
        list_shards([str(tmp_path / "notes.txt")])


def test_atomic_writer_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with AtomicWriter(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert not target.exists() and not list(tmp_path.iterdir())
    with AtomicWriter(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done"


def test_stats_balance():
    s = Stats()
    s.inc("seen", 5)
    s.inc("kept", 2)
    s.inc("dropped/below_threshold", 2)
    assert not s.balanced()
    s.inc("rejected/bad_json")
    assert s.balanced()


def test_hub_file_that_cannot_be_opened_is_a_shard_error():
    from huggingface_hub import constants

    from retriever.corpus.readers import CorpusReader
    from retriever.errors import ShardError

    if not constants.HF_HUB_OFFLINE:
        pytest.skip("needs HF_HUB_OFFLINE=1 (no network attempt)")
    shard = "hf://datasets/org/name/data/part_1.parquet"
    with pytest.raises(ShardError, match=r"cannot open Hub dataset file .*part_1.*rerun"):
        list(CorpusReader().iter_records(shard))
