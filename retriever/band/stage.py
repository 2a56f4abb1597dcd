"""The perplexity band: BPB under one small reference model, kept between two quantiles.

Every document of ``--docs`` (a score folder or a corpus; ``max_docs``: a seeded sample of it) gets
its bits per byte under the reference model, through the confirm stage's BPB code: the same
batching (length-sorted, padded to ``max_batch_tokens``), the same rolling windows, the same
cache (``OUT/bpb/<model>/part-*.parquet``, resumable, refused when the model's settings change).
The band is then a cheap decision over those numbers (RegMix / quality filtering): documents
below the ``low`` quantile (boilerplate, repeated lines, lists: too predictable) and above the
``high`` quantile (noise, tables of numbers, broken encodings) are out.

Layout of ``OUT``::

    bpb/                 the BPB cache (see :mod:`retriever.confirm.matrix`)
    band.parquet         id, bpb, n_bytes, in_band, side, score_<task> (when the input is scored)
    summary.json         the cuts (quantiles and BPB values), counts, histogram, Spearman of BPB
                         with each task's similarity score, and the cost
    manifest.json        the input and its fingerprint (a changed input is refused)

A re-band (other ``low`` / ``high``) reads the cache and computes nothing.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retriever._deps import require
from retriever.corpus.readers import ReaderConfig
from retriever.errors import ConfigError, InputError
from retriever.io import AtomicWriter, write_json_atomic
from retriever.names import SCORE, score_name
from retriever.stats import Stats

HIST_BINS = 60


@dataclass(frozen=True)
class BandConfig:
    """Settings of ``retriever band`` (the ``[band]`` section of a run config). The BPB
    computation's fields, ``device`` to ``block_docs``, are those of
    :class:`~retriever.confirm.stage.BpbOptions`.

    Attributes:
        model: reference causal LM: Hub id or local folder.
        name: cache name of the model (default: the last part of ``model``).
        tokenizer: tokenizer id or folder (default: the model's), as in a confirm panel entry.
        max_length: tokens per window (default: the model config's), as in a confirm panel entry.
        low: lower quantile of BPB kept (``0 <= low < high <= 1``).
        high: upper quantile of BPB kept.
        max_docs: BPB for a seeded sample of this many documents (``None``: all).
        seed: seeds that sample.
        device: cuda or cpu (default: cuda when available).
        dtype: weights dtype (auto: bf16 on CUDA, fp32 on CPU).
        max_batch_tokens: padded tokens per forward.
        max_batch_size: windows per forward.
        block_docs: documents scored together and written as one cache part.
        reader: how corpus records are read (plain corpus input; a run: ``[corpus]``'s options).
    """

    model: str = ""
    name: str | None = None
    tokenizer: str | None = None
    max_length: int | None = None
    low: float = 0.1
    high: float = 0.9
    max_docs: int | None = None
    seed: int = 0
    device: str | None = None
    dtype: str = "auto"
    max_batch_tokens: int = 8192
    max_batch_size: int = 64
    block_docs: int = 256
    reader: ReaderConfig = ReaderConfig()

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("the perplexity band needs a reference model (--model PATH or id)")
        for k in ("low", "high"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"band {k} must be a quantile in [0, 1], got {v!r}")
        if self.low >= self.high:
            raise ConfigError(f"band low ({self.low}) must be below high ({self.high})")
        if self.max_docs is not None and (
            isinstance(self.max_docs, bool)
            or not isinstance(self.max_docs, int)
            or self.max_docs < 1
        ):
            raise ConfigError(f"band max_docs must be an integer >= 1, got {self.max_docs!r}")

    @property
    def model_name(self) -> str:
        if self.name:
            return self.name
        base = Path(self.model.rstrip("/")).name or "reference"
        return re.sub(r"[^A-Za-z0-9._-]", "_", base)


def band_cuts(bpb: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The BPB values at quantiles ``low`` and ``high`` of the finite entries of ``bpb``.

    Returns ``(nan, nan)`` when no entry is finite.
    """
    x = np.asarray(bpb, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return math.nan, math.nan
    lo, hi = np.quantile(x, [low, high])
    return float(lo), float(hi)


def band_side(bpb: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per document ``"in"``, ``"below"``, ``"above"`` or ``"none"`` (no BPB); the cuts belong to
    the band."""
    x = np.asarray(bpb, dtype=np.float64)
    side = np.full(len(x), "none", dtype=object)
    ok = np.isfinite(x)
    side[ok & (x < lo)] = "below"
    side[ok & (x > hi)] = "above"
    side[ok & (x >= lo) & (x <= hi)] = "in"
    return side


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation over the pairs where both are finite (NaN under 3 pairs)."""
    from retriever.metrics import spearman as _spearman

    return _spearman(x, y)


class PerplexityBand:
    """BPB of every document under the reference model, then the band; one call, :meth:`run`."""

    def __init__(self, config: BandConfig, out_dir: str | os.PathLike, progress: bool = False):
        self.config = config
        self.out = Path(out_dir)
        self.progress = progress

    def _ids(self, docs) -> list[str]:
        c = self.config
        if c.max_docs is None or docs.n_docs <= c.max_docs:
            return list(docs.ids)
        rng = np.random.default_rng(c.seed)
        pick = np.sort(rng.choice(docs.n_docs, size=c.max_docs, replace=False))
        return [docs.ids[i] for i in pick]

    def run(self, docs) -> dict[str, Any]:
        """Band the documents of ``docs`` (a :class:`~retriever.confirm.docs.DocSet`)."""
        from retriever.confirm.panel import Panel, PanelModel
        from retriever.confirm.stage import BpbOptions, ConfirmSettings, ConfirmStage

        c = self.config
        model = PanelModel(
            name=c.model_name, path=c.model, tokenizer=c.tokenizer, max_length=c.max_length
        )
        opts = BpbOptions(
            device=c.device,
            dtype=c.dtype,
            max_batch_tokens=c.max_batch_tokens,
            max_batch_size=c.max_batch_size,
            block_docs=c.block_docs,
        )
        ids = self._ids(docs)
        t0 = time.perf_counter()
        stage = ConfirmStage(
            Panel(models=(model,), name="band"),
            self.out,
            ConfirmSettings(bpb=opts),
            progress=self.progress,
        )
        matrix = stage.compute_bpb(docs, ids)  # cached under OUT/bpb, checked against the input
        rep = matrix.report["models"].get(model.name, {})
        if not matrix.models:
            raise InputError(
                f"the reference model {c.model!r} gave no BPB ({rep.get('status')}: "
                f"{rep.get('error', 'incomplete')}); check --model, or see "
                f"{self.out}/bpb/report.json"
            )
        bpb = matrix.bpb[:, 0]  # [n_docs]
        lo, hi = band_cuts(bpb, c.low, c.high)
        side = band_side(bpb, lo, hi)
        stats = Stats()
        stats.inc("seen", len(ids) + len(docs.rejected))
        for r in docs.rejected:
            stats.inc(f"rejected/{r.reason}")
        stats.inc("kept", int((side == "in").sum()))
        stats.inc("dropped/below_band", int((side == "below").sum()))
        stats.inc("dropped/above_band", int((side == "above").sum()))
        stats.inc("rejected/no_bpb", int((side == "none").sum()))
        pos = {d: i for i, d in enumerate(docs.ids)}
        rows = np.array([pos[d] for d in ids], dtype=np.int64)
        sims = {t: docs.sim[t][rows] for t in docs.score_tasks}  # [n] per task
        self._write(ids, bpb, matrix.n_bytes, side, sims)
        finite = bpb[np.isfinite(bpb)]
        counts, edges = (
            np.histogram(finite, bins=HIST_BINS) if len(finite) else (np.zeros(0), np.zeros(1))
        )
        secs = time.perf_counter() - t0
        summary = {
            "stage": "band",
            "model": c.model,
            "model_name": model.name,
            "low": c.low,
            "high": c.high,
            "cut_low_bpb": lo,
            "cut_high_bpb": hi,
            "docs_in": stats.counts["seen"],
            "in_band": stats.counts["kept"],
            "below_band": stats.counts["dropped/below_band"],
            "above_band": stats.counts["dropped/above_band"],
            "rejected": {
                k.split("/", 1)[1]: v for k, v in stats.counts.items() if k.startswith("rejected/")
            },
            "balanced": stats.balanced(),
            "sampled": c.max_docs is not None and len(ids) < docs.n_docs,
            "bpb_mean": float(finite.mean()) if len(finite) else None,
            "spearman_bpb_vs_similarity": {t: spearman(bpb, s) for t, s in sims.items()},
            "histogram": {"counts": counts.astype(int).tolist(), "edges": edges.tolist()},
            "cost": {
                "computed_docs": rep.get("computed", 0),
                "cached_docs": rep.get("cached", 0),
                "tokens": rep.get("tokens", 0),
                "bpb_seconds": rep.get("seconds", 0.0),
                "tokens_per_s": rep.get("tokens_per_s"),
                "docs_per_s": round(rep["computed"] / rep["seconds"], 2)
                if rep.get("computed") and rep.get("seconds")
                else None,
                "device": matrix.report.get("device"),
                "dtype": matrix.report.get("dtype"),
            },
            "settings": {
                **{k: v for k, v in asdict(c).items() if k != "reader"},
                **c.reader.to_dict(),
            },
            "seconds": round(secs, 3),
        }
        write_json_atomic(self.out / "summary.json", summary)
        return summary

    def _write(self, ids, bpb, n_bytes, side, sims: dict[str, np.ndarray]) -> Path:
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        cols = {
            "id": pa.array(ids, pa.string()),
            "bpb": pa.array(bpb, pa.float64()),
            "n_bytes": pa.array(n_bytes, pa.int64()),
            "in_band": pa.array(side == "in", pa.bool_()),
            "side": pa.array(list(side), pa.string()),
        }
        for t, s in sims.items():
            cols[score_name(SCORE, t)] = pa.array(s, pa.float64())
        p = self.out / "band.parquet"
        with AtomicWriter(p) as tmp:
            pq.write_table(pa.table(cols), tmp)
        return p


def band_docs(
    docs: str | os.PathLike | Sequence[str],
    out: str | os.PathLike,
    config: BandConfig,
    reader=None,
    progress: bool = False,
) -> dict[str, Any]:
    """The perplexity band of ``docs`` (a score folder or corpus paths) into ``out``."""
    from retriever.confirm.docs import open_docs

    rd = reader or config.reader.reader()
    return PerplexityBand(config, out, progress=progress).run(open_docs(docs, rd))


def read_band(out_dir: str | os.PathLike):
    """``OUT/band.parquet`` as a ``pyarrow.Table``.

    Raises:
        InputError: no band there.
    """
    pq = require("pyarrow.parquet")
    p = Path(out_dir) / "band.parquet"
    if not p.is_file():
        raise InputError(f"no perplexity band in {out_dir} (run `retriever band` first)")
    return pq.read_table(p)
