"""The record types every stage passes along (datatrove ``data.py`` in spirit)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Doc:
    """One document.

    Scores live in metadata keys named like the score columns
    (``metadata["score_function-calling"]``, :mod:`retriever.names`) so that any later stage can
    read them; ``metadata["shard"]`` and ``metadata["row"]`` say where the document came from.
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Rejected:
    """A corpus record that could not become a :class:`Doc`.

    Readers yield these instead of raising, so one bad line never stops a shard; every stage counts
    them and writes them aside (``reason`` is one of :data:`REJECT_REASONS`).
    """

    shard: str
    row: int
    reason: str
    raw: str = ""


REJECT_REASONS = ("bad_json", "no_text", "empty", "undecodable", "bad_tokens", "bad_record")

DocStream = Iterator[Doc]
RecordStream = Iterator["Doc | Rejected"]
