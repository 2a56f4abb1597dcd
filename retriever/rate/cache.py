"""The answer cache: every answer a rating endpoint gave, keyed by (prompt version, model, id).

One sqlite file (WAL journal, one row committed per answer), so a rerun asks nothing twice and a
killed run loses at most the requests in flight. Only answers are stored, never parses: the score
is parsed again on every read, so a better parser needs no new request. A row also records the
hash of the document text it answered; an id whose text changed is asked again.

Writes happen from one thread (the stage's); readers may share the file.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

from retriever.errors import OutputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    prompt TEXT NOT NULL,       -- prompt version hash
    model TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    sample INTEGER NOT NULL,    -- 0, or the k-th of several answers per document
    text_sha TEXT NOT NULL,     -- sha1 of the document text that was rated
    raw TEXT NOT NULL,          -- the answer as the endpoint sent it
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created REAL NOT NULL,
    PRIMARY KEY (prompt, model, doc_id, sample)
)
"""


def text_sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()


class AnswerCache:
    """``get`` / ``put`` answers by ``(prompt, model, doc_id, sample)``.

    Raises:
        OutputError: the file cannot be opened or written (read-only folder, not a sqlite file).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(SCHEMA)
        except (sqlite3.Error, OSError) as e:
            raise OutputError(
                f"cannot open the rating cache {self.path} ({e}); pass another --cache path"
            ) from e

    def get(self, prompt: str, model: str, doc_id: str, sha: str, sample: int = 0) -> str | None:
        """The cached answer, or ``None`` (never asked, or asked about another text)."""
        row = self.db.execute(
            "SELECT raw, text_sha FROM answers WHERE prompt=? AND model=? AND doc_id=? AND "
            "sample=?",
            (prompt, model, doc_id, sample),
        ).fetchone()
        if row is None or row[1] != sha:
            return None
        return row[0]

    def put(
        self,
        prompt: str,
        model: str,
        doc_id: str,
        sha: str,
        raw: str,
        usage: dict | None = None,
        sample: int = 0,
    ) -> None:
        u = usage or {}
        try:
            self.db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    prompt,
                    model,
                    doc_id,
                    sample,
                    sha,
                    raw,
                    u.get("prompt_tokens"),
                    u.get("completion_tokens"),
                    time.time(),
                ),
            )
        except sqlite3.Error as e:
            raise OutputError(f"cannot write the rating cache {self.path}: {e}") from e

    def count(self, prompt: str | None = None, model: str | None = None) -> int:
        q = "SELECT COUNT(*) FROM answers WHERE 1=1"
        args: list[str] = []
        if prompt is not None:
            q, args = q + " AND prompt=?", [*args, prompt]
        if model is not None:
            q, args = q + " AND model=?", [*args, model]
        return int(self.db.execute(q, args).fetchone()[0])

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
