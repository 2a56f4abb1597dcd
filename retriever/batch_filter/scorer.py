"""fastText scoring of documents for one or several tasks: ``prob_<task>`` = P(positive).

Scoring is kept apart from deciding: :class:`FastTextScorer` (a :class:`~retriever.step.BatchStep`)
only computes probabilities (``score_batch`` / ``score_texts``: a :class:`ProbBatch` of arrays),
yields them beside their documents (``scored``, the filter's shard job) or writes them into
``Doc.metadata`` (``annotate``, which ``run`` applies); thresholds are applied by the caller, so
re-thresholding never re-scores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from retriever._deps import require
from retriever.data import Doc
from retriever.distill.labels import POSITIVE, fasttext_text, model_normalization
from retriever.distill.train import LABEL_PREFIX, model_manifest_path
from retriever.errors import ConfigError, InputError, ModelMismatchError
from retriever.io import read_json
from retriever.names import PROB, score_name
from retriever.step import BatchStep

if TYPE_CHECKING:
    from fasttext.FastText import _FastText

DEFAULT_MODEL_NAME = "filter.bin"
_MODELS: dict[tuple[str, int], _FastText] = {}  # one load per process (workers run many shards)


def load_model(path: str | os.PathLike) -> _FastText:
    """Load a fastText model once per process (keyed by path and modification time).

    Raises:
        InputError: the file is missing or not a fastText model.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"fastText model {p} does not exist; train it with "
            "`retriever distill --labels LABELS --task TASK --out PATH`"
        )
    key = (str(p.resolve()), p.stat().st_mtime_ns)
    if key not in _MODELS:
        fasttext = require("fasttext")
        try:
            _MODELS[key] = fasttext.load_model(str(p))
        except ValueError as e:
            raise InputError(f"{p} is not a fastText model ({e})") from e
    return _MODELS[key]


def resolve_models(
    tasks: list[str], models: dict[str, str] | None = None, indexes: str | os.PathLike = "indexes"
) -> dict[str, str]:
    """Model path of each task: ``models[task]`` or ``<indexes>/<task>/filter.bin``.

    When a manifest sits beside the model (``filter.json``, written by ``retriever distill``), its
    task must match: filtering task A with task B's model is an easy mistake to make.

    Raises:
        ConfigError: no task, a duplicate task, or a model for a task not asked for.
        InputError: a model file is missing.
        ModelMismatchError: the manifest beside a model names another task.
    """
    if not tasks:
        raise ConfigError("no task given; pass --task TASK (repeat it for several tasks)")
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"task listed twice: {tasks}")
    models = dict(models or {})
    extra = sorted(set(models) - set(tasks))
    if extra:
        raise ConfigError(f"--model given for {extra}, which are not among the tasks {tasks}")
    out = {}
    for t in tasks:
        path = Path(models.get(t) or Path(indexes) / t / DEFAULT_MODEL_NAME)
        if not path.is_file():
            raise InputError(
                f"no fastText model for task {t!r} at {path}; train it with `retriever distill "
                f"--labels LABELS --task {t} --out {path}` or pass --model {t}=PATH"
            )
        man = model_manifest_path(path)
        if man.is_file():
            mj = read_json(man)
            mt = mj.get("task")
            if mj.get("tasks") is not None and t not in mj["tasks"]:  # a multi-label model
                raise ModelMismatchError(
                    f"{path} is a multi-label model of the tasks {mj['tasks']} (see {man}), not of "
                    f"{t!r}; train it with these tasks or pass --model {t}=PATH"
                )
            if mt is not None and mt != t:
                raise ModelMismatchError(
                    f"{path} was trained for task {mt!r} (see {man}), not {t!r}; pass the right "
                    f"model with --model {t}=PATH"
                )
        out[t] = str(path)
    return out


@dataclass
class ProbBatch:
    """Probabilities of a batch of texts.

    Attributes:
        probs: ``[n_texts, n_tasks]`` float32, P(positive) under each task's model; NaN for a
            text fastText could not read (see ``bad``).
        bad: ``[n_texts]`` bool, texts that could not be scored (not encodable as UTF-8).
    """

    probs: np.ndarray
    bad: np.ndarray

    def usable(self) -> ProbBatch:
        """The rows of the texts that could be scored (all of them when none is ``bad``)."""
        if not self.bad.any():
            return self
        ok = ~self.bad
        return ProbBatch(self.probs[ok], self.bad[ok])


class Text(Protocol):
    """What the scorer reads of a document: its text (a :class:`~retriever.data.Doc`, or a
    datatrove ``Document``)."""

    text: str


