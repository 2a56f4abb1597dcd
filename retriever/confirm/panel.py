"""The LM panel: which causal LMs score the documents, and how good each one is at each task.

A panel is one TOML file::

    name = "tiny"
    scores = "scores.csv"          # optional: model,task,metric,score rows (relative to this file)

    [[models]]
    name = "tiny-0"                # column name in the BPB matrix; unique, [A-Za-z0-9._-]
    path = "models/tiny-0"         # Hub id or local folder (relative paths are to this file)
    # tokenizer = "..."            # optional: another tokenizer id/folder (default: `path`)
    # revision = "main"            # optional Hub revision
    # max_length = 1024            # optional context length (default: the model config's)
    [models.scores]                # optional inline scores: task -> accuracy in [0, 1]
    function_calling = 0.41

Scores say how good a model is on a task; they become errors (lower is better) for the estimators:
``acc``/``acc_norm`` give ``error = 1 - score``, ``neg_bpb`` (the scorecard's metric for gold
without choices, the negative bits per byte on the gold texts) gives ``error = -score``. Scores come
inline, from the panel's ``scores`` file, or from ``retriever confirm scorecard``; nothing invents
them.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from retriever.config import read_toml
from retriever.errors import ConfigError, InputError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = __import__("tomli")

METRICS = ("acc", "acc_norm", "neg_bpb")
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_MODEL_KEYS = {"name", "path", "tokenizer", "revision", "max_length", "scores", "metric"}


@dataclass(frozen=True)
class PanelModel:
    """One causal LM of the panel.

    Attributes:
        name: unique short name (matrix column, cache folder).
        path: Hub id or local folder.
        tokenizer: tokenizer id or folder; ``None`` uses ``path`` (``AutoTokenizer``).
        revision: Hub revision, recorded in the cache manifest.
        max_length: tokens per forward window; ``None`` reads it from the model config.
    """

    name: str
    path: str
    tokenizer: str | None = None
    revision: str | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class Score:
    """One model's result on one task (higher is better for every metric)."""

    model: str
    task: str
    metric: str
    score: float

    @property
    def error(self) -> float:
        """Lower is better: ``1 - acc`` for accuracies, BPB for ``neg_bpb``."""
        return 1.0 - self.score if self.metric in ("acc", "acc_norm") else -self.score


@dataclass(frozen=True)
class Panel:
    """Models plus their task scores.

    Attributes:
        models: the panel, in matrix column order.
        scores: every known score.
        name: a label for reports.
        source: the TOML file it came from (``None`` when built in code).
    """

    models: tuple[PanelModel, ...]
    scores: tuple[Score, ...] = ()
    name: str = "panel"
    source: str | None = None
    scores_file: str | None = None
    metric_preference: tuple[str, ...] = field(default=("acc_norm", "acc", "neg_bpb"))

    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def tasks(self) -> list[str]:
        """Tasks with a score for at least one model, sorted."""
        return sorted({s.task for s in self.scores})

    def with_scores(self, scores: list[Score]) -> Panel:
        """A copy where ``scores`` replace any earlier score of the same (model, task, metric)."""
        keep = {(s.model, s.task, s.metric): s for s in self.scores}
        for s in scores:
            keep[(s.model, s.task, s.metric)] = s
        return replace(self, scores=tuple(keep.values()))

    def errors(self, task: str, metric: str | None = None) -> tuple[list[str], np.ndarray, str]:
        """Models scored on ``task`` and their errors.

        Args:
            task: task name.
            metric: one of :data:`METRICS`; ``None`` takes the first of ``acc_norm``, ``acc``,
                ``neg_bpb`` that every scored model has.

        Returns:
            ``(model names in panel order, err[n] float64, metric used)``.

        Raises:
            ConfigError: no model has a score for the task (the message says how to get one).
        """
        by_metric: dict[str, dict[str, float]] = {}
        for s in self.scores:
            if s.task == task:
                by_metric.setdefault(s.metric, {})[s.model] = s.error
        if not by_metric:
            where = f" --out {self.scores_file}" if self.scores_file else ""
            raise ConfigError(
                f"no model of panel {self.name!r} has a score for task {task!r} (known tasks: "
                f"{self.tasks() or 'none'}). Add scores to the panel, or compute them with "
                f"`retriever confirm scorecard --models PANEL --task {task} --gold FILE{where}`."
            )
        if metric is None:
            # the metric that covers the most panel models, ties broken by preference
            metric = max(
                by_metric,
                key=lambda m: (
                    len(by_metric[m]),
                    -self.metric_preference.index(m) if m in self.metric_preference else -99,
                ),
            )
        if metric not in by_metric:
            raise ConfigError(f"task {task!r} has no {metric!r} scores (has: {sorted(by_metric)})")
        errs = by_metric[metric]
        names = [m.name for m in self.models if m.name in errs]
        return names, np.array([errs[n] for n in names], dtype=np.float64), metric


