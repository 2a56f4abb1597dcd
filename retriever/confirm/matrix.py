"""The cached BPB matrix: documents x panel models, one model at a time, resumable.

Layout under ``OUT/bpb/``::

    <model>/manifest.json        what the numbers depend on (path, tokenizer, context, dtype, ...)
    <model>/part-00000.parquet   id, bpb, nats, n_tokens, n_bytes, status   (one per block of docs)
    matrix.parquet               id, n_bytes, one float64 BPB column per usable model
    report.json                  per model: ok / failed (why) / incomplete, NaN documents, tokens/s

A part is written atomically once its block is scored, so a killed run loses at most one block and a
rerun computes only the ids no part holds yet: adding a model to the panel computes that model only,
adding documents computes those documents only. A model whose settings changed (another context
length or dtype) raises :class:`~retriever.errors.ResumeError` instead of mixing numbers.

A model that cannot be loaded, or that fails while scoring, is reported in ``report.json`` and left
out of the matrix; a document on which a model gives NaN keeps NaN in the matrix (never averaged
away) and is listed in the report.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retriever._deps import require
from retriever.confirm.bpb import LMScorer, resolve_device, resolve_dtype
from retriever.confirm.panel import Panel, PanelModel
from retriever.data import Doc
from retriever.errors import ResumeError, RetrieverError
from retriever.io import AtomicWriter, write_json_atomic
from retriever.manifest import check_or_write_manifest, file_fingerprint, fingerprint
from retriever.progress import progress_bar
from retriever.step import BatchStep

log = logging.getLogger(__name__)

NAN_IDS_KEPT = 50  # NaN document ids listed per model in report.json


def weights_fingerprint(path: str) -> str | None:
    """Fingerprint of a local model folder's weight and config files (``None`` for a Hub id).

    A model retrained in place keeps its name and path; without this its cached BPB would be reused.
    """
    p = Path(path)
    if not p.is_dir():
        return None
    files = sorted(
        f
        for f in p.iterdir()
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".json", ".pt")
    )
    return fingerprint([[f.name, file_fingerprint(f)] for f in files])


@dataclass(frozen=True)
class MatrixResult:
    """The matrix for the requested ids.

    Attributes:
        ids: ``[n_docs]`` in request order.
        models: usable models (matrix columns), panel order.
        bpb: ``[n_docs, n_models]`` float64, NaN where a model could not score a document.
        n_bytes: ``[n_docs]`` UTF-8 bytes of each document (0 when no model scored it).
        report: the ``report.json`` content.
    """

    ids: list[str]
    models: list[str]
    bpb: np.ndarray
    n_bytes: np.ndarray
    report: dict[str, Any]


class BpbMatrix:
    """Computes, caches and assembles the BPB of documents under every model of a panel.

    Args:
        out_dir: run folder (the cache is ``out_dir/bpb``).
        panel: the models.
        device, dtype, max_batch_tokens, max_batch_size, context_tokens: :class:`LMScorer` options.
        block_docs: documents scored together and written as one part (memory: their token ids;
            bigger blocks bucket lengths better, smaller ones lose less to a kill).
        progress: show a tqdm bar per model.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        panel: Panel,
        device: str | None = None,
        dtype: str = "auto",
        max_batch_tokens: int = 8192,
        max_batch_size: int = 64,
        context_tokens: int = 1,
        block_docs: int = 256,
        progress: bool = False,
    ):
        if block_docs < 1:
            raise ValueError("block_docs must be >= 1")
        self.dir = Path(out_dir) / "bpb"
        self.panel = panel
        self.device = resolve_device(device)
        self.dtype = dtype
        self.dtype_name = str(resolve_dtype(dtype, self.device)).replace("torch.", "")
        self.scorer_kwargs: dict[str, Any] = dict(
            device=self.device,
            dtype=dtype,
            max_batch_tokens=max_batch_tokens,
            max_batch_size=max_batch_size,
            context_tokens=context_tokens,
        )
        self.context_tokens = context_tokens
        self.block_docs = block_docs
        self.progress = progress

    # -- cache ------------------------------------------------------------------------------------
    def model_settings(self, m: PanelModel) -> dict[str, Any]:
        """What the cached numbers of ``m`` depend on; a change means a new cache."""
        return {
            "name": m.name,
            "path": m.path,
            "tokenizer": m.tokenizer or m.path,
            "revision": m.revision,
            "max_length": m.max_length,
            "context_tokens": self.context_tokens,
            "dtype": self.dtype_name,
            "weights": weights_fingerprint(m.path),
            "definition": "bits per byte, all tokens scored, first on BOS/EOS, rolling windows",
        }

    def _parts(self, name: str) -> list[Path]:
        return sorted((self.dir / name).glob("part-*.parquet"))

    def cached(self, name: str, columns: list[str] | None = None) -> dict[str, list]:
        """Every cached row of model ``name`` as columns (empty when nothing is cached)."""
        pq = require("pyarrow.parquet")
        cols: dict[str, list] = {}
        for p in self._parts(name):
            t = pq.read_table(p, columns=columns).to_pydict()
            for k, v in t.items():
                cols.setdefault(k, []).extend(v)
        return cols

    def _write_part(self, name: str, docs: list[Doc], res) -> None:
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        n = len(self._parts(name))
        table = pa.table(
            {
                "id": pa.array([d.id for d in docs], pa.string()),
                "bpb": pa.array(res.bpb, pa.float64()),
                "nats": pa.array(res.nats, pa.float64()),
                "n_tokens": pa.array(res.n_tokens, pa.int64()),
                "n_bytes": pa.array(res.n_bytes, pa.int64()),
                "status": pa.array(res.status, pa.string()),
            }
        )
        with AtomicWriter(self.dir / name / f"part-{n:05d}.parquet") as tmp:
            pq.write_table(table, tmp)

    # -- compute ----------------------------------------------------------------------------------
    def run(self, ids: list[str], iter_docs) -> MatrixResult:
        """Make sure every model has a BPB for every id, then assemble the matrix.

        Args:
            ids: the documents wanted (unique), in output order.
            iter_docs: ``iter_docs(ids: set[str]) -> Iterator[Doc]`` streaming those documents
                (called once per model that has something to compute).

        Returns:
            The assembled :class:`MatrixResult` (also written to ``bpb/matrix.parquet``).
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {
            "device": self.device,
            "dtype": self.dtype_name,
            "n_docs": len(ids),
            "models": {},
        }
        for m in self.panel.models:
            report["models"][m.name] = self._run_model(m, ids, iter_docs)
        return self.assemble(ids, report)

    def _run_model(self, m: PanelModel, ids: list[str], iter_docs) -> dict[str, Any]:
        try:
            check_or_write_manifest(self.dir / m.name, self.model_settings(m))
        except ResumeError as e:
            raise ResumeError(
                f"model {m.name!r}: its cached BPB in {self.dir / m.name} was made with other "
                f"settings ({e}). Rename the model in the panel, use a new --out, or delete that "
                "folder."
            ) from e
        done = set(self.cached(m.name, ["id"]).get("id", []))
        missing = [i for i in ids if i not in done]
        rep: dict[str, Any] = {
            "status": "ok",
            "cached": len(ids) - len(missing),
            "computed": 0,
            "tokens": 0,
            "seconds": 0.0,
        }
        if not missing:
            return rep
        t0 = time.perf_counter()
        try:
            scorer = LMScorer(m, **self.scorer_kwargs)
        except RetrieverError as e:
            log.warning("model %s failed to load: %s", m.name, e)
            return {**rep, "status": "failed", "error": str(e)}
        rep["max_length"] = scorer.max_length
        bar = progress_bar(
            total=len(missing), desc=f"bpb {m.name}", unit="doc", progress=self.progress
        )
        step = BpbBlocks(self, m.name, scorer, self.block_docs, on_block=bar.update)
        try:
            for _ in step.run(iter_docs(set(missing))):
                pass
        except RuntimeError as e:  # CUDA OOM, a model that breaks on some input
            log.warning("model %s failed while scoring: %s", m.name, e)
            rep.update(status="failed", error=f"{type(e).__name__}: {e}")
        finally:
            rep["computed"] = step.stats.counts["kept"]
            rep["tokens"] = step.stats.counts["tokens"]
            bar.close()
            del scorer, step
            gc.collect()
            torch = require("torch")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        rep["seconds"] = round(time.perf_counter() - t0, 3)
        rep["tokens_per_s"] = round(rep["tokens"] / rep["seconds"], 1) if rep["seconds"] else None
        return rep

    def assemble(self, ids: list[str], report: dict[str, Any] | None = None) -> MatrixResult:
        """Build ``[ids x usable models]`` from the cache and write ``matrix.parquet`` and the
        report.

        A model is usable when it did not fail and its cache covers every id.
        """
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        report = report or {"n_docs": len(ids), "models": {}}
        pos = {d: i for i, d in enumerate(ids)}
        n_bytes = np.zeros(len(ids), dtype=np.int64)
        cols: list[np.ndarray] = []
        names: list[str] = []
        for m in self.panel.models:
            rep = report["models"].setdefault(m.name, {"status": "ok"})
            c = self.cached(m.name, ["id", "bpb", "n_bytes", "status"])
            col = np.full(len(ids), np.nan)
            have = np.zeros(len(ids), dtype=bool)
            nan_ids: list[str] = []
            for doc_id, b, nb, st in zip(
                c.get("id", []),
                c.get("bpb", []),
                c.get("n_bytes", []),
                c.get("status", []),
                strict=True,
            ):
                i = pos.get(doc_id)
                if i is None:
                    continue
                have[i] = True
                n_bytes[i] = nb
                if st == "ok" and b is not None:
                    col[i] = b
                else:
                    nan_ids.append(doc_id)
            rep["nan_docs"] = len(nan_ids)
            if nan_ids:
                rep["nan_ids"] = nan_ids[:NAN_IDS_KEPT]
            if rep.get("status") == "failed":
                continue
            if not have.all():
                rep["status"] = "incomplete"
                rep["missing_docs"] = int((~have).sum())
                continue
            cols.append(col)
            names.append(m.name)
        bpb = np.stack(cols, axis=1) if cols else np.zeros((len(ids), 0))  # [n_docs, n_models]
        table = {"id": pa.array(ids, pa.string()), "n_bytes": pa.array(n_bytes, pa.int64())}
        for j, name in enumerate(names):
            table[name] = pa.array(bpb[:, j], pa.float64())
        with AtomicWriter(self.dir / "matrix.parquet") as tmp:
            pq.write_table(pa.table(table), tmp)
        report["usable_models"] = names
        tok = sum(r.get("tokens", 0) for r in report["models"].values())
        sec = sum(r.get("seconds", 0.0) for r in report["models"].values())
        report["tokens"] = tok
        report["seconds"] = round(sec, 3)
        report["tokens_per_s"] = round(tok / sec, 1) if sec else None
        write_json_atomic(self.dir / "report.json", report)
        return MatrixResult(ids=list(ids), models=names, bpb=bpb, n_bytes=n_bytes, report=report)


def read_matrix(out_dir: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """``(ids, models, bpb[n_docs, n_models], n_bytes[n_docs])`` from ``OUT/bpb/matrix.parquet``."""
    pq = require("pyarrow.parquet")
    t = pq.read_table(Path(out_dir) / "bpb" / "matrix.parquet").to_pydict()
    ids = t.pop("id")
    n_bytes = np.asarray(t.pop("n_bytes"), dtype=np.int64)
    models = list(t)
    bpb = np.array([t[m] for m in models], dtype=np.float64).T.reshape(len(ids), len(models))
    return ids, models, bpb, n_bytes


class BpbBlocks(BatchStep):
    """One model's BPB of a stream of documents, ``block_docs`` at a time, each block written as
    one cache part (:meth:`BpbMatrix._write_part`) once scored.

    Counts ``tokens`` scored; ``kept`` is the documents written. ``on_block(n)`` is called after
    each part (a progress bar's ``update``).
    """

    name = "bpb"

    def __init__(
        self,
        matrix: BpbMatrix,
        model: str,
        scorer: LMScorer,
        block_docs: int,
        on_block: Callable[[int], Any] | None = None,
    ) -> None:
        super().__init__(block_docs)
        self.matrix, self.model, self.scorer, self.on_block = matrix, model, scorer, on_block

    def process_batch(self, docs: list[Doc]) -> list[Doc]:
        res = self.scorer.bits_per_byte([d.text for d in docs])
        self.matrix._write_part(self.model, docs, res)
        self.stats.inc("tokens", int(res.n_tokens.sum()))
        if self.on_block is not None:
            self.on_block(len(docs))
        return docs
