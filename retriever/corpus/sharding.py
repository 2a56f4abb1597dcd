"""Shard discovery and the single sharding contract: rank r of W takes files r, r+W, ...

Every executor (local, datatrove, Ray) goes through :func:`get_shard`, so a shard is always processed
by exactly one worker and its output name is stable across runs (which is what makes resume work).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from retriever.errors import InputError

SHARD_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".parquet")
HUB_PREFIX = "hf://"


def is_shard_file(path: str | os.PathLike) -> bool:
    return str(path).endswith(SHARD_SUFFIXES)


def is_hub_id(spec: str) -> bool:
    """``hf://org/name`` or a bare ``org/name`` that is not an existing local path."""
    if spec.startswith(HUB_PREFIX):
        return True
    return spec.count("/") == 1 and not Path(spec).exists() and not is_shard_file(spec)


def list_shards(inputs: list[str] | str) -> list[str]:
    """Expand files, folders (recursively) and Hub ids into a sorted, de-duplicated shard list.

    Raises:
        InputError: when a local input does not exist or a folder holds no readable shard.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [str(inputs)]
    out: list[str] = []
    for spec in inputs:
        spec = str(spec)
        if is_hub_id(spec):
            out.append(spec if spec.startswith(HUB_PREFIX) else HUB_PREFIX + spec)
            continue
        p = Path(spec)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and is_shard_file(f))
            if not found:
                raise InputError(
                    f"folder {spec} holds no corpus shard (expected files ending in "
                    f"{', '.join(SHARD_SUFFIXES)})"
                )
            out.extend(found)
        elif p.is_file():
            if not is_shard_file(p):
                raise InputError(
                    f"{spec}: unknown shard format; use one of {', '.join(SHARD_SUFFIXES)}"
                )
            out.append(str(p))
        else:
            raise InputError(f"corpus input {spec} does not exist (a file, a folder or hf://org/name)")
    # stable order, no duplicates: the order defines the rank -> shard assignment
    seen: set[str] = set()
    uniq = [s for s in out if not (s in seen or seen.add(s))]
    return uniq


def get_shard(shards: list[str], rank: int = 0, world_size: int = 1) -> list[str]:
    """The shards of ``rank`` among ``world_size`` workers: ``shards[rank::world_size]``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"rank {rank} is not in [0, world_size={world_size})")
    return shards[rank::world_size]


@functools.lru_cache(maxsize=65536)
def shard_name(shard: str) -> str:
    """A short, file-system-safe, stable name for a shard (used for per-shard outputs).

    The parent folder is kept (ClimbLab names files ``cluster_N/cluster_N_001.parquet``) and the
    suffix dropped: ``cluster_3/part_001.parquet`` -> ``cluster_3__part_001``.
    """
    if shard.startswith(HUB_PREFIX):
        return shard[len(HUB_PREFIX):].replace("/", "__").replace(":", "_")
    p = Path(shard)
    stem = p.name
    for suf in sorted(SHARD_SUFFIXES, key=len, reverse=True):
        if stem.endswith(suf):
            stem = stem[: -len(suf)]
            break
    parent = p.parent.name
    return f"{parent}__{stem}" if parent else stem
