"""Scorecard: each panel model's skill on a task, measured here instead of copied from somewhere.

Two kinds of gold:

- **multiple choice** (ELMB: ``question``, ``choices``, ``answer``, optional ``ctx``): like
  lm-evaluation-harness, the prompt is ``"Question: {question}\\nAnswer:"`` (``"Context: {ctx}\\n"``
  first for ChatRAG), each choice is scored as the continuation ``" " + choice``, and
  ``acc`` = the highest summed log-likelihood is the right choice, ``acc_norm`` = the same after
  dividing by the choice's length in characters;
- **plain texts** (no choices): ``neg_bpb`` = minus the bits per byte of the gold texts together
  (total bits / total bytes), so a model that predicts the gold better scores higher.

Scores are written as ``model,task,metric,score`` CSV rows that
:func:`~retriever.confirm.panel.load_panel` reads (the panel's ``scores`` file), replacing older
rows of the same model, task and metric.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from retriever._deps import require
from retriever.confirm.bpb import LN2, LMScorer
from retriever.confirm.panel import Panel, Score, load_scores, write_scores_csv
from retriever.corpus import list_shards
from retriever.errors import ConfigError, InputError, RetrieverError
from retriever.gold.formats import elmb_choices, elmb_prompt

log = logging.getLogger(__name__)


KINDS = ("auto", "mc", "text")


@dataclass(frozen=True)
class ScorecardConfig:
    """How a panel's task scores are measured (``retriever confirm scorecard``; a run config's
    ``[confirm]`` ``scorecard_kind`` / ``scorecard_limit``).

    Attributes:
        kind: auto (multiple choice when the gold records have choices, else bits per byte of
            their texts), mc or text.
        limit: gold records sampled per task.
    """

    kind: str = "auto"
    limit: int = 200

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(
                f"scorecard kind (a run config's [confirm] scorecard_kind) must be one of "
                f"{', '.join(KINDS)}, got {self.kind!r}"
            )
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ConfigError(
                "scorecard limit (a run config's [confirm] scorecard_limit) must be an integer "
                f">= 1, got {self.limit!r}"
            )


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice question: prompt, choices, index of the right one."""

    prompt: str
    choices: list[str]
    answer: int


@dataclass
class GoldSample:
    """The gold records a scorecard uses: multiple-choice items or plain texts, and what was
    skipped."""

    items: list[MCItem] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    skipped: int = 0

    @property
    def kind(self) -> str:
        return "multiple_choice" if self.items else "text"


def read_gold(
    paths: list[str] | str,
    limit: int | None = ScorecardConfig.limit,
    seed: int = 0,
    kind: str = ScorecardConfig.kind,
) -> GoldSample:
    """Read gold records (jsonl / json / parquet): ELMB multiple choice, else the ``text`` field.

    Args:
        paths: files or folders.
        limit: keep a seeded random sample of at most this many records (``None``: all).
        seed: sample seed.
        kind: ``auto`` (multiple choice when records have question/choices/answer), ``mc``,
        ``text``.

    Raises:
        InputError: nothing usable was found.
    """
    items: list[MCItem] = []
    texts: list[str] = []
    skipped = 0
    for shard in list_shards(paths):
        for rec in _iter_records(shard):
            if not isinstance(rec, dict):
                skipped += 1
                continue
            is_mc = all(k in rec for k in ("question", "choices", "answer"))
            if kind in ("auto", "mc") and is_mc:
                prompt, mc = elmb_prompt(rec), elmb_choices(rec)
                if prompt is None or mc is None:
                    skipped += 1
                    continue
                items.append(MCItem(prompt, mc[0], mc[1]))
            elif kind != "mc" and isinstance(rec.get("text"), str) and rec["text"].strip():
                texts.append(rec["text"])
            else:
                skipped += 1
    if items and texts and kind == "auto":
        texts = []  # a folder mixing both: the multiple-choice records define the task
    if not items and not texts:
        raise InputError(
            f"no usable gold record in {paths} ({skipped} skipped): need ELMB records "
            "(question, choices, answer) or a `text` field"
        )
    rng = np.random.default_rng(seed)
    if limit is not None and len(items) > limit:
        items = [items[i] for i in sorted(rng.choice(len(items), size=limit, replace=False))]
    if limit is not None and len(texts) > limit:
        texts = [texts[i] for i in sorted(rng.choice(len(texts), size=limit, replace=False))]
    return GoldSample(items=items, texts=texts, skipped=skipped)


