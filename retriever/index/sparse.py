"""A sparse (TF-IDF, word 1-2 grams) index of a task's gold: the lexical half of hybrid scoring.

Dense cosine says a document *means* something like the gold; the sparse score says it *uses the
same words* (tool names, ``"Answer:"``, ``"#### 42"``, speaker tags). The two miss different
things on sources the index never saw, so the score stage computes both in one pass.

On disk (``indexes/<task>/sparse/``; no pickle)::

    vocab.json      {"terms": [...]} term of each column, in column order
    idf.npy         float32 [n_terms] inverse document frequency of each term over the gold
    gold.npz        the gold's L2-normalised TF-IDF rows as CSR arrays (data, indices, indptr,
    shape) manifest.json   settings (ngrams, min_df, max_terms, sublinear_tf, lowercase), counts,
    the
                    gold fingerprint; written last, so a folder without it is unfinished

A document's scores are the cosine of its TF-IDF row to the gold rows: ``sparse`` = the largest,
``sparse_topk`` = the mean of the ``k`` largest (as ``score`` / ``topk`` for the dense vectors).
Tokenisation is scikit-learn's ``CountVectorizer`` with the stored vocabulary, so the terms of a
document are counted the same way at build and at score time; terms outside the vocabulary are
ignored (they cannot match any gold row anyway). Cost: one regex pass over the (clipped) text
and a sparse product with the gold matrix; ``scripts/bench_sparse.py`` measures it against
embedding.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retriever._deps import require
from retriever.errors import InputError
from retriever.io import AtomicWriter, read_json, write_json_atomic
from retriever.manifest import fingerprint

SPARSE_DIR = "sparse"
SPARSE_FORMAT = 1
# words of 2+ word characters, as scikit-learn's default, plus single digits and common code /
# markup punctuation tokens that mark formats ("(", "=", "#", ":") are not kept: the default
# pattern is what the TF-IDF baseline uses, so the two differ only by their settings below
TOKEN_PATTERN = r"(?u)\b\w\w+\b"


@dataclass(frozen=True)
class SparseConfig:
    """How the sparse index is built.

    Args:
        ngram_max: longest word n-gram (1: words only; 2: words and word pairs).
        min_df: a term must occur in at least this many gold records (drops one-off names and
            numbers, which cannot generalise to records the index has not seen).
        max_terms: keep at most this many terms, the most frequent over the gold (memory: the
            vocabulary and a ``[n_gold, terms]`` sparse matrix).
        sublinear_tf: ``1 + log(tf)`` instead of raw counts (a word repeated 20 times is not 20
            times the evidence).
        lowercase: fold case before counting.
    """

    ngram_max: int = 2
    min_df: int = 2
    max_terms: int = 200_000
    sublinear_tf: bool = True
    lowercase: bool = True

    def check(self) -> None:
        if self.ngram_max < 1 or self.min_df < 1 or self.max_terms < 1:
            raise InputError(
                "sparse index: ngram_max, min_df and max_terms must be >= 1 (got "
                f"{self.ngram_max}, {self.min_df}, {self.max_terms})"
            )


class SparseIndex:
    """TF-IDF rows of a task's gold with a fixed vocabulary; scores texts by cosine to them.

    Build with :meth:`build`, reopen with :meth:`load`, score with :meth:`score`.
    """

    def __init__(
        self,
        terms: list[str],
        idf: np.ndarray,
        gold,
        config: SparseConfig,
        manifest: dict[str, Any],
    ):
        self.terms = terms
        self.idf = np.asarray(idf, dtype=np.float32)  # [n_terms]
        self.gold = gold  # scipy CSR [n_gold, n_terms], rows L2-normalised
        self.config = config
        self.manifest = manifest
        self._counter = None
        self._index: dict[str, int] | None = None
        self._gold_t = None

    @property
    def n_terms(self) -> int:
        return len(self.terms)

    @property
    def n_gold(self) -> int:
        return int(self.gold.shape[0])

    # -- build ------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        texts: list[str],
        config: SparseConfig | None = None,
        gold_fingerprint: str | None = None,
    ) -> SparseIndex:
        """Fit the vocabulary and idf on ``texts`` (the gold) and store their TF-IDF rows.

        Raises:
            InputError: no text, or no term occurs in ``min_df`` records (too little gold).
        """
        config = config or SparseConfig()
        config.check()
        if not texts:
            raise InputError("cannot build a sparse index from zero gold texts")
        try:
            counts, terms = _fit_counts(texts, config)  # [n_gold, n_terms]
        except InputError as e:
            raise InputError(f"sparse index: {e}") from None
        df = np.asarray((counts > 0).sum(axis=0)).ravel()  # [n_terms]
        idf = _smooth_idf(len(texts), df)
        manifest = {
            "format": SPARSE_FORMAT,
            "kind": "tfidf",
            "config": asdict(config),
            "n_gold": len(texts),
            "n_terms": len(terms),
            "gold_fingerprint": gold_fingerprint or fingerprint(list(texts)),
        }
        out = cls(terms, idf, None, config, manifest)
        out.gold = out._weigh(counts)
        return out

    # -- score ------------------------------------------------------------------------------------
    def transform(self, texts: list[str]):
        """L2-normalised TF-IDF rows of ``texts`` (scipy CSR ``[n, n_terms]``)."""
        return self._weigh(self._vectorizer().transform(texts))

    def transform_terms(self, terms: list[list[str]]):
        """:meth:`transform` of texts already cut into terms by :func:`analyze` (one analysis
        shared by every index of the same settings: the score stage's batch)."""
        if self._index is None:
            self._index = {t: i for i, t in enumerate(self.terms)}
        return self._weigh(_count(terms, self._index))

    def score(
        self, texts: list[str], k: int = 10, block: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(max, mean top-k)`` TF-IDF cosine of each text to the gold rows, float32 ``[n]`` each.

        Args:
            texts: documents (clip them as the embedder does: the score stage passes the same text).
            k: gold rows averaged by the second score (clipped to the gold size).
            block: texts per sparse product (memory: ``block x n_gold`` floats).
        """
        return self.score_rows(self.transform(texts), k, block)

    def score_rows(
        self, X, k: int = 10, block: int = 1024, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`score` for rows already transformed; ``exclude[i]`` = a gold row to leave out
        for row ``i`` (its own, for leave-one-out features of the gold), or -1."""
        n = X.shape[0]
        k = max(1, min(k, self.n_gold - (exclude is not None)))
        smax = np.zeros(n, dtype=np.float32)
        stopk = np.zeros(n, dtype=np.float32)
        if self._gold_t is None:
            self._gold_t = self.gold.T.tocsc()
        for i in range(0, n, block):
            S = (X[i : i + block] @ self._gold_t).toarray()  # [block, n_gold]
            if exclude is not None:
                ex = exclude[i : i + block]
                rows = np.flatnonzero(ex >= 0)
                S[rows, ex[rows]] = -np.inf
            part = -np.partition(-S, k - 1, axis=1)[:, :k]  # [block, k] the k largest
            smax[i : i + block] = part.max(axis=1)
            stopk[i : i + block] = part.mean(axis=1, dtype=np.float64)
        return smax, stopk

    def _vectorizer(self):
        if self._counter is None:
            self._counter = _counter(self.config, self.terms)
        return self._counter

    def _weigh(self, counts):
        """Counts -> (sublinear) tf x idf, rows L2-normalised (an all-zero row stays zero)."""
        return _tfidf_rows(counts, self.idf, self.config.sublinear_tf)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (an index's ``sparse/`` folder); the manifest goes last."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").unlink(missing_ok=True)
        write_json_atomic(out / "vocab.json", {"terms": self.terms})
        with AtomicWriter(out / "idf.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, self.idf)
        g = self.gold
        with AtomicWriter(out / "gold.npz") as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                data=g.data,
                indices=g.indices,
                indptr=g.indptr,
                shape=np.asarray(g.shape, dtype=np.int64),
            )
        write_json_atomic(out / "manifest.json", self.manifest)
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> SparseIndex:
        """Open a ``sparse/`` folder written by :meth:`save`.

        Raises:
            InputError: missing, unfinished, of another format, or inconsistent.
        """
        p = Path(path)
        if not (p / "manifest.json").is_file():
            raise InputError(
                f"no sparse index at {p}; rebuild the index with `retriever index build`"
            )
        manifest = read_json(p / "manifest.json")
        if manifest.get("format") != SPARSE_FORMAT:
            raise InputError(
                f"{p} has sparse format {manifest.get('format')}, this version reads "
                f"{SPARSE_FORMAT}; rebuild the index with `retriever index build`"
            )
        sp = require("scipy.sparse")
        terms = read_json(p / "vocab.json")["terms"]
        idf = np.load(p / "idf.npy", allow_pickle=False)
        with np.load(p / "gold.npz", allow_pickle=False) as z:
            shape = tuple(int(x) for x in z["shape"])
            gold = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=shape)
        if len(terms) != len(idf) or shape[1] != len(terms) or shape[0] != manifest.get("n_gold"):
            raise InputError(
                f"{p} is inconsistent ({len(terms)} terms, {len(idf)} idf, gold {shape}); "
                "rebuild the index with `retriever index build`"
            )
        return cls(terms, idf, gold, SparseConfig(**manifest["config"]), manifest)


class TermWeights:
    """A fixed vocabulary with idf weights: texts -> L2-normalised (sublinear) TF-IDF rows.

    The bag-of-words half of the learned head (:mod:`retriever.index.head`): fitted once on the
    head's training texts (every task's gold and the corpus negatives), shared by the heads of one
    training, so the score stage tokenises a document once for all of them. Same weighting as
    :class:`SparseIndex` (which holds the gold's rows besides).

    On disk (a head folder): ``vocab.json`` (terms in column order, settings, fingerprint) and
    ``idf.npy`` (float32 ``[n_terms]``).
    """

    def __init__(self, terms: list[str], idf: np.ndarray, config: SparseConfig):
        self.terms = list(terms)
        self.idf = np.asarray(idf, dtype=np.float32)  # [n_terms]
        self.config = config
        self.fingerprint = fingerprint([self.terms, asdict(config)])
        self._counter = None
        self._index: dict[str, int] | None = None

    @property
    def n_terms(self) -> int:
        return len(self.terms)

    @classmethod
    def fit(cls, texts: list[str], config: SparseConfig) -> TermWeights:
        """Vocabulary (``config.max_terms`` most frequent terms in ``min_df`` texts) and idf.

        Raises:
            InputError: no text, or no term occurs in ``min_df`` texts.
        """
        config.check()
        if not texts:
            raise InputError("cannot fit a vocabulary on zero texts")
        counts, terms = _fit_counts(texts, config)
        df = np.asarray((counts > 0).sum(axis=0)).ravel()  # [n_terms]
        return cls(terms, _smooth_idf(len(texts), df), config)

    def transform_terms(self, terms: list[list[str]]):
        """:meth:`transform` of texts already cut into terms by :func:`analyze`."""
        if self._index is None:
            self._index = {t: i for i, t in enumerate(self.terms)}
        return _tfidf_rows(_count(terms, self._index), self.idf, self.config.sublinear_tf)

    def transform(self, texts: list[str]):
        """L2-normalised TF-IDF rows of ``texts`` (scipy CSR ``[n, n_terms]``)."""
        counter = self._counter
        if counter is None:
            counter = self._counter = _counter(self.config, self.terms)
        return _tfidf_rows(counter.transform(texts), self.idf, self.config.sublinear_tf)

    def save(self, path: str | os.PathLike) -> None:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        with AtomicWriter(out / "idf.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, self.idf)
        write_json_atomic(
            out / "vocab.json",
            {"terms": self.terms, "config": asdict(self.config), "fingerprint": self.fingerprint},
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> TermWeights:
        """Open what :meth:`save` wrote.

        Raises:
            InputError: missing or inconsistent files.
        """
        p = Path(path)
        if not (p / "vocab.json").is_file() or not (p / "idf.npy").is_file():
            raise InputError(f"{p} lacks vocab.json / idf.npy; retrain with `retriever index head`")
        meta = read_json(p / "vocab.json")
        idf = np.load(p / "idf.npy", allow_pickle=False)
        out = cls(meta["terms"], idf, SparseConfig(**meta["config"]))
        if len(idf) != len(out.terms) or out.fingerprint != meta.get("fingerprint"):
            raise InputError(
                f"{p}: vocabulary and idf disagree; retrain with `retriever index head`"
            )
        return out


def analyzer_key(config: SparseConfig) -> tuple:
    """Settings that decide how a text is cut into terms (indexes sharing them share a cut)."""
    return (config.ngram_max, config.lowercase, TOKEN_PATTERN)


def analyze(texts: list[str], config: SparseConfig) -> list[list[str]]:
    """Each text cut into its word n-grams (1 to ``ngram_max``) as the vectorizers count them.

    Unigrams never contain a space (the token pattern has none), so the unigrams of a 1-2 gram
    cut are its terms without one: :func:`unigrams`.
    """
    an = _counter(config, min_df=1).build_analyzer()
    return [an(t) for t in texts]


def unigrams(terms: list[list[str]]) -> list[list[str]]:
    """The single words of an :func:`analyze` cut with ``ngram_max >= 2``."""
    return [[t for t in ts if " " not in t] for ts in terms]


def _count(terms: list[list[str]], index: dict[str, int]):
    """Term counts ``[n, len(index)]`` (scipy CSR, float32) of cut texts; unknown terms ignored."""
    sp = require("scipy.sparse")
    indptr = [0]
    cols: list[int] = []
    for ts in terms:
        cols.extend(i for i in map(index.get, ts) if i is not None)
        indptr.append(len(cols))
    X = sp.csr_matrix(
        (np.ones(len(cols), dtype=np.float32), np.asarray(cols, dtype=np.int64), indptr),
        shape=(len(terms), len(index)),
    )
    X.sum_duplicates()
    return X


def _counter(config: SparseConfig, terms: list[str] | None = None, min_df: int = 1):
    feat = require("sklearn.feature_extraction.text")
    return feat.CountVectorizer(
        ngram_range=(1, config.ngram_max),
        lowercase=config.lowercase,
        token_pattern=TOKEN_PATTERN,
        dtype=np.float32,
        **(
            {"vocabulary": {t: i for i, t in enumerate(terms)}}
            if terms is not None
            else {"min_df": min_df, "max_features": config.max_terms}
        ),
    )


def _fit_counts(texts: list[str], config: SparseConfig):
    """Term counts ``[n, n_terms]`` of ``texts`` and the terms kept (see :class:`SparseConfig`)."""
    min_df = min(config.min_df, len(texts))
    cv = _counter(config, min_df=min_df)
    try:
        counts = cv.fit_transform(texts)  # [n, n_terms]
    except ValueError as e:  # "empty vocabulary; perhaps the documents only contain stop words"
        raise InputError(
            f"no word occurs in {min_df} of the {len(texts)} texts ({e}); add texts or lower min_df"
        ) from e
    return counts, cv.get_feature_names_out().tolist()


def _smooth_idf(n_texts: int, df: np.ndarray) -> np.ndarray:
    """scikit-learn's smooth idf: ``log((1 + n) / (1 + df)) + 1``."""
    return (np.log((1 + n_texts) / (1 + df)) + 1).astype(np.float32)


def _tfidf_rows(counts, idf: np.ndarray, sublinear: bool):
    """Counts -> (sublinear) tf x idf, rows L2-normalised (an all-zero row stays zero)."""
    X = counts.tocsr().astype(np.float32)
    if sublinear:
        X.data = 1 + np.log(X.data)
    X = X.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())  # [n]
    norms[norms == 0] = 1
    sp = require("scipy.sparse")
    return (sp.diags(1 / norms) @ X).tocsr().astype(np.float32)


def load_sparse(index_dir: str | os.PathLike) -> SparseIndex | None:
    """The sparse index of an index folder, or ``None`` when it has none (built before hybrid)."""
    p = Path(index_dir) / SPARSE_DIR
    return SparseIndex.load(p) if (p / "manifest.json").is_file() else None
