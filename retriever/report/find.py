"""Locating a run's artifacts by their shape (docs/contracts.md), not by fixed paths.

Within ``run_dir`` (three levels deep), and any of them can be given explicitly:

- score folder: ``X/scores/*.parquet`` + ``X/manifest.json`` (+ ``X/summary.json`` thresholds);
- confirm folder: ``X/labels/<task>.parquet`` (+ ``X/summary.json`` rules and cutoffs);
- distilled filters: ``M.bin`` with its manifest ``M.json`` (``"kind": "fasttext-filter"`` or
  ``"fasttext-multilabel"``); held-out predictions for a full PR curve from
  ``M.heldout.parquet`` / ``.jsonl`` (columns ``y``/``label`` and ``p``/``prob``) or a
  ``heldout`` entry ``{"y": [...], "p": [...]}`` in the manifest, else the manifest's metrics
  (one operating point);
- pools: ``X/<task>/*.jsonl.gz|parquet`` in a folder named ``pools``, ``filter`` or ``filtered``;
- training set: ``X/summary.json`` of ``build-dataset``; mixture: a ``mix fit`` json;
- perplexity band: ``X/band.parquet`` + ``X/summary.json`` (``"stage": "band"``);
- LLM ratings: ``X/ratings/`` + ``X/summary.json`` (``X/manifest.json``: ``"stage": "rate"``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retriever.errors import InputError
from retriever.io import read_json

POOL_DIR_NAMES = ("pools", "filter", "filtered")
MAX_DEPTH = 3


@dataclass
class ReportSources:
    """Where each artifact of a run is (``None`` / empty: not found)."""

    scores: Path | None = None
    confirm: Path | None = None
    distill: list[Path] = field(default_factory=list)
    pools: Path | None = None
    dataset: Path | None = None
    mixture: Path | None = None
    arms: Path | None = None  # a `retriever evaluate` summary.json
    band: Path | None = None  # a `retriever band` folder (band.parquet + summary.json)
    rate: Path | None = None  # a `retriever rate` folder (ratings/ + summary.json)
    domains: Path | None = None  # a `retriever domains` folder (domains.parquet + domains.json)


def find_sources(run_dir: str | os.PathLike | None, **given: Any) -> ReportSources:
    """Locate a run's artifacts under ``run_dir``; keyword arguments (``scores=``, ``confirm=``,
    ``distill=[...]``, ``pools=``, ``dataset=``, ``mixture=``) override the search.

    Raises:
        InputError: ``run_dir`` or a given path does not exist.
    """
    src = ReportSources()
    dirs: list[Path] = []
    if run_dir is not None:
        root = Path(run_dir)
        if not root.is_dir():
            raise InputError(f"run folder {root} does not exist")
        dirs = _walk_dirs(root, MAX_DEPTH)
    for d in dirs:
        js = _FolderJson(d)
        if src.scores is None and _is_score_folder(d):
            src.scores = d
        if (
            src.confirm is None
            and (d / "labels").is_dir()
            and any((d / "labels").glob("*.parquet"))
            and _member(js.get("manifest.json"), "stage") != "rate"  # rating labels: no correlation
        ):
            src.confirm = d
        if src.pools is None and d.name in POOL_DIR_NAMES and any(p.is_dir() for p in d.iterdir()):
            src.pools = d
        if src.dataset is None and _is_dataset(d, js):
            src.dataset = d
        for b in sorted(d.glob("*.bin")):
            m = b.with_suffix(".json")
            if _member(js.get(m.name), "kind") in ("fasttext-filter", "fasttext-multilabel"):
                src.distill.append(m)
        if src.rate is None and (d / "ratings").is_dir():
            if (
                _member(js.get("manifest.json"), "stage") == "rate"
                and (d / "summary.json").is_file()
            ):
                src.rate = d
        if src.band is None and (d / "band.parquet").is_file():
            if _member(js.get("summary.json"), "stage") == "band":
                src.band = d
        if src.domains is None and (d / "domains.parquet").is_file():
            if (d / "domains.json").is_file():
                src.domains = d
        if src.arms is None and _is_arms(js.get("summary.json")):
            src.arms = d / "summary.json"
        if src.mixture is None:
            for j in sorted(d.glob("*mixture*.json")):
                if _is_mixture(js.get(j.name)):
                    src.mixture = j
                    break
    for key, value in given.items():
        if value is None or value == []:
            continue
        if key == "distill":
            paths = [Path(v) for v in value]
            paths = [p.with_suffix(".json") if p.suffix == ".bin" else p for p in paths]
            for p in paths:
                if not p.exists():
                    raise InputError(f"distill manifest {p} does not exist")
            src.distill = paths
        else:
            p = Path(value)
            if not p.exists():
                raise InputError(f"{key} artifact {p} does not exist")
            setattr(src, key, p)
    return src


def _walk_dirs(root: Path, depth: int) -> list[Path]:
    """``root`` and its sub-folders up to ``depth`` levels, breadth first (hidden ones skipped)."""
    out, frontier = [root], [root]
    for _ in range(depth):
        nxt = []
        for d in frontier:
            try:
                nxt.extend(
                    sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
                )
            except OSError:
                continue
        out.extend(nxt)
        frontier = nxt
    return out


def _is_score_folder(d: Path) -> bool:
    """A score folder: a manifest and ``scores/*.parquet`` with a ``score_<task>`` column (the
    filter's ``pools/scores/`` of ``prob_<task>`` has the same shape otherwise)."""
    from retriever._deps import require
    from retriever.names import SCORE, score_tasks

    files = sorted((d / "scores").glob("*.parquet")) if (d / "scores").is_dir() else []
    if not (d / "manifest.json").exists() or not files:
        return False
    try:
        names = require("pyarrow.parquet").ParquetFile(files[0]).schema_arrow.names
    except Exception:  # unreadable: not this stage's output
        return False
    return bool(score_tasks(names, SCORE))


class _FolderJson:
    """The JSON files of one folder, each parsed at most once while the folder is sniffed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._parsed: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        """The parsed ``folder/name``; ``None`` when it is not a file or not JSON."""
        if name not in self._parsed:
            path = self.folder / name
            try:
                self._parsed[name] = read_json(path) if path.is_file() else None
            except Exception:  # unreadable or not JSON: not this stage's output
                self._parsed[name] = None
        return self._parsed[name]


def _member(obj: Any, key: str) -> Any:
    """``obj[key]`` of a JSON object; ``None`` for anything else."""
    return obj.get(key) if isinstance(obj, dict) else None


def _is_dataset(d: Path, js: _FolderJson) -> bool:
    if not (d / "summary.json").exists():
        return False
    return _member(_member(js.get("manifest.json"), "settings"), "stage") == "build-dataset"


def _is_mixture(d: Any) -> bool:
    return isinstance(d, dict) and "weights" in d and "held_out_spearman" in d


def _is_arms(d: Any) -> bool:
    """A ``retriever evaluate`` summary: settings with arms, and the interval table."""
    return isinstance(d, dict) and "table" in d and "arms" in (d.get("settings") or {})
