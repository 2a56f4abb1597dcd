"""A learned, calibrated head per task over the features the score stage already computes.

Features of a document for task ``t`` (all computed in the score stage's single pass):

* ``vector``: its unit embedding (``dim`` values);
* ``cos``, ``topk``: max and mean top-k cosine to the task's gold (dense);
* ``sparse``, ``sparse_topk``: max and mean top-k TF-IDF cosine to the gold (:mod:`.sparse`);
* ``words``: its bag of words, an L2-normalised TF-IDF row over a vocabulary fitted on the
  head's training texts (:class:`~retriever.index.sparse.TermWeights`; one tokenisation shared
  by the heads of a training), scaled by ``HeadConfig.words_scale``.

A head is a logistic regression over a subset of them (``head``: all; ``dense``: all but the
words, the head before words were added; ``hybrid``: the four scores only, a learned combination
of dense and sparse), trained with the task's gold as positives and
corpus documents plus the other tasks' gold as negatives, class-balanced, then Platt-calibrated
on out-of-fold decision values, so ``p`` is the probability that a document is the task's under
equal priors (the same threshold means the same on every task).

A gold record's own scores are leave-one-out (its nearest neighbour is not itself), else every
positive would have ``cos = 1`` and the head would learn nothing from the scores.

On disk (``indexes/<task>/head/``; no pickle)::

    head.json       per model: features, standardisation, bias, Platt (a, b), words scale,
                    training counts, cross-validated metrics; the gold fingerprint; written last
    <model>.npy     float32 coefficients: one per standardised feature, then one per term
    vocab.json, idf.npy   the words' vocabulary (only when a model uses ``words``)

Why words: on the cross-source split (docs/retrieval.md) the vector-and-scores head ranked the
ELMB Reasoning set (coin-flip puzzles; the gold is GSM8K) below math-flavoured function-calling
records; the words (``question``, ``coin``, ``heads``; ``dict``, ``properties``) carry across
those sources, the vector alone does not. The scale and ``C`` were chosen by cross-validation
with folds that hold out whole sources (a roleplay character, TinyAgent, corpus clusters).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retriever._deps import require
from retriever.errors import InputError
from retriever.index.sparse import SparseConfig, TermWeights
from retriever.io import AtomicWriter, read_json, write_json_atomic

HEAD_DIR = "head"
HEAD_FORMAT = 2  # 2: optional words (vocab.json, idf.npy); format 1 heads (no words) still load
SCALARS = ("cos", "topk", "sparse", "sparse_topk")
DENSE = ("vector", *SCALARS)
MODELS = {"head": (*DENSE, "words"), "hybrid": SCALARS}


@dataclass
class Features:
    """Per-document features for one task: ``vectors [n, dim]``, the four scores ``[n]`` and,
    for heads with words, ``words`` (scipy CSR ``[n, n_terms]`` TF-IDF rows)."""

    vectors: np.ndarray
    cos: np.ndarray
    topk: np.ndarray
    sparse: np.ndarray
    sparse_topk: np.ndarray
    words: Any = None

    def __len__(self) -> int:
        return len(self.cos)

    def matrix(self, names: tuple[str, ...]) -> np.ndarray:
        """``[n, n_features]`` float64 columns of the dense features in ``names``, in order
        (``vector`` expands to ``dim``; ``words`` is left out: see :attr:`words`)."""
        cols = []
        for name in names:
            if name == "words":
                continue
            v = self.vectors if name == "vector" else getattr(self, name)
            cols.append(np.asarray(v, dtype=np.float64).reshape(len(self), -1))
        return np.hstack(cols)

    def subset(self, keep: np.ndarray) -> Features:
        """The rows where ``keep`` (``[n]`` bool) is true."""
        idx = np.flatnonzero(keep)
        return Features(
            self.vectors[idx],
            self.cos[idx],
            self.topk[idx],
            self.sparse[idx],
            self.sparse_topk[idx],
            None if self.words is None else self.words[idx],
        )

    @staticmethod
    def concat(parts: list[Features]) -> Features:
        def cat(f: str) -> np.ndarray:
            return np.concatenate([getattr(p, f) for p in parts])

        words = None
        if all(p.words is not None for p in parts):
            words = require("scipy.sparse").vstack([p.words for p in parts]).tocsr()
        return Features(
            cat("vectors"), cat("cos"), cat("topk"), cat("sparse"), cat("sparse_topk"), words
        )


MAX_NEGATIVES = 5000  # corpus documents a head trains on as negatives (a seeded sample)


@dataclass(frozen=True)
class HeadConfig:
    """How heads are trained.

    Args:
        c: inverse L2 regularisation strength of the logistic regression (scikit-learn ``C``).
        folds: cross-validation folds for the Platt calibration and the reported metrics.
        max_iter: solver iterations.
        seed: seed of the folds (``retriever index head`` also seeds its sample of the corpus
            negatives with it).
        words_scale: weight of the words' TF-IDF beside the dense features. The TF-IDF rows are
            unit length, the dense features standardised: with one ``C`` for both, it sets how
            much of the evidence the words carry.
        words_min_df: words in fewer training texts are left out of the words' vocabulary.
        words_max_terms: at most this many words, the most frequent (memory: one float per term
            and model).
        reliable_negatives: drop the corpus negatives that look like the task (a Rocchio step).
            Those are the ones whose max cosine to the gold is at or above the midpoint of the
            gold's and the corpus's median max cosine (Liu et al. 2003, "Building text
            classifiers using positive and unlabeled examples"): a corpus sample is unlabeled,
            not negative, and the documents a run should find are in it. The other tasks' gold
            always stays.

    ``c = 1`` and ``words_scale = 100`` were chosen by source-grouped cross-validation
    (docs/retrieval.md).
    """

    c: float = 1.0
    folds: int = 5
    max_iter: int = 2000
    seed: int = 0
    words_scale: float = 100.0
    words_min_df: int = 3
    words_max_terms: int = 50_000
    reliable_negatives: bool = True

    def check(self) -> None:
        if self.c <= 0 or self.folds < 2 or self.max_iter < 1 or self.words_scale <= 0:
            raise InputError(
                f"head: c and words_scale must be > 0, folds >= 2, max_iter >= 1 (got {self.c}, "
                f"{self.words_scale}, {self.folds}, {self.max_iter})"
            )

    def vocabulary(self) -> SparseConfig:
        """Settings of the words' vocabulary (single words, sublinear tf, lower case)."""
        return SparseConfig(ngram_max=1, min_df=self.words_min_df, max_terms=self.words_max_terms)


@dataclass
class LinearModel:
    """``p = sigmoid(a * (w . (x - mu) / sd + s * v . words + b) + c)``: one standardised
    logistic model (with words: their coefficients ``v`` after the dense ones) + Platt."""

    features: tuple[str, ...]
    coef: np.ndarray  # [n_features (+ n_terms)] over standardised columns, then terms
    bias: float
    mu: np.ndarray  # [n_features]
    sd: np.ndarray  # [n_features]
    platt: tuple[float, float]  # (a, c)
    info: dict[str, Any] = field(default_factory=dict)
    words_scale: float = 0.0  # s; 0 without words

    @property
    def uses_words(self) -> bool:
        return "words" in self.features

    def decision(self, X: np.ndarray, W=None) -> np.ndarray:
        """Raw (uncalibrated) log-odds ``[n]`` of dense features ``X [n, n_features]`` and, for a
        model with words, their TF-IDF rows ``W [n, n_terms]``."""
        d = len(self.mu)
        z = ((X - self.mu) / self.sd) @ self.coef[:d] + self.bias
        if self.uses_words:
            if W is None:
                raise InputError("this head uses words: pass the documents' TF-IDF rows")
            z = z + self.words_scale * np.asarray(W @ self.coef[d:]).ravel()
        return z

    def predict(self, feats: Features) -> np.ndarray:
        """Calibrated probabilities ``[n]`` (float32)."""
        a, c = self.platt
        z = a * self.decision(feats.matrix(self.features), feats.words) + c
        return (1 / (1 + np.exp(-np.clip(z, -50, 50)))).astype(np.float32)


class TaskHead:
    """The learned models of one task (``head`` and ``hybrid``); build with :func:`train_head`.

    ``vocab``: the words' vocabulary (``None`` when no model uses words); a caller computes
    ``Features.words = vocab.transform(texts)`` once per distinct :attr:`TermWeights.fingerprint`.
    """

    def __init__(
        self,
        task: str,
        models: dict[str, LinearModel],
        manifest: dict[str, Any],
        vocab: TermWeights | None = None,
    ):
        self.task, self.models, self.manifest, self.vocab = task, models, manifest, vocab
        if any(m.uses_words for m in models.values()) and vocab is None:
            raise InputError(f"head {task!r}: a model uses words but the head has no vocabulary")

    def predict(self, feats: Features) -> dict[str, np.ndarray]:
        """``{model name: probabilities [n]}``."""
        return {name: m.predict(feats) for name, m in self.models.items()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (an index's ``head/`` folder); ``head.json`` goes last."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        (out / "head.json").unlink(missing_ok=True)
        if self.vocab is not None:
            self.vocab.save(out)
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
                "words_scale": m.words_scale,
                **m.info,
            }
        meta = {**self.manifest, "format": HEAD_FORMAT, "models": models}
        if self.vocab is not None:
            meta["vocab"] = {"fingerprint": self.vocab.fingerprint, "n_terms": self.vocab.n_terms}
        write_json_atomic(out / "head.json", meta)
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
        if meta.get("format") not in (1, HEAD_FORMAT):
            raise InputError(
                f"{p} has head format {meta.get('format')}, this version reads "
                f"{HEAD_FORMAT}; retrain it with `retriever index head`"
            )
        vocab = None
        if any("words" in m["features"] for m in meta["models"].values()):
            vocab = TermWeights.load(p)
            if vocab.fingerprint != (meta.get("vocab") or {}).get("fingerprint"):
                raise InputError(
                    f"{p}: the vocabulary is not the one the head was trained with; "
                    "retrain it with `retriever index head`"
                )
        models = {}
        for name, m in meta["models"].items():
            coef = np.load(p / f"{name}.npy", allow_pickle=False).astype(np.float64)
            mu, sd = np.asarray(m["mu"]), np.asarray(m["sd"])
            n_terms = vocab.n_terms if vocab is not None and "words" in m["features"] else 0
            if not (len(coef) == len(mu) + n_terms and len(mu) == len(sd)):
                raise InputError(
                    f"{p}: {name} has {len(coef)} coefficients for {len(mu)} features and "
                    f"{n_terms} terms; retrain it with `retriever index head`"
                )
            skip = ("features", "bias", "mu", "sd", "platt", "words_scale")
            models[name] = LinearModel(
                tuple(m["features"]),
                coef,
                float(m["bias"]),
                mu,
                sd,
                (float(m["platt"][0]), float(m["platt"][1])),
                {k: v for k, v in m.items() if k not in skip},
                float(m.get("words_scale", 0.0)),
            )
        manifest = {k: v for k, v in meta.items() if k not in ("models", "vocab")}
        return cls(meta["task"], models, manifest, vocab)


def load_head(index_dir: str | os.PathLike) -> TaskHead | None:
    """The head of an index folder, or ``None`` when it has none."""
    p = Path(index_dir) / HEAD_DIR
    return TaskHead.load(p) if (p / "head.json").is_file() else None


def fit_linear(
    X: np.ndarray,
    y: np.ndarray,
    features: tuple[str, ...],
    config: HeadConfig | None = None,
    W=None,
) -> LinearModel:
    """Fit a class-balanced, standardised logistic regression and Platt-calibrate it.

    Platt's ``(a, c)`` are fitted on out-of-fold decision values (each row scored by a model that
    did not see it), with the classes weighted to equal total weight, so ``p = 0.5`` is even odds
    between a task record and a non-task document. ``info`` holds the out-of-fold ROC-AUC and
    Brier score.

    Args:
        X: ``[n, n_features]`` dense features; y: ``[n]`` 0/1 labels (both classes present).
        W: ``[n, n_terms]`` TF-IDF rows when ``features`` has ``words`` (scipy CSR), scaled by
            ``config.words_scale`` beside the standardised ``X`` (liblinear solver then).
    """
    config = config or HeadConfig()
    config.check()
    lm = require("sklearn.linear_model")
    uses_words = "words" in features
    if uses_words and W is None:
        raise InputError("head: a model with words needs the TF-IDF rows (W)")
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
    scale = config.words_scale if uses_words else 0.0
    if uses_words:
        sps = require("scipy.sparse")
        Z = sps.hstack([sps.csr_matrix(Z), scale * W]).tocsr()  # [n, n_features + n_terms]

    def fit(Zt, yt):
        clf = lm.LogisticRegression(
            C=config.c,
            class_weight="balanced",
            max_iter=config.max_iter,
            solver="liblinear" if uses_words else "lbfgs",
        )
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
        **({"n_terms": int(W.shape[1])} if uses_words else {}),
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
        scale,
    )


def train_head(
    task: str,
    positives: Features,
    negatives: Features,
    config: HeadConfig | None = None,
    manifest: dict[str, Any] | None = None,
    models: dict[str, tuple[str, ...]] | None = None,
    vocab: TermWeights | None = None,
) -> TaskHead:
    """Train the ``head`` and ``hybrid`` models of ``task`` (see the module docstring).

    Args:
        positives: features of the task's gold (leave-one-out scores: :func:`gold_features`).
        negatives: features of corpus documents and of the other tasks' gold.
        manifest: extra facts to store (gold fingerprint, negative sources).
        models: name -> feature names (default :data:`MODELS`).
        vocab: the vocabulary of ``Features.words`` (needed when a model uses words).
    """
    (config or HeadConfig()).check()
    models = models or MODELS
    both = Features.concat([positives, negatives])
    if any("words" in names for names in models.values()):
        if vocab is None or both.words is None:
            raise InputError(f"head {task!r}: models with words need a vocabulary and the rows")
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    out = {}
    for name, names in models.items():
        out[name] = fit_linear(both.matrix(names), y, names, config, both.words)
    meta = {"format": HEAD_FORMAT, "task": task, **(manifest or {})}
    uses = any(m.uses_words for m in out.values())
    return TaskHead(task, out, meta, vocab if uses else None)


def reliable_negatives(pos_cos: np.ndarray, neg_cos: np.ndarray) -> tuple[np.ndarray, float]:
    """Which corpus negatives to keep (``[n]`` bool) and the cut: max cosine below the midpoint
    of the medians of the gold's (leave-one-out) and the corpus's max cosine (see
    :class:`HeadConfig`)."""
    cut = float((np.median(pos_cos) + np.median(neg_cos)) / 2)
    return np.asarray(neg_cos) < cut, cut


def gold_features(
    gold_vectors: np.ndarray, gold_index, sparse, k: int = 10, words=None
) -> Features:
    """Leave-one-out features of a task's own gold: each record scored against the others.

    Args:
        gold_vectors: ``[n_gold, dim]`` unit vectors, in index order.
        gold_index: the task's :class:`~retriever.index.GoldIndex` (searched for ``k + 1``).
        sparse: the task's :class:`~retriever.index.sparse.SparseIndex` (its rows are the gold's,
            in index order).
        words: the gold's rows under the head's vocabulary (``TermWeights.transform``), if any.
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
        words,
    )
