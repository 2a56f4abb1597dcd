"""Case 1 (and 11): a truncated or corrupt compressed shard is an error, never a shorter shard."""

from __future__ import annotations

import gzip

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from faults_helpers import docs, write_jsonl_bytes

from retriever.corpus import CorpusReader
from retriever.data import Doc
from retriever.errors import InputError, ShardError, TruncatedInputError

pytestmark = pytest.mark.faults


def _zst(data: bytes, frames: int = 1) -> bytes:
    step = -(-len(data) // frames)
    c = zstandard.ZstdCompressor()
    return b"".join(c.compress(data[i : i + step]) for i in range(0, len(data), step))


def _read_all(path) -> list:
    return [r for r in CorpusReader().read(str(path)) if isinstance(r, Doc)]


@pytest.mark.parametrize("frames", [1, 3])
def test_whole_zst_reads_every_record(tmp_path, frames):
    p = tmp_path / "s.jsonl.zst"
    p.write_bytes(_zst(write_jsonl_bytes(docs(300)), frames))
    assert [d.id for d in _read_all(p)] == [f"d{i}" for i in range(300)]


@pytest.mark.parametrize("frames", [1, 3])
def test_truncated_zst_raises_not_a_shorter_shard(tmp_path, frames):
    blob = _zst(write_jsonl_bytes(docs(300)), frames)
    p = tmp_path / "s.jsonl.zst"
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(TruncatedInputError, match="truncated zstd"):
        _read_all(p)


def test_corrupt_zst_raises(tmp_path):
    blob = bytearray(_zst(write_jsonl_bytes(docs(300))))
    blob[len(blob) // 2 : len(blob) // 2 + 64] = b"\x00" * 64
    p = tmp_path / "s.jsonl.zst"
    p.write_bytes(bytes(blob))
    with pytest.raises(ShardError):
        _read_all(p)


def test_truncated_gzip_is_a_shard_error(tmp_path):
    blob = gzip.compress(write_jsonl_bytes(docs(300)))
    p = tmp_path / "s.jsonl.gz"
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(TruncatedInputError, match="gzip"):
        _read_all(p)


def test_truncated_json_gz_is_a_shard_error(tmp_path):
    blob = gzip.compress(b"[" + b",".join(write_jsonl_bytes(docs(50)).splitlines()) + b"]")
    p = tmp_path / "s.json.gz"
    p.write_bytes(blob[:-20])
    with pytest.raises(ShardError):
        _read_all(p)


def test_parquet_without_text_column_is_a_shard_error(tmp_path):
    p = tmp_path / "s.parquet"
    pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), p)
    with pytest.raises(ShardError, match="--text-field"):
        _read_all(p)


def test_truncated_parquet_is_a_shard_error(tmp_path):
    p = tmp_path / "s.parquet"
    pq.write_table(pa.Table.from_pylist(docs(100)), p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(ShardError, match="parquet"):
        _read_all(p)


@pytest.mark.parametrize("suffix", [".jsonl.zst", ".jsonl.gz"])
def test_truncated_gold_is_one_line_input_error(tmp_path, suffix):
    from retriever.config import GoldSource
    from retriever.gold.loader import GoldLoader

    data = write_jsonl_bytes(docs(300))
    blob = _zst(data) if suffix.endswith("zst") else gzip.compress(data)
    p = tmp_path / f"gold{suffix}"
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputError) as e:
        GoldLoader([GoldSource(path=str(p))]).load()
    assert "\n" not in str(e.value) and "gold" in str(e.value)
