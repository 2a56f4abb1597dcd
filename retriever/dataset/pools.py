"""Filtered pools: discover them and read their records.

A pool is the set of documents the filter stage kept for one task (``DIR/<task>/<shard>.jsonl.gz``
or ``.parquet``, records ``{"id", "text", "metadata": {"prob_<task>", "cluster_id", ...}}``), or any
other corpus folder the user adds (a general-quality pool). Pool records keep their scores in the
nested ``metadata``; :func:`read_pool_shard` flattens it into ``Doc.metadata`` and keeps the pool
row in ``Doc.metadata["pool_row"]`` so that a selected document can be found again for writing.
LMFlow files (``{"type": "text_only", "instances": [{"text": ...}]}``) are read too.

A stage's pool records are read as written (``text``, ``id``). Corpus files read as a pool (a
general pool, the random arm's links to the corpus shards) are a read of the corpus: given a
:class:`~retriever.corpus.readers.ReaderConfig`, their text, token ids and id come from its fields,
so their documents get the ids and texts every other stage gave them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from retriever.corpus.readers import CorpusReader, ReaderConfig, clip_record, usable_text
from retriever.corpus.sharding import doc_id, linked_shard, shard_name
from retriever.data import Doc, Rejected
from retriever.errors import ConfigError, InputError

POOL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".parquet")
# files and folders a stage writes next to its shards: never pool data
NOT_POOL_FILES = {"manifest.json", "summary.json", "stats.json", "rethreshold.json"}
# (``scores/`` is the filter's stored probabilities of every document, kept or not)
NOT_POOL_DIRS = {
    "logs",
    "completions",
    "rejected",
    "done",
    "stats",
    "scan",
    "removed",
    "tmp",
    "scores",
    "failed",
    "store",
    "store_ingested",
}
# what a stage writes at the top of its output folder (a stage's manifest; an arm's similarity
# pools' pools.json): the data files below it are that stage's records
STAGE_MARKERS = ("manifest.json", "pools.json")


def list_pool_files(path: str | os.PathLike) -> list[str]:
    """Sorted data files of one pool (a file or a folder searched recursively).

    Raises:
        InputError: the path does not exist or holds no pool file.
    """
    p = Path(path)
    if p.is_file():
        if not str(p).endswith(POOL_SUFFIXES):
            raise InputError(
                f"pool file {p}: unknown format (use one of {', '.join(POOL_SUFFIXES)})"
            )
        return [str(p)]
    if not p.is_dir():
        raise InputError(f"pool {p} does not exist; check --pools / --pool NAME=PATH")
    if p.name in NOT_POOL_DIRS and (p.parent / "manifest.json").is_file():
        raise InputError(
            f"{p} is the {p.parent} stage's {p.name}/ folder (every document's records, not the "
            f"kept ones), not a pool; pass a task folder such as {p.parent}/<task>"
        )
    out = []
    for f in sorted(p.rglob("*")):
        rel = f.relative_to(p).parts
        if not f.is_file() or f.name in NOT_POOL_FILES or set(rel[:-1]) & NOT_POOL_DIRS:
            continue
        if f.name.endswith(POOL_SUFFIXES):
            out.append(str(f))
    if not out:
        raise InputError(
            f"pool folder {p} holds no data file (expected {', '.join(POOL_SUFFIXES)}); "
            "did the filter stage finish?"
        )
    return out


def discover_pools(
    pools_dir: str | os.PathLike | None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Map pool name -> folder: the task folders of ``pools_dir`` plus ``extra`` pools.

    A task folder is a direct sub-folder of ``pools_dir`` holding at least one data file (stage
    bookkeeping folders such as ``logs/`` are skipped).

    Raises:
        ConfigError: no pool at all, or an extra pool reuses a task name.
    """
    pools: dict[str, str] = {}
    if pools_dir is not None:
        root = Path(pools_dir)
        if not root.is_dir():
            raise InputError(f"pools folder {root} does not exist (the filter stage's --output)")
        for sub in sorted(root.iterdir()):
            if not sub.is_dir() or sub.name in NOT_POOL_DIRS or sub.name.startswith("."):
                continue
            if any(f.is_file() and f.name.endswith(POOL_SUFFIXES) for f in sub.rglob("*")):
                pools[sub.name] = str(sub)
    for name, path in (extra or {}).items():
        if name in pools:
            raise ConfigError(
                f"pool name {name!r} is both a task folder of {pools_dir} and --pool; rename it"
            )
        pools[name] = str(path)
    if not pools:
        raise ConfigError(
            f"no pool found in {pools_dir} (expected one folder per task with .jsonl.gz/.parquet "
            "files); pass --pools DIR and/or --pool NAME=PATH"
        )
    return pools


