"""How many documents a corpus holds, without reading it: parquet metadata, or a prefix estimate.

Parquet shards (ClimbLab's layout, local or on the Hub) record their row count in the footer, so
the count is exact and costs one small read per shard. Other shards are estimated from a prefix:
an uncompressed jsonl file's size divided by the mean line size of its first lines; compressed or
JSON files are counted by streaming them (they are small in practice).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from retriever._deps import require
from retriever.corpus.readers import open_binary
from retriever.corpus.sharding import HUB_PREFIX, hub_filesystem, is_hub_file

PREFIX_LINES = 200


@dataclass
class CorpusSize:
    """Documents per shard (exact or estimated) and their sum.

    Attributes:
        docs: documents in the corpus (records, rejected ones included).
        shards: number of shards.
        exact: every shard was counted exactly (parquet metadata, or a full count).
        method: how the count was found, in words.
        per_shard: shard -> documents.
        unknown: shards whose size could not be found (a streamed Hub dataset).
    """

    docs: int
    shards: int
    exact: bool
    method: str
    per_shard: dict[str, int] = field(default_factory=dict, repr=False)
    unknown: list[str] = field(default_factory=list)


def shard_rows(shard: str, prefix_lines: int = PREFIX_LINES) -> tuple[int | None, bool]:
    """``(documents, exact)`` of one shard; ``(None, False)`` when it cannot be told (streamed
    Hub)."""
    pq = require("pyarrow.parquet")
    if is_hub_file(shard):
        if not shard.endswith(".parquet"):
            return None, False
        with hub_filesystem().open(shard[len(HUB_PREFIX) :], "rb") as fh:
            return pq.ParquetFile(fh).metadata.num_rows, True
    if shard.startswith(HUB_PREFIX):
        return None, False
    p = Path(shard)
    name = p.name
    if name.endswith(".parquet"):
        return pq.ParquetFile(p).metadata.num_rows, True
    if name.endswith(".jsonl"):
        size = p.stat().st_size
        n = nbytes = 0
        with open(p, "rb") as fh:
            for line in fh:
                n += 1
                nbytes += len(line)
                if n >= prefix_lines:
                    break
        if nbytes >= size or n == 0:
            return n, True
        return int(round(size / (nbytes / n))), False
    if name.endswith((".jsonl.gz", ".jsonl.zst")):
        with open_binary(p) as fh:
            return sum(1 for _ in fh), True
    from retriever.corpus.readers import CorpusReader

    return sum(1 for _ in CorpusReader().iter_records(shard)), True


def corpus_size(shards: list[str], prefix_lines: int = PREFIX_LINES) -> CorpusSize:
    """Count (or estimate) the documents of ``shards`` (see module docstring)."""
    per: dict[str, int] = {}
    unknown: list[str] = []
    exact = True
    for s in shards:
        n, ex = shard_rows(s, prefix_lines)
        if n is None:
            unknown.append(s)
            exact = False
            continue
        per[s] = n
        exact &= ex
    kinds = {os.path.basename(s).rsplit(".", 1)[-1] for s in per}
    method = (
        "parquet metadata (row counts)"
        if kinds == {"parquet"} and exact
        else "row counts"
        if exact
        else f"estimated from the first {prefix_lines} lines of each shard"
    )
    if unknown:
        method += f"; {len(unknown)} streamed shard(s) of unknown size"
    return CorpusSize(sum(per.values()), len(shards), exact and not unknown, method, per, unknown)
