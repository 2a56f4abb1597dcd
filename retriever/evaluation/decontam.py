"""Decontamination: evaluation records must not be in the index gold or in a training set.

As GPT-3 (Brown et al. 2020, appendix C) and lm-evaluation-harness's decontamination did: texts
are normalized (lowercased, split into words on anything that is not a letter or a digit) and an
evaluation record is *contaminated* by a document when they share a 13-gram of words, or when
their normalized texts are equal (exact match; records shorter than 13 words can only match so,
or as a whole inside the document's word sequence, GPT-3's rule for short examples).

:class:`EvalFingerprint` holds the 13-gram hashes (blake2b, 8 bytes) of every evaluation record
with the records that own them; :func:`check_overlap` reports, per task, which evaluation records
a set of documents contaminates; ``build-dataset --decontaminate`` drops the documents that share
a 13-gram with the evaluation sets (counted as ``dropped/contaminated``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retriever.errors import InputError

N = 13
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lowercased words (letters and digits; punctuation and whitespace separate them)."""
    return _WORD.findall(text.lower())


def _h(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "big")


def ngram_hashes(text: str, n: int = N) -> set[int]:
    """Hashes of the word ``n``-grams of ``text`` (empty when it has fewer than ``n`` words)."""
    w = words(text)
    return {_h(" ".join(w[i : i + n])) for i in range(len(w) - n + 1)}


def exact_hash(text: str) -> int:
    """Hash of the normalized text (its words joined by one space)."""
    return _h(" ".join(words(text)))


@dataclass
class EvalFingerprint:
    """The evaluation sets' n-grams and exact hashes, and which record owns each.

    Attributes:
        n: n-gram length in words.
        records: task -> record ids, in order.
        grams: n-gram hash -> ``[(task, record index), ...]``.
        exact: exact hash -> ``[(task, record index), ...]``.
        short: records with fewer than ``n`` words: ``(task, index) -> their words joined``.
    """

    n: int = N
    records: dict[str, list[str]] = field(default_factory=dict)
    grams: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    exact: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    short: dict[tuple[str, int], str] = field(default_factory=dict)

    def add(self, task: str, rid: str, text: str) -> None:
        ids = self.records.setdefault(task, [])
        key = (task, len(ids))
        ids.append(rid)
        self.exact.setdefault(exact_hash(text), []).append(key)
        g = ngram_hashes(text, self.n)
        if not g:
            joined = " ".join(words(text))
            if joined:
                self.short[key] = joined
        for h in g:
            self.grams.setdefault(h, []).append(key)

    @property
    def n_records(self) -> int:
        return sum(len(v) for v in self.records.values())

    def hits(self, text: str) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
        """``(records sharing an n-gram with text, records equal to text)``."""
        gram_hits: set[tuple[str, int]] = set()
        for h in ngram_hashes(text, self.n):
            owners = self.grams.get(h)
            if owners:
                gram_hits.update(owners)
        if self.short:
            joined = " " + " ".join(words(text)) + " "
            gram_hits.update(k for k, s in self.short.items() if f" {s} " in joined)
        return gram_hits, set(self.exact.get(exact_hash(text), ()))

    def contaminated(self, text: str) -> bool:
        """True when ``text`` shares an n-gram with, or equals, some evaluation record."""
        g, e = self.hits(text)
        return bool(g or e)


def fingerprint_eval(sets: dict[str, Iterable[tuple[str, str]]], n: int = N) -> EvalFingerprint:
    """Fingerprint ``{task: [(record id, text), ...]}``."""
    fp = EvalFingerprint(n=n)
    for task, recs in sets.items():
        fp.records.setdefault(task, [])
        for rid, text in recs:
            fp.add(task, str(rid), text)
    return fp


def eval_texts(path: str | os.PathLike, task: str | None = None) -> list[tuple[str, str]]:
    """``(id, text)`` of an evaluation file: multiple-choice records as ``prompt + " " + answer``
    (the lm-eval decontamination query plus the right answer; distractors are left out: in the
    derived sets they are other records' answers), else the ``text`` field.

    Raises:
        InputError: unreadable file or records with neither form.
    """
    from retriever.evaluation.elmb import get_task, iter_eval_jsonl, record_text

    p = Path(path)
    t = get_task(task) if task else None
    out = []
    for i, rec in iter_eval_jsonl(p):
        rid = str(rec.get("id", f"{p.stem}:{i}")) if isinstance(rec, dict) else f"{p.stem}:{i}"
        if isinstance(rec, dict) and {"question", "choices", "answer"} <= set(rec):
            fmt = t or (get_task("rag") if "ctx" in rec else get_task("reasoning"))
            text = record_text(rec, fmt)
        elif isinstance(rec, dict) and isinstance(rec.get("text"), str):
            text = rec["text"]
        else:
            raise InputError(f"{p} line {i + 1}: need question/choices/answer or a text field")
        out.append((rid, text))
    return out


def fingerprint_files(files: Mapping[str, str | os.PathLike], n: int = N) -> EvalFingerprint:
    """Fingerprint evaluation files, ``{task: path}``."""
    return fingerprint_eval({t: eval_texts(p, t) for t, p in files.items()}, n=n)


def check_overlap(
    fp: EvalFingerprint, docs: Iterable[tuple[str, str]], examples: int = 5
) -> dict[str, Any]:
    """Which evaluation records the documents contaminate.

    Args:
        fp: the evaluation sets' fingerprint.
        docs: ``(doc id, text)`` of the index gold, a training set or any corpus.
        examples: contaminated (eval id, doc id) pairs kept per task.

    Returns:
        ``{"docs": n, "docs_contaminated": n, "clean": bool, "tasks": {task: {"records",
        "ngram_overlap", "exact_match", "contaminated", "share", "examples"}}}``.
    """
    gram_hit: dict[str, set[int]] = {t: set() for t in fp.records}
    exact_hit: dict[str, set[int]] = {t: set() for t in fp.records}
    ex: dict[str, list[list[str]]] = {t: [] for t in fp.records}
    n_docs = n_bad = 0
    for did, text in docs:
        n_docs += 1
        g, e = fp.hits(text)
        if g or e:
            n_bad += 1
        for t, i in g:
            gram_hit[t].add(i)
        for t, i in e:
            exact_hit[t].add(i)
        for t, i in sorted(g | e):
            if len(ex[t]) < examples:
                ex[t].append([fp.records[t][i], str(did)])
    tasks = {}
    for t, ids in fp.records.items():
        bad = gram_hit[t] | exact_hit[t]
        tasks[t] = {
            "records": len(ids),
            "ngram_overlap": len(gram_hit[t]),
            "exact_match": len(exact_hit[t]),
            "contaminated": len(bad),
            "share": round(len(bad) / len(ids), 6) if ids else 0.0,
            "examples": ex[t],
        }
    return {
        "n": fp.n,
        "docs": n_docs,
        "docs_contaminated": n_bad,
        "clean": all(v["contaminated"] == 0 for v in tasks.values()),
        "tasks": tasks,
    }


def corpus_docs(paths: list[str] | str, text_field: str = "text") -> Iterable[tuple[str, str]]:
    """``(id, text)`` of every readable document of corpus files / folders / a dataset folder."""
    from retriever.corpus import CorpusReader
    from retriever.data import Doc
    from retriever.proxy.data import dataset_shards

    reader = CorpusReader(text_field=text_field)
    for shard in dataset_shards(paths):
        for rec in reader.read(shard):
            if isinstance(rec, Doc):
                yield rec.id, rec.text
