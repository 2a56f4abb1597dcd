"""A proxy's training data: documents read once, tokenized into one packed token stream.

The stream (``int32`` ids, documents joined with the tokenizer's EOS) is cached as
``OUT/data/tokens.npy`` with a manifest of what it was built from, so a resumed run reads it back
instead of tokenizing again. Sequences are the stream's consecutive ``seq_len`` blocks; their order
is a seeded permutation per epoch (:func:`block_order`), so the batch of any step is known from
the step number alone: a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retriever.corpus import list_shards
from retriever.data import Doc
from retriever.errors import InputError
from retriever.io import AtomicWriter, read_json, write_json_atomic
from retriever.manifest import paths_fingerprint

TOKENIZE_BATCH = 256  # documents per tokenizer call (memory: 256 x mean document size)


def dataset_shards(data: str | os.PathLike | list[str]) -> list[str]:
    """Shard files of a proxy's training data.

    A ``build-dataset`` output folder (it holds ``summary.json``) is read from its ``parquet/``
    parts (else ``lmflow/``), never both, and never its manifests; anything else goes through
    :func:`~retriever.corpus.list_shards` (files, folders, ``hf://`` ids).

    Raises:
        InputError: the path does not exist or holds no shard.
    """
    if isinstance(data, (list, tuple)):
        out: list[str] = []
        for d in data:
            out.extend(dataset_shards(d))
        return sorted(set(out))
    p = Path(data)
    if p.is_dir() and (p / "summary.json").is_file():
        for sub in ("parquet", "lmflow"):
            if (p / sub).is_dir() and any((p / sub).iterdir()):
                return list_shards(str(p / sub))
        raise InputError(f"dataset folder {p} has a summary.json but no parquet/ or lmflow/ parts")
    if p.is_dir() and (p / "manifest.json").is_file() and not any(p.rglob("*.jsonl*")):
        raise InputError(
            f"{p} looks like an unfinished dataset build (no summary.json); "
            "rerun `retriever build-dataset` to finish it"
        )
    return list_shards(str(data))


@dataclass
class TokenStream:
    """The packed training tokens and how they were made."""

    tokens: np.ndarray  # [n_tokens] int32
    n_docs: int
    rejected: dict[str, int]
    settings: dict[str, Any]

    def n_blocks(self, seq_len: int) -> int:
        return len(self.tokens) // seq_len


def _encode_batch(tokenizer, texts: list[str], byte_level: bool) -> list[np.ndarray]:
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pre = [bos] if bos is not None and bos != eos else []
    post = [eos] if eos is not None else []
    if byte_level:  # ids are the UTF-8 bytes: no tokenizer call needed
        return [
            np.concatenate(
                [
                    np.asarray(pre, dtype=np.int32),
                    np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int32),
                    np.asarray(post, dtype=np.int32),
                ]
            )
            for t in texts
        ]
    ids = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return [np.asarray(pre + list(x) + post, dtype=np.int32) for x in ids]


def build_token_stream(
    data: str | os.PathLike | list[str],
    cache_dir: str | os.PathLike,
    tokenizer,
    tokenizer_name: str,
    text_field: str = "text",
    max_docs: int | None = None,
) -> TokenStream:
    """Read every document of ``data`` in shard order and pack their tokens; cached in
    ``cache_dir``.

    Args:
        data: dataset folder, corpus files / folders or Hub ids.
        cache_dir: where ``tokens.npy`` and ``tokens.json`` live.
        tokenizer: a ``PreTrainedTokenizer(Fast)``.
        tokenizer_name: what names it in the cache manifest (``byte``, a Hub id or folder).
        text_field: record field holding the text.
        max_docs: stop after this many documents.

    Raises:
        InputError: no document could be read.
    """
    from retriever.confirm.tiny_panel import BOS_ID, EOS_ID
    from retriever.corpus import CorpusReader

    shards = dataset_shards(data)
    settings = {
        "shards": shards,
        "data": paths_fingerprint(shards),
        "tokenizer": tokenizer_name,
        "vocab": len(tokenizer),
        "text_field": text_field,
        "max_docs": max_docs,
    }
    cache = Path(cache_dir)
    meta_path, tok_path = cache / "tokens.json", cache / "tokens.npy"
    if meta_path.is_file() and tok_path.is_file():
        meta = read_json(meta_path)
        if meta.get("settings") == settings:
            return TokenStream(
                np.load(tok_path, mmap_mode="r"), meta["n_docs"], meta["rejected"], settings
            )
    byte_level = (
        tokenizer_name == "byte"
        and tokenizer.bos_token_id == BOS_ID
        and tokenizer.eos_token_id == EOS_ID
    )
    reader = CorpusReader(text_field=text_field)
    parts: list[np.ndarray] = []
    rejected: Counter = Counter()
    batch: list[str] = []
    n_docs = 0
    for shard in shards:
        for rec in reader.read(shard):
            if not isinstance(rec, Doc):
                rejected[rec.reason] += 1
                continue
            if max_docs is not None and n_docs >= max_docs:
                break
            batch.append(rec.text)
            n_docs += 1
            if len(batch) >= TOKENIZE_BATCH:
                parts.extend(_encode_batch(tokenizer, batch, byte_level))
                batch = []
    if batch:
        parts.extend(_encode_batch(tokenizer, batch, byte_level))
    if not n_docs:
        raise InputError(
            f"no document with a {text_field!r} field in {data} "
            f"(rejected: {dict(rejected) or 'none'}); pass --text-field"
        )
    tokens = np.concatenate(parts).astype(np.int32)
    cache.mkdir(parents=True, exist_ok=True)
    with AtomicWriter(tok_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, tokens)
    write_json_atomic(
        meta_path,
        {
            "settings": settings,
            "n_docs": n_docs,
            "rejected": dict(rejected),
            "n_tokens": int(len(tokens)),
        },
    )
    return TokenStream(tokens, n_docs, dict(rejected), settings)


class BlockSampler:
    """Which ``seq_len`` blocks of the stream make the batch of each step (seeded, resumable).

    Global sequence ``g`` (step ``s``, row ``b``: ``g = s * batch_size + b``) is block
    ``perm_e[g mod n_blocks]`` of epoch ``e = g // n_blocks``, where ``perm_e`` is a permutation
    drawn from ``default_rng([seed, e])``: a budget larger than the data repeats it in a new order.
    """

    def __init__(self, n_blocks: int, batch_size: int, seed: int):
        if n_blocks < 1:
            raise InputError(
                "the dataset holds fewer tokens than one training sequence; "
                "lower seq_len or give more data"
            )
        self.n_blocks, self.batch_size, self.seed = n_blocks, batch_size, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) >= 2:  # a batch spans at most a few epochs; keep memory flat
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(
                self.n_blocks
            )
        return self._perms[epoch]

    def blocks(self, step: int) -> np.ndarray:
        """``[batch_size]`` block indices of ``step``."""
        g = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        out = np.empty(self.batch_size, dtype=np.int64)
        for i, gi in enumerate(g):
            out[i] = self._perm(int(gi // self.n_blocks))[gi % self.n_blocks]
        return out

    def epochs(self, steps: int) -> float:
        return steps * self.batch_size / self.n_blocks
