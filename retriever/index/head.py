"""A learned, calibrated head per task over the features the score stage already computes.

Features of a document for task ``t`` (all computed in the score stage's single pass):

* ``vector``: its unit embedding (``dim`` values);
* ``cos``, ``topk``: max and mean top-k cosine to the task's gold (dense);
* ``sparse``, ``sparse_topk``: max and mean top-k TF-IDF cosine to the gold (:mod:`.sparse`).

A head is a logistic regression over a subset of them (``head``: all; ``hybrid``: the four scores
only, a learned combination of dense and sparse), trained with the task's gold as positives and
corpus documents plus the other tasks' gold as negatives, class-balanced, then Platt-calibrated
on out-of-fold decision values, so ``p`` is the probability that a document is the task's under
equal priors (the same threshold means the same on every task).

A gold record's own scores are leave-one-out (its nearest neighbour is not itself), else every
positive would have ``cos = 1`` and the head would learn nothing from the scores.

On disk (``indexes/<task>/head/``; no pickle)::

    head.json       per model: features, standardisation, bias, Platt (a, b), training counts,
                    cross-validated metrics; the gold fingerprint; written last
    <model>.npy     float32 coefficients, one per standardised feature
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retriever._deps import require
from retriever.errors import InputError
from retriever.io import AtomicWriter, read_json, write_json_atomic

HEAD_DIR = "head"
HEAD_FORMAT = 1
SCALARS = ("cos", "topk", "sparse", "sparse_topk")
MODELS = {"head": ("vector", *SCALARS), "hybrid": SCALARS}


@dataclass
class Features:
    """Per-document features for one task: ``vectors [n, dim]`` and the four scores ``[n]``."""

    vectors: np.ndarray
    cos: np.ndarray
    topk: np.ndarray
    sparse: np.ndarray
    sparse_topk: np.ndarray

    def __len__(self) -> int:
        return len(self.cos)

    def matrix(self, names: tuple[str, ...]) -> np.ndarray:
        """``[n, n_features]`` float64 columns in ``names`` order (``vector`` expands to
        ``dim``)."""
        cols = []
        for name in names:
            v = self.vectors if name == "vector" else getattr(self, name)
            cols.append(np.asarray(v, dtype=np.float64).reshape(len(self), -1))
        return np.hstack(cols)

    @staticmethod
    def concat(parts: list[Features]) -> Features:
        return Features(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("vectors", "cos", "topk", "sparse", "sparse_topk")
            )
        )


@dataclass(frozen=True)
class HeadConfig:
    """How heads are trained.

    Args:
        c: inverse L2 regularisation strength of the logistic regression (scikit-learn ``C``).
        folds: cross-validation folds for the Platt calibration and the reported metrics.
        max_iter: solver iterations.
        seed: fold assignment.
    """

    c: float = 1.0
    folds: int = 5
    max_iter: int = 2000
    seed: int = 0

    def check(self) -> None:
        if self.c <= 0 or self.folds < 2 or self.max_iter < 1:
            raise InputError(
                f"head: c must be > 0, folds >= 2, max_iter >= 1 (got {self.c}, "
                f"{self.folds}, {self.max_iter})"
            )


@dataclass
class LinearModel:
    """``p = sigmoid(a * (w . (x - mu) / sd + b) + c)``: one standardised logistic model + Platt."""

    features: tuple[str, ...]
    coef: np.ndarray  # [n_features] over standardised columns
    bias: float
    mu: np.ndarray  # [n_features]
    sd: np.ndarray  # [n_features]
    platt: tuple[float, float]  # (a, c)
    info: dict[str, Any] = field(default_factory=dict)

    def decision(self, X: np.ndarray) -> np.ndarray:
        """Raw (uncalibrated) log-odds ``[n]`` of a feature matrix ``X [n, n_features]``."""
        return ((X - self.mu) / self.sd) @ self.coef + self.bias

    def predict(self, feats: Features) -> np.ndarray:
        """Calibrated probabilities ``[n]`` (float32)."""
        a, c = self.platt
        z = a * self.decision(feats.matrix(self.features)) + c
        return (1 / (1 + np.exp(-np.clip(z, -50, 50)))).astype(np.float32)


class TaskHead:
    """The learned models of one task (``head`` and ``hybrid``); build with :func:`train_head`."""

    def __init__(self, task: str, models: dict[str, LinearModel], manifest: dict[str, Any]):
        self.task, self.models, self.manifest = task, models, manifest

    def predict(self, feats: Features) -> dict[str, np.ndarray]:
        """``{model name: probabilities [n]}``."""
        return {name: m.predict(feats) for name, m in self.models.items()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (an index's ``head/`` folder); ``head.json`` goes last."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        (out / "head.json").unlink(missing_ok=True)
        models = {}
        for name, m in self.models.items():
            with AtomicWriter(out / f"{name}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, np.asarray(m.coef, dtype=np.float32))
            models[name] = {
                "features": list(m.features),
                "bias": m.bias,
                "mu": m.mu.tolist(),
                "sd": m.sd.tolist(),
                "platt": list(m.platt),
                **m.info,
            }
        write_json_atomic(out / "head.json", {**self.manifest, "models": models})
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> TaskHead:
        """Open a ``head/`` folder.

        Raises:
            InputError: missing, unfinished, other format, or inconsistent.
        """
        p = Path(path)
        if not (p / "head.json").is_file():
            raise InputError(f"no head at {p}; train one with `retriever index head`")
        meta = read_json(p / "head.json")
        if meta.get("format") != HEAD_FORMAT:
            raise InputError(
                f"{p} has head format {meta.get('format')}, this version reads "
                f"{HEAD_FORMAT}; retrain it with `retriever index head`"
            )
        models = {}
        for name, m in meta["models"].items():
            coef = np.load(p / f"{name}.npy", allow_pickle=False).astype(np.float64)
            mu, sd = np.asarray(m["mu"]), np.asarray(m["sd"])
            if not (len(coef) == len(mu) == len(sd)):
                raise InputError(
                    f"{p}: {name} has {len(coef)} coefficients for {len(mu)} features; "
                    "retrain it with `retriever index head`"
                )
            info = {
                k: v for k, v in m.items() if k not in ("features", "bias", "mu", "sd", "platt")
            }
            models[name] = LinearModel(
                tuple(m["features"]),
                coef,
                float(m["bias"]),
                mu,
                sd,
                (float(m["platt"][0]), float(m["platt"][1])),
                info,
            )
        manifest = {k: v for k, v in meta.items() if k != "models"}
        return cls(meta["task"], models, manifest)


def load_head(index_dir: str | os.PathLike) -> TaskHead | None:
    """The head of an index folder, or ``None`` when it has none."""
    p = Path(index_dir) / HEAD_DIR
    return TaskHead.load(p) if (p / "head.json").is_file() else None


def fit_linear(
    X: np.ndarray, y: np.ndarray, features: tuple[str, ...], config: HeadConfig | None = None
) -> LinearModel:
    """Fit a class-balanced, standardised logistic regression and Platt-calibrate it.

    Platt's ``(a, c)`` are fitted on out-of-fold decision values (each row scored by a model that
    did not see it), with the classes weighted to equal total weight, so ``p = 0.5`` is even odds
    between a task record and a non-task document. ``info`` holds the out-of-fold ROC-AUC and
    Brier score.

    Args:
        X: ``[n, n_features]`` features; y: ``[n]`` 0/1 labels (both classes present).
    """
    config = config or HeadConfig()
    config.check()
    lm = require("sklearn.linear_model")
    y = np.asarray(y, dtype=np.int64)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos < config.folds or n_neg < config.folds:
        raise InputError(
            f"head: need at least {config.folds} positives and negatives "
            f"(got {n_pos} and {n_neg}); add gold or negatives"
        )
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    sd[sd < 1e-8] = 1.0
    Z = (X - mu) / sd

    def fit(Zt, yt):
        clf = lm.LogisticRegression(C=config.c, class_weight="balanced", max_iter=config.max_iter)
        return clf.fit(Zt, yt)

    # out-of-fold decision values, folds stratified by class
    rng = np.random.default_rng(config.seed)
    fold = np.empty(len(y), dtype=np.int64)
    for cls_ in (0, 1):
        idx = np.flatnonzero(y == cls_)
        fold[idx] = rng.permutation(len(idx)) % config.folds
    oof = np.empty(len(y))
    for f in range(config.folds):
        tr = fold != f
        oof[~tr] = fit(Z[tr], y[tr]).decision_function(Z[~tr])
    w = np.where(y == 1, 0.5 / n_pos, 0.5 / n_neg) * len(y)
    platt = lm.LogisticRegression(C=1e6, max_iter=1000).fit(oof[:, None], y, sample_weight=w)
    a, c = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    p_oof = 1 / (1 + np.exp(-np.clip(a * oof + c, -50, 50)))
    from retriever.metrics import roc_auc

    clf = fit(Z, y)
    info = {
        "n_positive": n_pos,
        "n_negative": n_neg,
        "c": config.c,
        "cv_roc_auc": roc_auc(y, oof),
        "cv_brier_balanced": float(np.average((p_oof - y) ** 2, weights=w)),
    }
    return LinearModel(
        tuple(features),
        clf.coef_[0].astype(np.float64),
        float(clf.intercept_[0]),
        mu,
        sd,
        (a, c),
        info,
    )


def train_head(
    task: str,
    positives: Features,
    negatives: Features,
    config: HeadConfig | None = None,
    manifest: dict[str, Any] | None = None,
    models: dict[str, tuple[str, ...]] | None = None,
) -> TaskHead:
    """Train the ``head`` and ``hybrid`` models of ``task`` (see the module docstring).

    Args:
        positives: features of the task's gold (leave-one-out scores: :func:`gold_features`).
        negatives: features of corpus documents and of the other tasks' gold.
        manifest: extra facts to store (gold fingerprint, negative sources).
        models: name -> feature names (default :data:`MODELS`).
    """
    both = Features.concat([positives, negatives])
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    out = {}
    for name, names in (models or MODELS).items():
        out[name] = fit_linear(both.matrix(names), y, names, config)
    meta = {"format": HEAD_FORMAT, "task": task, **(manifest or {})}
    return TaskHead(task, out, meta)


def gold_features(gold_vectors: np.ndarray, gold_index, sparse, k: int = 10) -> Features:
    """Leave-one-out features of a task's own gold: each record scored against the others.

    Args:
        gold_vectors: ``[n_gold, dim]`` unit vectors, in index order.
        gold_index: the task's :class:`~retriever.index.GoldIndex` (searched for ``k + 1``).
        sparse: the task's :class:`~retriever.index.sparse.SparseIndex` (its rows are the gold's,
            in index order).
    """
    n = len(gold_vectors)
    D, I = gold_index.search(gold_vectors, k + 1)  # [n, k+1]
    own = I == np.arange(n)[:, None]
    # drop the record itself (or, when a near-duplicate tied with it, the last column)
    keep = ~own
    keep[~own.any(axis=1), -1] = False
    Dk = D[keep].reshape(n, -1)[:, :k]  # [n, k]
    smax, stopk = sparse.score_rows(sparse.gold, k, exclude=np.arange(n))
    return Features(
        np.asarray(gold_vectors, dtype=np.float32),
        Dk[:, 0].astype(np.float32),
        Dk.mean(axis=1).astype(np.float32),
        smax,
        stopk,
    )
