"""Corpus access: shard discovery, the one sharding contract, readers, detokenizer (the atomic
writers are in :mod:`retriever.io`)."""

from retriever.corpus.readers import CorpusReader, ReaderConfig, read_records
from retriever.corpus.sharding import get_shard, list_shards, shard_name
from retriever.io import AtomicWriter, RejectWriter, write_json_atomic

__all__ = [
    "AtomicWriter",
    "CorpusReader",
    "ReaderConfig",
    "RejectWriter",
    "get_shard",
    "list_shards",
    "read_records",
    "shard_name",
    "write_json_atomic",
]