class FastTextScorer(BatchStep):
    """Stage: P(positive) of each document under each task's fastText model.

    Args:
        models: task -> model path (see :func:`resolve_models`).
        max_chars: score only the first ``max_chars`` characters (``0``: whole document). fastText
            costs time in proportion to the text's length.
        batch_size: documents per fastText call in :meth:`run`.
    """

    name = "fasttext-score"

    def __init__(self, models: dict[str, str], max_chars: int = 0, batch_size: int = 512):
        super().__init__(batch_size)
        if max_chars < 0 or batch_size < 1:
            raise ConfigError(
                f"max_chars must be >= 0 and batch_size >= 1 ({max_chars}, {batch_size})"
            )
        self.models = dict(models)
        self.tasks = list(self.models)
        self.max_chars = max_chars
        self.batch_size = batch_size

    def _loaded(self) -> list[tuple[_FastText, list[tuple[int, str]], str]]:
        """One entry per distinct model file: the model and the ``(task column, label)`` it scores.

        Tasks that share a model file (a multi-label student, ``__label__<task>``) are scored by one
        fastText call: one tokenization and one n-gram hashing per document for all of them.
        """
        groups: dict[str, list[int]] = {}
        for j, path in enumerate(self.models.values()):
            groups.setdefault(str(path), []).append(j)
        out = []
        for path, cols in groups.items():
            m = load_model(path)
            pairs = []
            for j in cols:
                t = self.tasks[j]
                own, pos = LABEL_PREFIX + t, LABEL_PREFIX + POSITIVE
                lab = own if (own in m.labels and len(cols) > 1) or pos not in m.labels else pos
                if lab not in m.labels:
                    raise ModelMismatchError(
                        f"the model of task {t!r} ({path}) has labels {m.labels}, neither {pos!r} "
                        f"nor {own!r}; train it with `retriever distill`"
                    )
                pairs.append((j, lab))
            out.append((m, pairs, model_normalization(path)))  # as the model was trained
        return out

    def score_texts(self, texts: list[str]) -> ProbBatch:
        """Score a batch of texts under every task's model (one multi-line fastText call each)."""
        n = len(texts)
        probs = np.full((n, len(self.tasks)), np.nan, dtype=np.float32)  # [n_texts, n_tasks]
        bad = np.zeros(n, dtype=bool)
        if n == 0:
            return ProbBatch(probs, bad)
        mc = self.max_chars
        by_norm: dict[str, list[str]] = {}
        for model, pairs, norm in self._loaded():
            if norm not in by_norm:
                by_norm[norm] = [fasttext_text(t, norm, max_chars=mc) for t in texts]
            lines = by_norm[norm]
            col = dict((lab, j) for j, lab in pairs)
            try:
                labels, ps = model.predict(lines, k=-1)
            except (TypeError, UnicodeError):
                # one unencodable text (a lone surrogate) fails the whole call: score one by one
                labels, ps = [], []
                for k, line in enumerate(lines):
                    try:
                        lab, p = model.predict(line, k=-1)
                    except (TypeError, UnicodeError):
                        bad[k] = True
                        lab, p = (), np.zeros(0)
                    labels.append(lab)
                    ps.append(p)
            cols = [j for j, _ in pairs]
            for k, (labs, p) in enumerate(zip(labels, ps, strict=True)):
                if bad[k]:
                    continue
                probs[k, cols] = 0.0  # a label below fastText's output floor is not listed
                for lab, v in zip(labs, p, strict=True):
                    j = col.get(lab)
                    if j is not None:
                        probs[k, j] = v
        return ProbBatch(probs, bad)

    def score_batch(self, docs: Sequence[Text]) -> ProbBatch:
        """The probabilities of ``docs``' texts (:meth:`score_texts`)."""
        return self.score_texts([d.text for d in docs])

    def _usable(self, docs: list[Doc], scores: ProbBatch) -> tuple[list[Doc], ProbBatch]:
        """``docs`` and ``scores`` without the unscorable documents, each counted as
        ``rejected/undecodable``."""
        if not scores.bad.any():
            return docs, scores
        out = []
        for d, bad in zip(docs, scores.bad.tolist(), strict=True):
            if bad:
                self.reject(d, "undecodable")
            else:
                out.append(d)
        return out, scores.usable()

    def split(self, docs: list[Doc], scores: ProbBatch) -> Iterator[tuple[list[Doc], ProbBatch]]:
        """The scored batch without its unscorable documents (``rejected/undecodable``)."""
        docs, scores = self._usable(docs, scores)
        if docs:
            yield docs, scores

    def annotate(self, docs: list[Doc], scores: ProbBatch) -> list[Doc]:
        """Set ``metadata["prob_<task>"]`` on every document; unscorable ones are counted as
        ``rejected/undecodable`` and not passed on."""
        docs, scores = self._usable(docs, scores)
        keys = [score_name(PROB, t) for t in self.tasks]
        for d, row in zip(docs, scores.probs.tolist(), strict=True):
            for key, p in zip(keys, row, strict=True):
                d.metadata[key] = p
        return docs
