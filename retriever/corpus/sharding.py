"""Shard discovery and the single sharding contract: rank r of W takes files r, r+W, ...

Every executor (local, datatrove, Ray) goes through :func:`get_shard`, so a shard is always
processed by exactly one worker and its output name is stable across runs (which is what makes
resume work).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

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

    A Hub dataset ``hf://org/name`` or ``hf://org/name/sub/folder`` becomes one shard per data file
    (``hf://datasets/org/name/sub/folder/file.parquet``, see :func:`list_hub_shards`), so executors
    spread it like a local folder; ``hf://org/name@split`` (or a dataset without data files) stays
    one streamed shard.

    Raises:
        InputError: when a local input does not exist, a folder holds no readable shard, or a Hub
            dataset cannot be listed (offline).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [str(inputs)]
    out: list[str] = []
    for spec in inputs:
        spec = str(spec)
        if is_hub_id(spec):
            out.extend(list_hub_shards(spec if spec.startswith(HUB_PREFIX) else HUB_PREFIX + spec))
            continue
        p = Path(spec)
        if p.is_dir():
            # hidden files and folders (.cache/ of a Hub download) are not corpus shards
            found = sorted(
                str(f)
                for f in walk_files(p)
                if is_shard_file(f)
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
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
            raise InputError(
                f"corpus input {spec} does not exist (a file, a folder or hf://org/name)"
            )
    # stable order, no duplicates (one file spelled two ways is one shard): the order defines the
    # rank -> shard assignment
    seen: set[str] = set()
    uniq = []
    for s in out:
        where = shard_location(s)
        if where not in seen:
            seen.add(where)
            uniq.append(s)
    return uniq


def hub_parts(spec: str) -> tuple[str, str, str]:
    """``hf://org/name/sub/folder@split`` -> ``("org/name", "sub/folder", "split")``."""
    rest = spec[len(HUB_PREFIX) :] if spec.startswith(HUB_PREFIX) else spec
    if rest.startswith("datasets/"):
        rest = rest[len("datasets/") :]
    rest, _, split = rest.partition("@")
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 2:
        raise InputError(f"Hub dataset {spec!r} must be hf://org/name[/sub/folder]")
    return "/".join(parts[:2]), "/".join(parts[2:]), split


def is_hub_file(shard: str) -> bool:
    """A single data file of a Hub dataset (``hf://datasets/org/name/.../file.parquet``)."""
    return shard.startswith(HUB_PREFIX + "datasets/") and is_shard_file(shard)


def hub_filesystem():
    """``huggingface_hub.HfFileSystem`` (lazily imported); the one place shards on the Hub are
    opened."""
    from retriever._deps import require

    return require("huggingface_hub").HfFileSystem()


def list_hub_shards(spec: str, fs=None) -> list[str]:
    """The data files of a Hub dataset (or of one of its folders), sorted, one shard each.

    Args:
        spec: ``hf://org/name``, ``hf://org/name/sub/folder`` or ``hf://org/name@split`` (the last
            one is not listed: it stays a single shard streamed with ``datasets``).
        fs: an fsspec filesystem laid out like the Hub (``datasets/org/name/...``); default
            ``HfFileSystem``. Tests pass a local one.

    Returns:
        ``hf://datasets/org/name/<path>`` for every shard file found (hidden files skipped); the
        spec itself when the dataset has no such file (a dataset only ``datasets`` can read).

    Raises:
        InputError: the listing failed (offline, unknown dataset, no access).
    """
    repo, sub, split = hub_parts(spec)
    if split and not sub:
        return [spec]
    if fs is None:
        return list(_list_hub_cached(repo, sub))
    return list(_list_hub(repo, sub, fs))


@functools.lru_cache(maxsize=256)
def _list_hub_cached(repo: str, sub: str) -> tuple[str, ...]:
    # one listing per process and dataset: every stage lists the corpus again
    return _list_hub(repo, sub, None)


