"""Corpus access: shard discovery, the one sharding contract, readers, detokenizer, atomic
writers."""

from retriever.corpus.readers import CorpusReader, read_records
from retriever.corpus.sharding import get_shard, list_shards, shard_name
from retriever.corpus.writers import AtomicWriter, RejectWriter, write_json_atomic

__all__ = [
    "AtomicWriter",
    "CorpusReader",
    "RejectWriter",
    "get_shard",
    "list_shards",
    "read_records",
    "shard_name",
    "write_json_atomic",
]