def _iter_records(shard: str) -> Iterator[Any]:
    """Raw records of a gold file: ELMB exports from the Hub carry no ``text`` field, so the
    corpus reader (which needs one) is not used here."""
    path = Path(shard)
    if not path.is_file():
        raise InputError(f"gold file {shard} does not exist (Hub gold: download it first)")
    if path.name.endswith(".parquet"):
        pq = require("pyarrow.parquet")
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
        return
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        if ".jsonl" in path.name:
            for line in fh:
                if line.strip():
                    try:
                        yield orjson.loads(line)
                    except orjson.JSONDecodeError:
                        yield None
        else:
            data = orjson.loads(fh.read())
            yield from (data if isinstance(data, list) else data.values())


def choice_loglikelihoods(scorer: LMScorer, items: list[MCItem]) -> list[np.ndarray]:
    """Summed log-likelihood of ``" " + choice`` after each prompt, batched over every choice.

    Tokenization follows lm-eval: the continuation's tokens are those of ``prompt + continuation``
    after the prompt's own tokens; the window keeps the last ``max_length`` tokens.

    Returns:
        One ``[n_choices]`` float64 array per item.
    """
    windows, owner = [], []
    for q, it in enumerate(items):
        ctx = scorer.tokenize([it.prompt])[0]
        wholes = scorer.tokenize([it.prompt + " " + c for c in it.choices])
        for whole in wholes:
            cont = whole[len(ctx) :] or whole[-1:]
            full = (ctx if ctx else [scorer.prefix_token]) + cont
            full = full[-(scorer.max_length + 1) :]
            windows.append((full[:-1], cont[-min(len(cont), len(full) - 1) :]))
            owner.append(q)
    nats = scorer.window_nats(windows)  # [n_windows]
    out = [np.zeros(len(it.choices)) for it in items]
    k = [0] * len(items)
    for q, v in zip(owner, nats, strict=True):
        out[q][k[q]] = -v
        k[q] += 1
    return out


def accuracy(lls: list[np.ndarray], items: list[MCItem]) -> tuple[float, float]:
    """``(acc, acc_norm)`` as lm-eval computes them (norm: divide by the choice's character
    length)."""
    acc = np.mean([int(np.argmax(ll)) == it.answer for ll, it in zip(lls, items, strict=True)])
    acc_norm = np.mean(
        [
            int(np.argmax(ll / np.array([max(len(c), 1) for c in it.choices], dtype=np.float64)))
            == it.answer
            for ll, it in zip(lls, items, strict=True)
        ]
    )
    return float(acc), float(acc_norm)


@dataclass
class ScorecardResult:
    """Scores of every model that could be scored, and the per-model details / failures."""

    task: str
    kind: str
    scores: list[Score]
    details: dict[str, dict[str, Any]]


def scorecard(
    panel: Panel,
    task: str,
    gold: GoldSample,
    device: str | None = None,
    dtype: str = "auto",
    max_batch_tokens: int = 8192,
) -> ScorecardResult:
    """Score every panel model on ``task``'s gold.

    A model that fails to load is reported in ``details`` with its error and gets no score (so the
    correlation leaves it out) rather than a made-up one.
    """
    scores: list[Score] = []
    details: dict[str, dict[str, Any]] = {}
    for m in panel.models:
        try:
            scorer = LMScorer(m, device=device, dtype=dtype, max_batch_tokens=max_batch_tokens)
        except RetrieverError as e:
            details[m.name] = {"status": "failed", "error": str(e)}
            log.warning("scorecard: model %s failed to load: %s", m.name, e)
            continue
        if gold.items:
            lls = choice_loglikelihoods(scorer, gold.items)
            acc, acc_norm = accuracy(lls, gold.items)
            scores += [Score(m.name, task, "acc", acc), Score(m.name, task, "acc_norm", acc_norm)]
            details[m.name] = {
                "status": "ok",
                "acc": acc,
                "acc_norm": acc_norm,
                "n": len(gold.items),
            }
        else:
            res = scorer.bits_per_byte(gold.texts)
            ok = np.isfinite(res.nats)
            if not ok.any():
                details[m.name] = {"status": "failed", "error": "NaN loss on every gold text"}
                continue
            bpb = float(res.nats[ok].sum() / LN2 / res.n_bytes[ok].sum())
            scores.append(Score(m.name, task, "neg_bpb", -bpb))
            details[m.name] = {
                "status": "ok",
                "bpb": bpb,
                "n": int(ok.sum()),
                "nan_texts": int((~ok).sum()),
            }
        del scorer
    return ScorecardResult(task=task, kind=gold.kind, scores=scores, details=details)


def update_scores_file(path: str | os.PathLike, scores: list[Score]) -> list[Score]:
    """Merge ``scores`` into a scores CSV (new rows replace old ones of the same key); write it
    back."""
    p = Path(path)
    old = load_scores(p) if p.is_file() else []
    merged = {(s.model, s.task, s.metric): s for s in old}
    for s in scores:
        merged[(s.model, s.task, s.metric)] = s
    rows = sorted(merged.values(), key=lambda s: (s.task, s.metric, s.model))
    write_scores_csv(p, rows)
    return rows