def corpus_pools(pools: Mapping[str, str], reader: ReaderConfig | None = None) -> list[str]:
    """The pools of ``pools`` that are corpus files, read with the corpus reader (the builder's
    ``corpus_pools``); the others are a stage's records, read as written (``id``, ``text``).

    Decided by what each pool is on disk, not by how it was given: a data file (a link: its
    target, :func:`~retriever.corpus.sharding.linked_shard`) whose folder or the folder above
    holds a stage's ``manifest.json`` (or an arm's ``pools.json``) is that stage's output, such
    as the filter's ``DIR/<task>/``, the prefilter's ``kept/`` or a build-dataset folder's
    ``parquet/``; any other file is a corpus file (a general pool such as ``/data/fineweb_edu``,
    or links to the corpus shards).

    Raises:
        InputError: with ``reader`` options that change the reading (:func:`reader_changes`), a
            pool holding files of both kinds (with the default ones both readings are the same).
    """
    out = []
    for name, path in pools.items():
        files = list_pool_files(path)
        staged = [_in_stage_output(f) for f in files]
        if all(staged):
            continue
        if any(staged) and reader_changes(reader):
            stage = next(f for f, s in zip(files, staged, strict=True) if s)
            corpus = next(f for f, s in zip(files, staged, strict=True) if not s)
            raise InputError(
                f"pool {name!r} ({path}) holds both a stage's output ({stage}) and corpus files "
                f"({corpus}), read with different fields: pass them as two pools"
            )
        out.append(name)
    return out


def _in_stage_output(path: str) -> bool:
    """Whether the data file ``path`` (a link: its target) lies in a stage's output folder."""
    folder = Path(linked_shard(path)).parent
    return any((d / m).is_file() for d in (folder, folder.parent) for m in STAGE_MARKERS)


def iter_pool_records(path: str, reader: CorpusReader | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(row, record)`` for every record of a pool file; ``record`` is a dict, any other
    JSON value, or a :class:`Rejected` for a line that is not UTF-8 JSON (the corpus reader's raw
    layer, which also reads LMFlow ``{"instances": [...]}`` files). ``reader``: a corpus file's
    reader (:func:`read_pool_shard`)."""
    return (reader or CorpusReader(tokens_field=None)).iter_records(path)


def to_pool_doc(
    path: str,
    row: int,
    rec: Any,
    sname: str | None = None,
    reader: CorpusReader | None = None,
) -> Doc | Rejected:
    """One pool record as a Doc with flat metadata (nested ``metadata`` merged over top-level
    scalars), or a Rejected (``bad_record``, ``no_text``, ``empty``, ``bad_tokens``). ``sname``:
    the file's :func:`shard_name`, when the caller already has it. ``reader``: the record is a
    corpus record (a general pool): its text, token ids and id are ``reader``'s fields; ``None``:
    a stage's pool record (``text``, ``id``)."""
    sname = sname or pool_shard_name(path)
    if isinstance(rec, Rejected):
        return rec
    if not isinstance(rec, dict):
        return Rejected(sname, row, "bad_record", clip_record(rec))
    own: tuple[str | None, ...]  # the record's own fields: not metadata
    if reader is None:
        text = usable_text(rec.get("text"), sname, row, rec)
        id_field, own = "id", ("id", "text", "metadata")
    else:
        text = reader.record_text(path, sname, row, rec)
        id_field = reader.id_field
        own = (reader.text_field, reader.tokens_field, id_field, "metadata")
    if isinstance(text, Rejected):
        return text
    meta: dict[str, Any] = {k: v for k, v in rec.items() if k not in own and _scalar(v)}
    nested = rec.get("metadata")
    if isinstance(nested, dict):
        meta.update({k: v for k, v in nested.items() if _scalar(v)})
    # pool records always carry an id; a bare corpus file (a general pool) may not
    rid = doc_id(meta.get("shard", sname), meta.get("row", row), rec.get(id_field))
    meta["pool_row"] = row
    return Doc(id=rid, text=text, metadata=meta)


def pool_shard_name(path: str) -> str:
    """The shard name of a pool file's records (their ``<name>:<row>`` ids, rejects, source):
    the corpus shard's for a link to one (:func:`~retriever.corpus.sharding.linked_shard`)."""
    return shard_name(linked_shard(path))


def read_pool_shard(path: str, reader: ReaderConfig | None = None) -> Iterator[Doc | Rejected]:
    """Every record of one pool file, in order, as a Doc or a Rejected (one per row).

    ``reader``: the file is a corpus file read as a pool (a general pool), read with these options;
    ``None``: a stage's pool file.

    Raises:
        InputError: a corpus file of token ids and ``reader`` has no detokenizer.
    """
    sname = pool_shard_name(path)
    rd = _corpus_reader(reader) if reader is not None else None
    for row, rec in iter_pool_records(path, rd):
        yield to_pool_doc(path, row, rec, sname, rd)


def reader_changes(reader: ReaderConfig | None) -> dict[str, Any]:
    """The options of ``reader`` that change how a corpus pool reads, set away from their
    defaults (what manifests and scan cache keys record; ``{}``: read as before). ``keep_fields``
    is not one: a pool document keeps every scalar field (its score, cluster, token count)."""
    if reader is None:
        return {}
    default = ReaderConfig().to_dict()
    return {k: v for k, v in reader.to_dict().items() if k != "keep_fields" and v != default[k]}


@functools.lru_cache(maxsize=8)
def _corpus_reader(reader: ReaderConfig) -> CorpusReader:
    # one reader (one loaded detokenizer) per set of options, not one per pool file
    return reader.reader()


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))