def load_panel(path: str | os.PathLike, scores: str | os.PathLike | None = None) -> Panel:
    """Read a panel TOML (see the module docstring), plus an optional scores CSV/TOML.

    Args:
        path: the panel file.
        scores: a scores file overriding the panel's own (``retriever confirm scorecard`` output).

    Raises:
        InputError: the file is missing or not TOML.
        ConfigError: a key is unknown, a name repeats, a path or score is invalid.
    """
    p, cfg = read_toml(path, "panel file", "see configs/panels/ for examples", error=InputError)
    unknown = set(cfg) - {"name", "scores", "models"}
    if unknown:
        raise ConfigError(
            f"{p}: unknown top-level key(s) {sorted(unknown)}; expected name, scores, models"
        )
    raw_models = cfg.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise ConfigError(f"{p}: needs at least one [[models]] table with name and path")
    models: list[PanelModel] = []
    inline: list[Score] = []
    for i, m in enumerate(raw_models):
        if not isinstance(m, dict):
            raise ConfigError(f"{p}: models[{i}] must be a table")
        bad = set(m) - _MODEL_KEYS
        if bad:
            raise ConfigError(
                f"{p}: models[{i}] has unknown key(s) {sorted(bad)}; allowed {sorted(_MODEL_KEYS)}"
            )
        name, mpath = m.get("name"), m.get("path")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(
                f"{p}: models[{i}].name {name!r} must be a non-empty [A-Za-z0-9._-] string"
            )
        if not isinstance(mpath, str) or not mpath:
            raise ConfigError(f"{p}: model {name!r} needs a path (Hub id or local folder)")
        max_length = m.get("max_length")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 2):
            raise ConfigError(f"{p}: model {name!r} max_length must be an integer >= 2")
        tok = m.get("tokenizer")
        models.append(
            PanelModel(
                name=name,
                path=_resolve(p, mpath),
                tokenizer=_resolve(p, tok) if isinstance(tok, str) else None,
                revision=m.get("revision"),
                max_length=max_length,
            )
        )
        metric = m.get("metric", "acc")
        for task, val in (m.get("scores") or {}).items():
            inline.append(_score(p, name, task, metric, val))
    names = [m.name for m in models]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{p}: model name(s) {dup} repeat; names must be unique")
    own = cfg.get("scores")
    if own is not None and not isinstance(own, str):
        raise ConfigError(f"{p}: `scores` must be a path to a CSV/TOML file")
    own_file = str(p.parent / own) if own and not os.path.isabs(own) else own
    panel = Panel(
        models=tuple(models),
        scores=tuple(inline),
        name=str(cfg.get("name", p.stem)),
        source=str(p),
        scores_file=own_file,
    )
    # the panel's own scores file may not exist yet: `retriever confirm scorecard` writes it
    files = [f for f in (own_file, scores) if f and (f == scores or Path(f).is_file())]
    for f in files:
        panel = panel.with_scores(load_scores(f, known_models=names))
    return panel


def load_scores(path: str | os.PathLike, known_models: list[str] | None = None) -> list[Score]:
    """Read scores from CSV (``model,task,metric,score``; ``metric`` optional, default ``acc``) or
    TOML.

    The TOML form is ``[scores.<model>] <task> = value`` (metric ``acc``) or a list
    ``[[score]] model=..., task=..., metric=..., score=...``.

    Raises:
        InputError: missing file or unknown format.
        ConfigError: a row names an unknown model or metric, or a score is out of range.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"scores file {p} does not exist")
    out: list[Score] = []
    if p.suffix == ".csv":
        with open(p, newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"model", "task", "score"}
            if not reader.fieldnames or not need <= set(reader.fieldnames):
                raise ConfigError(
                    f"{p}: CSV needs columns model,task,score (and optionally metric)"
                )
            for row in reader:
                out.append(
                    _score(p, row["model"], row["task"], row.get("metric") or "acc", row["score"])
                )
    elif p.suffix == ".toml":
        cfg = tomllib.loads(p.read_text())
        for model, tasks in (cfg.get("scores") or {}).items():
            for task, val in tasks.items():
                out.append(_score(p, model, task, "acc", val))
        for row in cfg.get("score") or []:
            out.append(
                _score(
                    p, row.get("model"), row.get("task"), row.get("metric", "acc"), row.get("score")
                )
            )
    else:
        raise InputError(f"{p}: scores must be .csv or .toml")
    if known_models is not None:
        unknown = sorted({s.model for s in out} - set(known_models))
        if unknown:
            raise ConfigError(
                f"{p}: score rows name model(s) {unknown} that are not in the panel {known_models}"
            )
    return out


def write_scores_csv(path: str | os.PathLike, scores: list[Score]) -> None:
    """Write scores as the CSV :func:`load_scores` reads (atomically)."""
    from retriever.io import AtomicWriter

    with AtomicWriter(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "task", "metric", "score"])
        for s in scores:
            w.writerow([s.model, s.task, s.metric, repr(float(s.score))])


def _score(p: Path, model, task, metric, val) -> Score:
    if not isinstance(model, str) or not isinstance(task, str) or not model or not task:
        raise ConfigError(f"{p}: a score needs a model and a task name, got {model!r}, {task!r}")
    if metric not in METRICS:
        raise ConfigError(
            f"{p}: metric {metric!r} for {model}/{task} must be one of {list(METRICS)}"
        )
    try:
        v = float(val)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{p}: score {val!r} for {model}/{task} is not a number") from e
    if not np.isfinite(v) or (metric != "neg_bpb" and not 0.0 <= v <= 1.0):
        raise ConfigError(
            f"{p}: {metric} score {v} for {model}/{task} must be finite (and in [0, 1] for "
            "accuracies)"
        )
    return Score(model=model, task=task, metric=metric, score=v)


def _resolve(panel_file: Path, spec: str) -> str:
    """Relative local paths are relative to the panel file; Hub ids stay as they are."""
    if os.path.isabs(spec):
        return spec
    cand = panel_file.parent / spec
    if cand.exists() or spec.startswith((".", "..")):
        return str(cand)
    return spec
