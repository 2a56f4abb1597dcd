"""The student's training set: every signal of the pipeline, one row per document, with its source.

A fastText student is only as good as the rows it is trained on. The confirm stage alone labels
similarity *candidates* by the sign of a perplexity correlation, so its positives and negatives are
both task-like pages split by the panel's noise, and no gold exemplar is ever a positive. The set
built here keeps every signal instead, each row tagged with where it came from (``source``):

=================  =========  ==============================================================
source             label      rows
=================  =========  ==============================================================
``gold``           positive   the task's gold exemplars (the index's ``gold.parquet``): anchors
``confirmed``      positive   similarity candidates the perplexity correlation confirmed
``random``         negative   random non-candidate corpus documents (the confirm stage's sample)
``other-gold``     negative   the other tasks' gold exemplars
``hard-negative``  negative   candidates the confirmation rejected (correlation at or below
                              ``negative_max``, or ``hard_negative_max`` when set)
``rating``         both       documents an LLM rated (``retriever rate``): positive when
                              ``int_score`` reaches the rating threshold, else negative
=================  =========  ==============================================================

fastText has no sample weights, so a source's weight is carried by **replicating lines**: a row
of weight ``w`` is written ``floor(w)`` times plus once more with probability ``w - floor(w)``
(seeded), so ``w = 0.5`` subsamples half the rows and ``w = 3`` repeats each three times. With
``balance`` the lighter class's weights are then scaled *up* (its rows replicated, at most
``max_copies`` times) until both classes carry the same total weight; no row is dropped for it.
Balance is off by default: each row once, as the DCLM recipe trains, is the best measured recipe
on the cross-source set (docs/distill.md). The
manifest records the counts, weights and copies per source; the training-set parquet
(``student_set.parquet`` beside the model) records each row's source, reason and copies.

A text that appears under both labels (a gold exemplar that is also a random corpus document) is
kept once, as its positive source, and counted in ``conflicts``.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retriever._deps import require
from retriever.distill.labels import NEGATIVE, POSITIVE, UNCERTAIN, LabelSet, Row
from retriever.errors import ConfigError, InputError

GOLD = "gold"
CONFIRMED = "confirmed"
RANDOM = "random"
OTHER_GOLD = "other-gold"
HARD_NEGATIVE = "hard-negative"
CANDIDATE = "candidate"  # an uncertain candidate: in the labels for audit, never trained on
# an LLM rating (retriever rate): positive at or above its threshold, else negative
RATING = "rating"
SOURCES = (GOLD, CONFIRMED, RANDOM, OTHER_GOLD, HARD_NEGATIVE, RATING)
SOURCE_LABEL = {
    GOLD: POSITIVE,
    CONFIRMED: POSITIVE,
    RANDOM: NEGATIVE,
    OTHER_GOLD: NEGATIVE,
    HARD_NEGATIVE: NEGATIVE,
    RATING: "both",
}

# the label-source ablation (scripts/eval_filter.py); negatives are the same in all but "teacher"
VARIANTS: dict[str, tuple[str, ...]] = {
    "gold-only": (GOLD, RANDOM, OTHER_GOLD),
    "confirmed-only": (CONFIRMED, RANDOM, OTHER_GOLD),
    "gold+confirmed": (GOLD, CONFIRMED, RANDOM, OTHER_GOLD),
    "gold+confirmed+hard": (GOLD, CONFIRMED, RANDOM, OTHER_GOLD, HARD_NEGATIVE),
    # the confirmation's rejections as hard negatives, without its positives
    "gold+hard": (GOLD, RANDOM, OTHER_GOLD, HARD_NEGATIVE),
    # the old student: the confirm stage's positive vs negative rows as they are
    "teacher": (CONFIRMED, RANDOM, HARD_NEGATIVE),
    # LLM ratings (retriever rate) as they are, or beside the gold anchors and negatives
    "rating": (RATING,),
    "gold+rating": (GOLD, RATING, RANDOM, OTHER_GOLD),
}
# the best on the cross-source set, per-task and multi-label, over two confirm runs' labels: the
# confirmed pages (task-like web text the panel liked) cost unseen-source precision, most for
# function calling (P@N 0.995 -> 0.930); docs/distill.md
DEFAULT_VARIANT = "gold-only"


def infer_source(label: str, reason: str) -> str:
    """The source of a labels row written before the ``source`` column existed.

    Positive rows are confirmed candidates; a negative row is a hard negative only when its reason
    names a (non-random) candidate, so hand-made negatives count as ordinary (random) negatives.
    """
    if label == POSITIVE:
        return CONFIRMED
    if label == NEGATIVE:
        r = reason or ""
        if "random non-candidate" in r or not r.startswith("negative: candidate"):
            return RANDOM
        return HARD_NEGATIVE
    return CANDIDATE


@dataclass(frozen=True)
class StudentSetConfig:
    """Which sources train the student, and how much each weighs.

    Attributes:
        sources: the sources used (a subset of :data:`SOURCES`), or a name of :data:`VARIANTS`.
        weights: per source weight (default 1 for every source); see the module docstring.
        balance: replicate the lighter class so both classes weigh the same in total.
        hard_negative_max: a rejected candidate is a hard negative only at or below this
            correlation (``None``: every candidate the confirm stage labelled negative).
        max_copies: cap on the copies of one row (a tiny source with a big weight).
        seed: seeds the fractional copies.
    """

    sources: tuple[str, ...] | str = DEFAULT_VARIANT
    weights: dict[str, float] = field(default_factory=dict)
    balance: bool = False
    hard_negative_max: float | None = None
    max_copies: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        src = self.sources
        if isinstance(src, str):
            if src not in VARIANTS:
                raise ConfigError(
                    f"training set {src!r} is not one of {list(VARIANTS)}; or pass a list of "
                    f"sources from {list(SOURCES)}"
                )
            src = VARIANTS[src]
        src = tuple(src)
        bad = [s for s in src if s not in SOURCES] + [s for s in self.weights if s not in SOURCES]
        if bad:
            raise ConfigError(f"unknown training-set source(s) {bad}; sources are {list(SOURCES)}")
        neg = [w for s, w in self.weights.items() if not (isinstance(w, (int, float)) and w >= 0)]
        if neg:
            raise ConfigError(
                f"training-set weights must be numbers >= 0, got {dict(self.weights)}"
            )
        if self.max_copies < 1:
            raise ConfigError(f"max_copies must be >= 1, got {self.max_copies}")
        object.__setattr__(self, "sources", src)
        object.__setattr__(self, "weights", dict(self.weights))

    def weight(self, source: str) -> float:
        return float(self.weights.get(source, 1.0))


@dataclass
class StudentSet:
    """The rows a student trains (and is measured) on.

    Attributes:
        rows: a :class:`LabelSet` whose ``row_source`` is set for every row; every label is
            positive or negative.
        copies: ``[n_rows]`` int: times each row is written to fastText's training file.
        summary: per source ``rows``, ``weight``, ``copies``, plus ``conflicts`` / ``skipped``.
    """

    rows: LabelSet
    copies: np.ndarray
    summary: dict

    def __len__(self) -> int:
        return len(self.rows)


def gold_rows(
    task: str,
    ids: list[str],
    texts: list[str],
    source: str,
    similarity: np.ndarray | None = None,
) -> LabelSet:
    """Gold exemplars as label rows: ``gold`` (positive) or ``other-gold`` (negative)."""
    if source not in (GOLD, OTHER_GOLD):
        raise ValueError(f"gold rows are {GOLD!r} or {OTHER_GOLD!r}, got {source!r}")
    n = len(ids)
    lab = POSITIVE if source == GOLD else NEGATIVE
    why = "gold exemplar of the task" if source == GOLD else "gold exemplar of another task"
    sim = np.full(n, np.nan) if similarity is None else np.asarray(similarity, dtype=np.float64)
    return LabelSet(
        task=task,
        ids=[str(i) for i in ids],
        texts=list(texts),
        labels=[lab] * n,
        similarity=sim,
        correlation=np.full(n, np.nan),
        sources=[],
        row_source=[source] * n,
        reasons=[f"{lab}: {why}"] * n,
    )


def text_key(text: str) -> str:
    return hashlib.sha1(" ".join(text.split()).encode("utf-8", "replace")).hexdigest()


def build_student_set(
    task: str,
    labels: LabelSet | None,
    gold: LabelSet | None = None,
    other_gold: LabelSet | None = None,
    config: StudentSetConfig | None = None,
) -> StudentSet:
    """Combine the confirm labels, the task's gold and the other tasks' gold into one set.

    Args:
        task: the task.
        labels: the confirm stage's rows of the task (``None``: no confirm run).
        gold: the task's gold exemplars (:func:`gold_rows` with ``source="gold"``).
        other_gold: the other tasks' gold (``source="other-gold"``).
        config: sources and weights.

    Raises:
        ConfigError: a class ends up with fewer than 2 rows.
    """
    cfg = config or StudentSetConfig()
    parts: list[tuple[LabelSet, int]] = []
    for part in (gold, labels, other_gold):
        if part is not None:
            parts.append((part, 0))
    kept: list[Row] = []
    files: list[list[str]] = []
    seen: dict[str, int] = {}  # text key -> row
    summary: dict = {"skipped": {}, "conflicts": 0, "duplicates": 0}
    available: set[str] = set()

    def skip(why: str) -> None:
        summary["skipped"][why] = summary["skipped"].get(why, 0) + 1

    for part, _ in parts:
        files.extend(part.sources)
        psrc = part.row_source or [
            infer_source(lab, r)
            for lab, r in zip(part.labels, part.reasons or [""] * len(part), strict=True)
        ]
        for k in range(len(part)):
            s = psrc[k]
            lab = part.labels[k]
            if lab not in (POSITIVE, NEGATIVE):
                skip("uncertain" if lab == UNCERTAIN else "empty")
                continue
            if s == HARD_NEGATIVE and cfg.hard_negative_max is not None:
                c = part.correlation[k]
                if not (np.isfinite(c) and c <= cfg.hard_negative_max):
                    skip(f"hard-negative above {cfg.hard_negative_max}")
                    continue
            if s in SOURCES:
                available.add(s)
            if s not in cfg.sources:
                skip(f"source {s} not used")
                continue
            key = text_key(part.texts[k])
            sim, corr = float(part.similarity[k]), float(part.correlation[k])
            why = part.reasons[k] if part.reasons else ""
            if key in seen:
                j = seen[key]
                if kept[j][2] != lab:
                    summary["conflicts"] += 1
                    if lab == POSITIVE:  # the positive source wins: replace the negative row
                        why += " (also a negative)"
                        kept[j] = (part.ids[k], part.texts[k], lab, sim, corr, s, why)
                else:
                    summary["duplicates"] += 1
                continue
            seen[key] = len(kept)
            kept.append((part.ids[k], part.texts[k], lab, sim, corr, s, why))
    rows = LabelSet.from_rows(task, kept, files)
    labs, srcs = [r[2] for r in kept], [r[5] for r in kept]
    for cls in (POSITIVE, NEGATIVE):
        n = sum(1 for x in labs if x == cls)
        if n < 2:
            raise ConfigError(
                f"task {task!r}: the student's training set ({list(cfg.sources)}) has {n} {cls} "
                f"row(s), need at least 2; sources available: {sorted(available) or 'none'} "
                "(pass the task's gold index: --indexes DIR / indexes=; or learn from the confirm "
                "labels' positives: --training-set gold+confirmed or confirmed-only)"
            )
    copies, per_source = _copies(srcs, labs, cfg)
    summary["sources_used"] = list(cfg.sources)
    summary["sources_missing"] = [s for s in cfg.sources if s not in available]
    summary["per_source"] = per_source
    summary["weighting"] = (
        "fastText has no sample weights: a row of weight w is written floor(w) times plus once "
        "with probability w - floor(w) (seeded)"
        + ("; the lighter class replicated so both classes weigh the same" if cfg.balance else "")
    )
    summary["lines"] = int(copies.sum())
    return StudentSet(rows=rows, copies=copies, summary=summary)


def _copies(srcs: list[str], labs: list[str], cfg: StudentSetConfig) -> tuple[np.ndarray, dict]:
    n = len(srcs)
    w = np.array([cfg.weight(s) for s in srcs], dtype=np.float64)
    pos = np.array([lab == POSITIVE for lab in labs])
    scale_pos = scale_neg = 1.0
    if cfg.balance and n:
        wp, wn = w[pos].sum(), w[~pos].sum()
        if wp > 0 and wn > 0:  # scale the lighter class up: never drop a row to balance
            scale_pos, scale_neg = (wn / wp, 1.0) if wp < wn else (1.0, wp / wn)
    w = np.where(pos, w * scale_pos, w * scale_neg)
    rng = np.random.default_rng(cfg.seed)
    base = np.floor(w)
    extra = rng.random(n) < (w - base)
    copies = np.minimum(base + extra, cfg.max_copies).astype(np.int64)
    per_source = {}
    for s in SOURCES:
        m = np.array([x == s for x in srcs], dtype=bool)
        if m.any():
            per_source[s] = {
                "label": SOURCE_LABEL[s],
                "rows": int(m.sum()),
                "weight": round(float(w[m].mean()), 6),
                "lines": int(copies[m].sum()),
                "rows_not_written": int((copies[m] == 0).sum()),
            }
    if n and (scale_neg != 1.0 or scale_pos != 1.0):
        per_source["_class_scale"] = {
            "positive": round(scale_pos, 6),
            "negative": round(scale_neg, 6),
        }
    return copies, per_source


def split_by_source(
    rows: LabelSet, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / held-out split stratified by source (and label within a source).

    Each (source, label) group puts ``round(n * test_fraction)`` rows into the held-out part,
    at least one when it has two or more rows.

    Raises:
        ConfigError: a class lacks a row on either side.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str], list[int]] = {}
    src = rows.row_source or [""] * len(rows)
    for i, (s, lab) in enumerate(zip(src, rows.labels, strict=True)):
        groups.setdefault((s, lab), []).append(i)
    train, test = [], []
    for key in sorted(groups):
        idx = np.array(groups[key], dtype=np.int64)
        rng.shuffle(idx)
        n_test = held_out_count(len(idx), test_fraction)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    tr, te = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    check_split_classes(rows, tr, te, "split", "rows in one source")
    return tr, te


def held_out_count(n: int, test_fraction: float) -> int:
    """Rows a group of ``n`` holds out: ``round(n * test_fraction)``, at least one of two or more,
    never all of them."""
    return 0 if n < 2 else min(n - 1, max(1, round(n * test_fraction)))


def check_split_classes(
    rows: LabelSet, train: np.ndarray, test: np.ndarray, split: str, need: str
) -> None:
    """Raise :class:`ConfigError` unless both classes have a row on both sides of a split."""
    for cls in (POSITIVE, NEGATIVE):
        for name, part in (("train", train), ("held-out", test)):
            if not any(rows.labels[i] == cls for i in part):
                raise ConfigError(
                    f"task {rows.task!r}: no {cls} row in the {name} part of the {split}; need at "
                    f"least 2 {cls} {need}"
                )


def write_student_set(path: str | os.PathLike, ss: StudentSet) -> Path:
    """The training set as parquet (the labels contract's columns plus ``source`` and
    ``copies``)."""
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    from retriever.corpus import AtomicWriter

    r = ss.rows
    table = pa.table(
        {
            "id": pa.array(r.ids, pa.string()),
            "text": pa.array(r.texts, pa.string()),
            "task": pa.array([r.task] * len(r), pa.string()),
            "similarity": pa.array(r.similarity, pa.float64()),
            "correlation": pa.array(r.correlation, pa.float64()),
            "label": pa.array(r.labels, pa.string()),
            "reason": pa.array(r.reasons or [""] * len(r), pa.string()),
            "source": pa.array(r.row_source, pa.string()),
            "copies": pa.array(ss.copies, pa.int64()),
        }
    )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with AtomicWriter(p) as tmp:
        pq.write_table(table, tmp)
    return p


def read_gold_index(index_dir: str | os.PathLike) -> tuple[str, list[str], list[str]]:
    """``(task, ids, texts)`` of a gold index folder (``indexes/<task>/``), without FAISS."""
    pq = require("pyarrow.parquet")
    from retriever.io import read_json

    p = Path(index_dir)
    if not (p / "gold.parquet").is_file() or not (p / "manifest.json").is_file():
        raise InputError(f"no gold index at {p} (gold.parquet + manifest.json); build it first")
    t = pq.read_table(p / "gold.parquet", columns=["id", "text"])
    return (
        str(read_json(p / "manifest.json")["task"]),
        t.column("id").to_pylist(),
        t.column("text").to_pylist(),
    )


def index_similarity(index_dir: str | os.PathLike, other_dirs: list[str | os.PathLike]) -> dict:
    """Max cosine of gold exemplars to ``index_dir``'s task, from the stored vectors (no embedding).

    Returns ``{"gold": [n_gold] leave-one-out max cosine (the exemplar itself left out), task:
    [n] max cosine of that other task's exemplars}``. Indexes built with another model are left
    out (NaN).
    """
    from retriever.index import GoldIndex

    own = GoldIndex.load(index_dir)
    xb = _vectors(own)
    k = min(2, own.ntotal)
    D, I = own.search(xb, k)  # [n, k]
    self_pos = np.arange(own.ntotal)[:, None]
    D = np.where(I == self_pos, -np.inf, D)
    loo = D.max(axis=1) if k > 1 else np.full(own.ntotal, np.nan)
    out: dict = {"gold": np.where(np.isfinite(loo), loo, np.nan)}
    for d in other_dirs:
        gi = GoldIndex.load(d)
        if gi.model != own.model or gi.dim != own.dim:
            out[gi.task] = np.full(gi.ntotal, np.nan)
            continue
        out[gi.task] = own.search(_vectors(gi), 1)[0][:, 0].astype(np.float64)
    return out


def _vectors(gi) -> np.ndarray:
    """The stored unit vectors of an index (flat indexes reconstruct exactly)."""
    try:
        return np.asarray(gi.index.reconstruct_n(0, gi.ntotal), dtype=np.float32)
    except RuntimeError as e:  # an index type without reconstruction (IVF without direct map)
        raise InputError(
            f"index {gi.task!r} ({gi.manifest.get('factory')}) cannot give back its vectors for "
            f"the student's similarity check: {e}"
        ) from e


def load_gold_sets(
    task: str, index_dirs: dict[str, str | os.PathLike], with_similarity: bool = True
) -> tuple[LabelSet, LabelSet | None]:
    """The task's gold (``gold``) and the other tasks' gold (``other-gold``) from index folders.

    Args:
        task: the task.
        index_dirs: task -> its gold index folder (the run's ``indexes/<task>``).
        with_similarity: fill ``similarity`` (leave-one-out for the gold, see
            :func:`index_similarity`); needs FAISS.
    """
    if task not in index_dirs:
        raise InputError(f"no gold index for task {task!r} among {sorted(index_dirs)}")
    others = [t for t in index_dirs if t != task]
    sims = (
        index_similarity(index_dirs[task], [index_dirs[t] for t in others])
        if with_similarity
        else {}
    )
    _, ids, texts = read_gold_index(index_dirs[task])
    gold = gold_rows(task, ids, texts, GOLD, sims.get("gold"))
    gold.sources = [[str(Path(index_dirs[task]) / "gold.parquet"), "gold index"]]
    o_ids: list[str] = []
    o_texts: list[str] = []
    o_sims: list[np.ndarray] = []
    for t in others:
        _, i, x = read_gold_index(index_dirs[t])
        o_ids += [f"{t}/{v}" for v in i]
        o_texts += x
        o_sims.append(sims.get(t, np.full(len(i), np.nan)))
    if not o_ids:
        return gold, None
    other = gold_rows(task, o_ids, o_texts, OTHER_GOLD, np.concatenate(o_sims))
    other.sources = [[str(Path(index_dirs[t]) / "gold.parquet"), "gold index"] for t in others]
    return gold, other


def bucket_for(lines: list[str], word_ngrams: int, cap: int, minn: int = 0, maxn: int = 0) -> int:
    """fastText hash buckets sized to the data: twice the distinct n-grams, a power of two.

    The input matrix has ``(words + bucket) x dim`` floats, so 2,000,000 buckets make a 500 MB
    model even for 30 training lines. Word n-grams beyond the vocabulary and the character
    n-grams of every word (``minn``-``maxn`` characters of ``<word>``, as fastText pads them) hash
    into the same buckets; twice their distinct count keeps collisions rare. Clamped to
    ``[2**12, cap]``.
    """
    grams: set[int] = set()
    words: set[str] = set()
    for line in lines:
        w = line.split()
        if minn > 0:
            words.update(w)
        for n in range(2, word_ngrams + 1):
            for j in range(len(w) - n + 1):
                grams.add(hash(" ".join(w[j : j + n])))
    for word in words:
        padded = f"<{word}>"
        for n in range(minn, maxn + 1):
            for j in range(len(padded) - n + 1):
                grams.add(hash(padded[j : j + n]))
    if not grams:
        return min(cap, 4096)
    want = max(4096, 2 ** math.ceil(math.log2(max(2, 2 * len(grams)))))
    return int(min(cap, want))
