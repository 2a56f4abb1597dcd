"""Load a task's gold exemplars from files, folders or Hub datasets into :class:`Doc` records.

Exact duplicates (same text after stripping) are removed and counted (``dropped/duplicate``);
records that give no text are rejected and counted (``rejected/no_text``, ``rejected/empty``, ...).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retriever._deps import require
from retriever.config import GoldSource
from retriever.corpus.readers import CorpusReader
from retriever.corpus.sharding import HUB_PREFIX, is_hub_id, list_shards
from retriever.data import Doc, Rejected
from retriever.errors import InputError
from retriever.gold.formats import format_record
from retriever.manifest import file_fingerprint, fingerprint
from retriever.stats import Stats

log = logging.getLogger(__name__)

# `holdout:<task>`: the gold role of retriever.holdout's cross-source split of the shared data
# (never its evaluation or planted records), so a config can keep the ELMB sets out of the index
HOLDOUT_PREFIX = "holdout:"


def _holdout_records(src: GoldSource):
    from retriever.holdout import load_split

    task = src.path[len(HOLDOUT_PREFIX) :]
    return load_split().records(task, "gold")


@dataclass
class GoldSet:
    """The loaded exemplars of one task, with counters and a fingerprint per source."""

    docs: list[Doc]
    stats: Stats
    sources: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.docs]

    @property
    def fingerprint(self) -> str:
        return fingerprint([s["fingerprint"] for s in self.sources])


def text_key(text: str) -> str:
    """Identity of a text for exact-duplicate removal."""
    return hashlib.sha1(text.strip().encode("utf-8", "replace")).hexdigest()


class GoldLoader:
    """Reads gold sources into a de-duplicated :class:`GoldSet`.

    Args:
        sources: where the exemplars come from and how each record becomes text.
        seen_keys: text keys already present (``retriever index add`` passes the index's own, so a
            new exemplar that is already in the index is a duplicate).
    """

    def __init__(
        self, sources: list[GoldSource] | tuple[GoldSource, ...], seen_keys: set[str] | None = None
    ):
        self.sources = list(sources)
        self.seen_keys = set(seen_keys or ())

    def load(self) -> GoldSet:
        stats, rejected, infos = Stats(), [], []
        docs: list[Doc] = []
        keys = set(self.seen_keys)
        for src in self.sources:
            paths = self._resolve(src)
            if paths is None:
                continue
            n_before = len(docs)
            for row, rec, origin in self._records(src, paths):
                stats.inc("seen")
                if isinstance(rec, Rejected):
                    stats.inc(f"rejected/{rec.reason}")
                    rejected.append(rec)
                    continue
                text = format_record(rec, src.format, src.text_field, src.template)
                if text is None or not text.strip():
                    reason = "no_text" if text is None else "empty"
                    stats.inc(f"rejected/{reason}")
                    rejected.append(Rejected(src.label, row, reason, str(rec)[:2000]))
                    continue
                key = text_key(text)
                if key in keys:
                    stats.inc("dropped/duplicate")
                    continue
                keys.add(key)
                stats.inc("kept")
                rid = rec.get("id") if isinstance(rec, dict) else None
                docs.append(
                    Doc(
                        id=f"{src.label}:{rid if rid is not None else row}",
                        text=text,
                        metadata={"source": src.label, "origin": origin, "row": row},
                    )
                )
            infos.append(
                {
                    "name": src.label,
                    "path": src.path,
                    "format": src.format,
                    "records": len(docs) - n_before,
                    "fingerprint": self._fingerprint(src, paths),
                }
            )
        if not docs:
            names = [s.path for s in self.sources]
            raise InputError(
                f"no gold exemplar could be read from {names} ({stats.to_dict()['counts']}); check "
                "the paths, the `format` and `text_field` of each source, or pass --gold PATH"
            )
        return GoldSet(docs, stats, infos, rejected)

    # -- sources ----------------------------------------------------------------------------------
    def _resolve(self, src: GoldSource) -> list[str] | None:
        """Local shard paths of ``src``, ``[]`` for a Hub dataset, ``None`` to skip it."""
        if src.path.startswith(HOLDOUT_PREFIX):
            return sorted({str(r.source) for r in _holdout_records(src)})
        if is_hub_id(src.path) and not os.path.exists(src.path):
            return []
        if not os.path.exists(src.path):
            if src.optional:
                log.warning("gold source %s does not exist; skipped (optional)", src.path)
                return None
            raise InputError(
                f"gold source {src.path} does not exist (a file, a folder or a Hub id)"
            )
        return list_shards([src.path])

    def _records(self, src: GoldSource, paths: list[str]) -> Iterator[tuple[int, Any, str]]:
        reader = CorpusReader(text_field=src.text_field, tokens_field=None)
        n = 0
        if src.path.startswith(HOLDOUT_PREFIX):
            for row, r in enumerate(_holdout_records(src)):
                if src.limit is not None and n >= src.limit:
                    return
                n += 1
                yield row, {**r.raw, "id": r.id}, r.source
            return
        if not paths:  # Hub dataset
            for row, rec in enumerate(self._iter_hub(src)):
                if src.limit is not None and n >= src.limit:
                    return
                n += 1
                yield row, rec, src.path
            return
        for path in paths:
            for row, rec in reader.iter_records(path):
                if src.limit is not None and n >= src.limit:
                    return
                n += 1
                yield row, rec, path

    def _iter_hub(self, src: GoldSource) -> Iterator[Any]:
        name = src.path[len(HUB_PREFIX) :] if src.path.startswith(HUB_PREFIX) else src.path
        try:
            if src.data_files:
                # files such as TinyAgent's training_data.json (one JSON object keyed by id) are not
                # tables `datasets` can parse: fetch them and read them as local files
                hub = require("huggingface_hub")
                reader = CorpusReader(text_field=src.text_field, tokens_field=None)
                for fname in src.data_files:
                    local = hub.hf_hub_download(name, fname, repo_type="dataset")
                    for _, rec in reader.iter_records(local):
                        yield rec
                return
            datasets = require("datasets")
            ds = datasets.load_dataset(name, split=src.split or "train")
        except InputError:
            raise
        except Exception as e:  # datasets / hub raise many types (offline, 404, auth)
            raise InputError(
                f"cannot load gold dataset {name!r} from the Hub ({type(e).__name__}: {e}). "
                "Offline? Download it once and pass the local files with --gold PATH."
            ) from e
        yield from ds

    @staticmethod
    def _fingerprint(src: GoldSource, paths: list[str]) -> str:
        parts: list[Any] = [
            src.format,
            src.text_field,
            src.template,
            src.limit,
            src.split,
            list(src.data_files),
        ]
        if src.path.startswith(HOLDOUT_PREFIX):
            from retriever.holdout import default_data_dir

            ids = [r.id for r in _holdout_records(src)]
            parts.append(["holdout", src.path, fingerprint(ids)])
            paths = [str(default_data_dir() / p) for p in paths]
        elif not paths:
            parts.append(["hub", src.path])
        for p in paths:
            parts.append([Path(p).name, file_fingerprint(p)])
        return fingerprint(parts)


def load_gold(sources: list[GoldSource] | list[str]) -> GoldSet:
    """Shortcut: load gold from sources or plain paths / Hub ids."""
    srcs = [s if isinstance(s, GoldSource) else GoldSource(path=str(s)) for s in sources]
    return GoldLoader(srcs).load()
