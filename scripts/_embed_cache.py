"""A disk cache of embeddings for evaluation scripts: the same texts are embedded once per model.

``CachedEmbedder(embedder, folder)`` has the :class:`~retriever.embed.Embedder` interface; vectors
are keyed by a hash of the exact text passed to ``encode`` and appended to ``folder`` in parts
(``part-NNNNN.npz``: ``keys`` bytes [n, 16], ``vectors`` float32 [n, dim]; no pickle).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class CachedEmbedder:
    """Wraps an embedder; ``encode`` returns cached rows and embeds only the texts not seen."""

    def __init__(self, embedder, folder: str | os.PathLike, chunk: int = 512):
        self.inner = embedder
        # texts are clipped as SimilarityScorer clips them: the model truncates at max_seq_length
        # word pieces anyway, so the vector of a clipped text is the vector of the whole text
        self.clip_chars = (getattr(embedder, "max_seq_length", 0) or 512) * 12
        self.model_id, self.dim = embedder.model_id, embedder.dim
        self.max_seq_length = getattr(embedder, "max_seq_length", 0)
        tag = hashlib.blake2b(
            f"{embedder.model_id}:{self.max_seq_length}".encode(), digest_size=6
        ).hexdigest()
        self.folder = Path(folder) / tag
        self.folder.mkdir(parents=True, exist_ok=True)
        self.chunk = chunk
        self.hits = self.misses = 0
        self._mem: dict[bytes, np.ndarray] = {}
        for p in sorted(self.folder.glob("part-*.npz")):
            with np.load(p, allow_pickle=False) as z:
                for k, v in zip(z["keys"], z["vectors"], strict=True):
                    self._mem[bytes(k)] = v

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = [t[: self.clip_chars] for t in texts]
        keys = [_key(t) for t in texts]
        todo = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in self._mem and k not in todo:
                todo[k] = t
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        items = list(todo.items())
        for i in range(0, len(items), self.chunk):
            part = items[i : i + self.chunk]
            xv = self.inner.encode([t for _, t in part])  # [n, dim]
            self._save([k for k, _ in part], xv)
            for (k, _), v in zip(part, xv, strict=True):
                self._mem[k] = v
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._mem[k] for k in keys]).astype(np.float32)

    def _save(self, keys: list[bytes], xv: np.ndarray) -> None:
        n = len(list(self.folder.glob("part-*.npz")))
        path = self.folder / f"part-{n:05d}.npz"
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            keys=np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16),
            vectors=np.asarray(xv, dtype=np.float32),
        )
        os.replace(tmp, path)
