"""One FAISS index per task: the gold exemplars' unit vectors, searched by inner product (= cosine).

On disk (``indexes/<task>/``)::

    index.faiss     CPU FAISS index (built on GPU when there is one, always saved as CPU)
    gold.parquet    id, text, source of every exemplar, in index order
    manifest.json   task, model, dim, factory, counts, source fingerprints, version

A new or rebuilt index is written whole into a temporary folder beside it and swapped in, so a
failed build never touches the working index; a folder without ``manifest.json`` is unfinished.
Loading with an embedder of another model or dimension raises :class:`ModelMismatchError`: vectors
of two models are not comparable, and searching one with the other returns confident nonsense.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retriever._deps import require
from retriever.data import Doc
from retriever.embed.embedder import canonical_model_id
from retriever.errors import InputError, ModelMismatchError, UnsafeNameError
from retriever.gold.loader import GoldSet, text_key
from retriever.io import (
    is_temp,
    read_json,
    replace_dir,
    resolve_target,
    temp_path,
    write_json_atomic,
)
from retriever.manifest import fingerprint
from retriever.names import check_name
from retriever.progress import encode_with_progress

if TYPE_CHECKING:
    from retriever.embed import Embedder

log = logging.getLogger(__name__)

INDEX_FORMAT = 1
INDEX_FILE, GOLD_FILE, MANIFEST_FILE = "index.faiss", "gold.parquet", "manifest.json"


def faiss_gpu_available() -> bool:
    """True when this FAISS build has GPU support and sees a GPU."""
    faiss = require("faiss")
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def new_faiss_index(dim: int, factory: str = "Flat"):
    """An empty inner-product index from a factory string (``"Flat"``, ``"HNSW32"``,
    ``"IVF256,Flat"``)."""
    faiss = require("faiss")
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise InputError(f"invalid FAISS factory string {factory!r}: {e}") from e


class GoldIndex:
    """The gold exemplars of one task and their FAISS index.

    Build with :meth:`build`, reopen with :meth:`load`, search with :meth:`search`.

    Args:
        task: task name.
        index: a CPU FAISS index holding one unit vector per exemplar.
        ids, texts, sources: per exemplar, in index order.
        manifest: what the index was built from (see module docstring).
        use_gpu: search on GPU (``None``: when FAISS sees one). Falls back to CPU otherwise.
    """

    def __init__(
        self,
        task: str,
        index,
        ids: list[str],
        texts: list[str],
        sources: list[str],
        manifest: dict[str, Any],
        use_gpu: bool | None = None,
    ):
        self.task = task
        self.index = index
        self.ids, self.texts, self.sources = ids, texts, sources
        self.manifest = manifest
        self.use_gpu = (
            faiss_gpu_available() if use_gpu is None else (use_gpu and faiss_gpu_available())
        )
        self._gpu_index = None

    # -- properties -------------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def __len__(self) -> int:
        return self.ntotal

    # -- build ------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        task: str,
        gold: GoldSet,
        embedder: Embedder,
        factory: str = "Flat",
        use_gpu: bool | None = None,
    ) -> GoldIndex:
        """Embed ``gold`` and index it (on GPU when available; the stored index is a CPU one)."""
        check_name(task, "task name")
        t0 = time.perf_counter()
        xb = encode_with_progress(embedder, gold.texts, desc=f"embed {task} gold")  # [n_gold, dim]
        gpu = faiss_gpu_available() if use_gpu is None else (use_gpu and faiss_gpu_available())
        index, gpu = _train_and_add(new_faiss_index(embedder.dim, factory), xb, gpu)
        manifest = {
            "task": task,
            "model": canonical_model_id(embedder.model_id),
            "dim": int(embedder.dim),
            "max_seq_length": int(getattr(embedder, "max_seq_length", 0) or 0),
            "factory": factory,
            "metric": "inner_product",
            "normalized": True,
            "n_records": int(index.ntotal),
            "counts": gold.stats.to_dict()["counts"],
            "sources": gold.sources,
            "gold_fingerprint": gold.fingerprint,
            "built_on": "gpu" if gpu else "cpu",
            "build_seconds": round(time.perf_counter() - t0, 3),
            "format": INDEX_FORMAT,
            "version": _version(),
        }
        return cls(
            task,
            index,
            [d.id for d in gold.docs],
            gold.texts,
            [d.metadata.get("source", "") for d in gold.docs],
            manifest,
            use_gpu,
        )

    def add(self, gold: GoldSet, embedder: Embedder) -> int:
        """Append new exemplars (duplicates of indexed texts are skipped); returns how many were
        added."""
        self.check_embedder(embedder)
        have = {text_key(t) for t in self.texts}
        new = [d for d in gold.docs if text_key(d.text) not in have]
        if not new:
            return 0
        xb = encode_with_progress(embedder, [d.text for d in new], desc=f"embed {self.task} gold")
        if not self.index.is_trained:
            raise InputError(f"index of {self.task!r} is not trained; rebuild it")
        self.index.add(xb)
        self._gpu_index = None
        self.ids += [d.id for d in new]
        self.texts += [d.text for d in new]
        self.sources += [d.metadata.get("source", "") for d in new]
        m = self.manifest
        m["n_records"] = int(self.index.ntotal)
        m["sources"] = list(m.get("sources", [])) + gold.sources
        m["gold_fingerprint"] = fingerprint([m.get("gold_fingerprint"), gold.fingerprint])
        m["version"] = _version()
        return len(new)

    # -- search -----------------------------------------------------------------------------------
    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` cosine similarities and exemplar positions: ``D, I`` of shape ``[n, min(k,
        ntotal)]``."""
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        if xq.ndim != 2 or xq.shape[1] != self.dim:
            raise ModelMismatchError(
                f"query vectors have shape {xq.shape}, index {self.task!r} expects [n, "
                f"{self.dim}]: embed with {self.model}"
            )
        k = max(1, min(k, self.ntotal))
        return self._searcher().search(xq, k)

    def _searcher(self):
        if not self.use_gpu:
            return self.index
        if self._gpu_index is None:
            faiss = require("faiss")
            try:
                self._res = faiss.StandardGpuResources()
                self._gpu_index = faiss.index_cpu_to_gpu(self._res, 0, self.index)
            except (RuntimeError, AttributeError) as e:  # no GPU version of this index type
                log.warning("FAISS GPU unavailable for %s (%s); searching on CPU", self.task, e)
                self.use_gpu = False
                return self.index
        return self._gpu_index

    def check_embedder(self, embedder: Embedder) -> None:
        """Raise :class:`ModelMismatchError` unless ``embedder`` is the model this index was built
        with."""
        mid = canonical_model_id(embedder.model_id)
        if mid == self.model and int(embedder.dim) != self.dim:
            # same name, other vectors: the manifest was edited or the model changed under its name
            raise ModelMismatchError(
                f"index {self.task!r} records dim {self.dim} for {self.model!r}, which now gives "
                f"dim {embedder.dim} vectors; rebuild it with `retriever index build {self.task}`"
            )
        if mid != self.model:
            raise ModelMismatchError(
                f"index {self.task!r} was built with {self.model!r} (dim {self.dim}), not {mid!r} "
                f"(dim {embedder.dim}); embed with {self.model!r}, or rebuild the index with "
                f"`retriever index build {self.task} --model {mid}`"
            )

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the index folder: built complete in a temporary folder beside it, then swapped in.

        A failed write (full disk, kill) leaves the working index as it was. Other files of the
        folder (the distilled ``filter.bin``) are carried over into the new one.
        """
        faiss = require("faiss")
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        check_name(self.task, "task name")
        out = resolve_target(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(out)
        tmp.mkdir()
        try:
            faiss.write_index(self.index, str(tmp / INDEX_FILE))
            pq.write_table(
                pa.table({"id": self.ids, "text": self.texts, "source": self.sources}),
                tmp / GOLD_FILE,
            )
            write_json_atomic(tmp / MANIFEST_FILE, self.manifest)
            if out.is_dir():
                for f in out.iterdir():
                    if f.name in (INDEX_FILE, GOLD_FILE, MANIFEST_FILE) or is_temp(f.name):
                        continue
                    if f.is_dir():
                        shutil.copytree(f, tmp / f.name, symlinks=True)
                    else:
                        shutil.copy2(f, tmp / f.name, follow_symlinks=False)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return replace_dir(tmp, out)

    @classmethod
    def load(
        cls, path: str | os.PathLike, embedder: Embedder | None = None, use_gpu: bool | None = None
    ) -> GoldIndex:
        """Open ``indexes/<task>/``; with ``embedder``, check it is the model the index was built
        with.

        Raises:
            InputError: the folder is missing, unfinished, or its files are corrupt or
                hand-edited (a one-line message naming the file; rebuild the index).
            ModelMismatchError: ``embedder`` is another model or dimension.
        """
        faiss = require("faiss")
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        p = Path(path)
        if not (p / MANIFEST_FILE).is_file():
            hint = "an unfinished build" if p.is_dir() else "missing"
            raise InputError(
                f"no gold index at {p} ({hint}); build it with `retriever index build TASK`"
            )
        rebuild = f"rebuild it with `retriever index build {p.name}`"
        manifest = read_json(p / MANIFEST_FILE)
        if not isinstance(manifest, dict):
            raise InputError(f"{p / MANIFEST_FILE} is not an index manifest; {rebuild}")
        if manifest.get("format") != INDEX_FORMAT:
            raise ModelMismatchError(
                f"{p} has index format {manifest.get('format')}, this version reads "
                f"{INDEX_FORMAT}; rebuild it"
            )
        missing = [k for k in ("task", "model", "dim") if k not in manifest]
        if missing:
            raise InputError(f"{p / MANIFEST_FILE} lacks {missing}; {rebuild}")
        try:
            check_name(manifest["task"], "task name")
            int(manifest["dim"])
        except (UnsafeNameError, TypeError, ValueError) as e:
            raise InputError(f"{p / MANIFEST_FILE}: {e}; {rebuild}") from e
        for f in (INDEX_FILE, GOLD_FILE):
            if not (p / f).is_file():
                raise InputError(f"{p} has no {f}; {rebuild}")
        try:
            index = faiss.read_index(str(p / INDEX_FILE))
        except (RuntimeError, MemoryError, OverflowError) as e:
            raise InputError(
                f"{p / INDEX_FILE} is corrupt ({str(e).splitlines()[0][:200]}); {rebuild}"
            ) from e
        try:
            gold = pq.read_table(p / GOLD_FILE)
            cols = {c: gold.column(c).to_pylist() for c in ("id", "text", "source")}
        except (pa.ArrowException, OSError, KeyError) as e:
            raise InputError(f"{p / GOLD_FILE} is corrupt ({e}); {rebuild}") from e
        if index.ntotal != gold.num_rows or index.d != int(manifest["dim"]):
            raise InputError(
                f"{p} is inconsistent (index {index.ntotal} x {index.d}, gold {gold.num_rows} "
                "rows); rebuild it"
            )
        out = cls(
            manifest["task"], index, cols["id"], cols["text"], cols["source"], manifest, use_gpu
        )
        if embedder is not None:
            out.check_embedder(embedder)
        return out

    def hits(self, D: np.ndarray, I: np.ndarray) -> list[list[dict[str, Any]]]:
        """Readable results of :meth:`search`: per query, ``[{rank, score, id, text, source}]``."""
        out = []
        for drow, irow in zip(D, I, strict=True):
            out.append(
                [
                    {
                        "rank": r + 1,
                        "score": float(d),
                        "id": self.ids[i],
                        "text": self.texts[i],
                        "source": self.sources[i],
                    }
                    for r, (d, i) in enumerate(zip(drow, irow, strict=True))
                    if i >= 0
                ]
            )
        return out


def _train_and_add(index, xb: np.ndarray, gpu: bool):
    """Train (when the factory needs it) and fill ``index``; on GPU when asked and possible.

    Returns ``(cpu_index, built_on_gpu)``: the stored index is always a CPU one.
    """
    faiss = require("faiss")
    if len(xb) < 1:
        raise InputError("cannot build an index from zero vectors")
    if gpu:
        try:
            res = faiss.StandardGpuResources()
            target = faiss.index_cpu_to_gpu(res, 0, index)
            if not target.is_trained:
                target.train(xb)
            target.add(xb)
            return faiss.index_gpu_to_cpu(target), True
        except (RuntimeError, AttributeError) as e:  # index type without GPU support
            log.warning("building on CPU: %s", e)
    if not index.is_trained:
        index.train(xb)
    index.add(xb)
    return index, False


def _version() -> str:
    from retriever import __version__

    return __version__


def load_indexes(paths: list[str], embedder: Embedder | None = None) -> dict[str, GoldIndex]:
    """Open several task indexes (one per ``--index``); tasks must be distinct."""
    out: dict[str, GoldIndex] = {}
    for p in paths:
        gi = GoldIndex.load(p, embedder)
        if gi.task in out:
            raise InputError(f"two --index folders hold task {gi.task!r}; pass each task once")
        out[gi.task] = gi
    return out


def gold_docs(index: GoldIndex) -> list[Doc]:
    return [
        Doc(i, t, {"source": s})
        for i, t, s in zip(index.ids, index.texts, index.sources, strict=True)
    ]