def _list_hub(repo: str, sub: str, fs) -> tuple[str, ...]:
    base = f"datasets/{repo}" + (f"/{sub}" if sub else "")
    try:
        fs = fs or hub_filesystem()
        found = [base] if is_shard_file(base) and fs.isfile(base) else fs.find(base)
    except Exception as e:  # huggingface_hub raises many types (offline, 404, auth)
        raise InputError(
            f"cannot list Hub dataset {repo!r}{f' folder {sub!r}' if sub else ''} "
            f"({type(e).__name__}: {e}). Offline? Download it once and pass the local folder "
            "instead."
        ) from e
    files = sorted(
        str(f).lstrip("/")
        for f in found
        if is_shard_file(f) and not any(part.startswith(".") for part in str(f).split("/"))
    )
    if not files:
        if sub:
            raise InputError(f"Hub dataset {repo!r} has no shard file under {sub!r}")
        return (f"{HUB_PREFIX}{repo}",)  # no data files: streamed whole by `datasets`
    return tuple(f"{HUB_PREFIX}{f}" for f in files)


def walk_files(root: Path) -> list[Path]:
    """Every file under ``root``, following symlinked folders (``Path.rglob`` skips them on
    Python < 3.13), each real folder once: a link back up the tree is not walked into again.
    """
    out: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirs[:] = []  # a loop, or a second link to a folder already listed
            continue
        seen.add(real)
        dirs.sort()
        out.extend(Path(dirpath) / f for f in files if os.path.isfile(os.path.join(dirpath, f)))
    return out


def get_shard(shards: list[str], rank: int = 0, world_size: int = 1) -> list[str]:
    """The shards of ``rank`` among ``world_size`` workers: ``shards[rank::world_size]``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"rank {rank} is not in [0, world_size={world_size})")
    return shards[rank::world_size]


def doc_id(shard_name: str, row: int, value: Any = None) -> str:
    """A corpus record's id, the one rule of every stage (score, its sampler, filter, pools): its
    id field's ``value`` as a string, else ``<shard_name>:<row>`` (row: the record's position in
    its shard, rejected lines counted)."""
    return f"{shard_name}:{row}" if value is None else str(value)


def linked_shard(path: str) -> str:
    """The corpus shard a pool file stands for: a symlink's target (one level, not resolved
    further: the target keeps the shard's folder name), else ``path`` itself. A general pool of
    links to the corpus (``retriever.arms.datasets._link_corpus``) thus names its id-less records
    as the score and filter stages named them."""
    if not os.path.islink(path):
        return path
    return os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))


def shard_name(shard: str) -> str:
    """A short, file-system-safe, stable name for a shard (used for per-shard outputs).

    The parent folder is kept (ClimbLab names files ``cluster_N/cluster_N_001.parquet``) and the
    suffix dropped: ``cluster_3/part_001.parquet`` -> ``cluster_3__part_001``. A local shard is
    named from its absolute path (:func:`shard_location`), so every spelling of one file
    (``corpus/a.jsonl``, ``./corpus/a.jsonl``, ``/data/corpus/a.jsonl``, ``a.jsonl`` from inside
    ``corpus/``) has one name, hence one set of outputs, done markers and ids.
    """
    return _shard_name(shard_location(shard))


def shard_location(shard: str) -> str:
    """Where a shard is, one string per file: a local path absolute (normalised, links not
    resolved), a Hub shard as it is. ``shards.json`` records shards this way."""
    return shard if shard.startswith(HUB_PREFIX) else os.path.abspath(shard)


@functools.lru_cache(maxsize=65536)
def _shard_name(shard: str) -> str:
    if shard.startswith(HUB_PREFIX) and not is_hub_file(shard):
        return shard[len(HUB_PREFIX) :].replace("/", "__").replace(":", "_")
    # a Hub data file is named as the same file in a local copy of the dataset would be
    p = Path(shard[len(HUB_PREFIX) :] if shard.startswith(HUB_PREFIX) else shard)
    stem = p.name
    for suf in sorted(SHARD_SUFFIXES, key=len, reverse=True):
        if stem.endswith(suf):
            stem = stem[: -len(suf)]
            break
    parent = p.parent.name
    return f"{parent}__{stem}" if parent else stem
