"""Names: one safe pattern for every name that becomes a path (task names, shard output names),
and one scheme for the names of per-task scores (columns and metadata keys, below).

A task name is a folder under ``--output`` / ``indexes/``; a shard name is a file stem under
``scores/``, ``done/``, ``<task>/``. Letters, digits and ``. _ - = + @`` only, not
starting with a dot, at most 200 characters: no ``/``, no ``..``, nothing a shell or file system
treats specially.
"""

from __future__ import annotations

import math
import re

from retriever.errors import UnsafeNameError

SAFE_NAME = re.compile(r"[A-Za-z0-9_=+@-][A-Za-z0-9._=+@-]{0,199}")


def is_safe_name(name: str) -> bool:
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None


def check_name(name: str, what: str = "task name") -> str:
    """Return ``name`` when it is safe as a file or folder name, else raise.

    Raises:
        UnsafeNameError: ``name`` has a path separator, ``..``, a leading dot, a space or
            another character outside ``[A-Za-z0-9._=+-]``.
    """
    if not is_safe_name(name):
        raise UnsafeNameError(
            f"{what} {name!r} cannot be used as a file name: use letters, digits, '.', '_', '-', "
            "'@' (no '/', no leading '.', at most 200 characters)"
        )
    return name


# -- score names ---------------------------------------------------------------------------------
# One scheme names every per-task score, as a parquet column and as a document's metadata key:
# ``<kind>_<task>``. Names are parsed longest kind first: ``sparse_topk_<t>`` is never a
# ``sparse_`` score (so a task named ``topk_<x>`` cannot have its ``sparse_`` score parsed back).
# Outputs written before the scheme used ``<old>/<task>`` metadata keys (``sim/``, ``simk/``,
# ``prob/``, ...); readers accept those too (:func:`score_value`).

SCORE = "score"  # the candidate ranking: the head's probability when the index has one, else cos
TOPK = "topk"  # mean of the top-k cosines
COS = "cos"  # max cosine to the task's gold
SPARSE = "sparse"  # max TF-IDF cosine
SPARSE_TOPK = "sparse_topk"  # mean top-k TF-IDF cosine
HYBRID = "hybrid"  # calibrated probability over the four scores
HEAD = "head"  # calibrated probability over the vector, the scores and the words
PROB = "prob"  # the distilled filter's probability of the task's positive label
CANDIDATE = "candidate"  # bool: score_<task> >= the task's threshold
KEYWORDS = "kw"  # the keyword prefilter's pattern matches

SCORE_KINDS = (SCORE, TOPK, COS, SPARSE, SPARSE_TOPK, HYBRID, HEAD, PROB, CANDIDATE, KEYWORDS)
# metadata prefixes of outputs written before the one scheme (docs/contracts.md "Score names")
LEGACY_PREFIXES = {SCORE: "sim/", TOPK: "simk/", **{k: f"{k}/" for k in SCORE_KINDS[2:]}}
_BY_LENGTH = sorted(SCORE_KINDS, key=len, reverse=True)


def score_name(kind: str, task: str) -> str:
    """The column / metadata key of ``task``'s score of ``kind``: ``score_name("prob", "fc")``
    is ``"prob_fc"``."""
    return f"{kind}_{task}"


def split_score_name(name: str) -> tuple[str, str] | None:
    """``(kind, task)`` of a score name, in the scheme or a legacy one (``sim/fc`` ->
    ``("score", "fc")``); ``None`` for any other name (``id``, ``n_chars``, ``score``)."""
    for kind in _BY_LENGTH:
        for prefix in (f"{kind}_", LEGACY_PREFIXES[kind]):
            if name.startswith(prefix) and len(name) > len(prefix):
                return kind, name[len(prefix) :]
    return None


def score_kind(name: str) -> str | None:
    """The kind of a score name in the scheme (``sparse_topk_fc`` -> ``"sparse_topk"``), else
    ``None`` (legacy spellings included: columns never had them)."""
    parsed = split_score_name(name)
    return parsed[0] if parsed is not None and name == score_name(*parsed) else None


def score_tasks(names, kind: str = SCORE) -> list[str]:
    """Tasks that have a ``kind`` score among ``names`` (column names or metadata keys, in the
    scheme), in order."""
    return [n[len(kind) + 1 :] for n in names if score_kind(n) == kind]


def canonical_score_name(name: str) -> str:
    """``name`` in the scheme (a legacy ``sim/fc`` becomes ``score_fc``); other names as given."""
    parsed = split_score_name(name)
    return name if parsed is None else score_name(*parsed)


def score_spellings(name: str) -> list[str]:
    """The keys a score is looked up under, in order: ``name``, then (for a score name) its other
    spellings, scheme or legacy (``prob_fc`` -> ``["prob_fc", "prob/fc"]``).

    Resolve them once per file or pool and read each row with :func:`first_score`.
    """
    keys = [name]
    parsed = split_score_name(name)
    if parsed is not None:
        kind, task = parsed
        keys += [k for k in (score_name(kind, task), LEGACY_PREFIXES[kind] + task) if k != name]
    return keys


def first_score(metadata, keys) -> float | None:
    """The first finite number stored under one of ``keys`` (spelled out, as
    :func:`score_spellings` gives them) in ``metadata``, else ``None``."""
    for k in keys:
        v = metadata.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def score_value(metadata, name: str) -> float | None:
    """A finite number stored under ``name`` in ``metadata``, else under the same score's other
    spelling (scheme or legacy), else ``None``.

    ``name`` may be any key (``"quality"``): only score names get the second lookup.
    """
    return first_score(metadata, score_spellings(name))
