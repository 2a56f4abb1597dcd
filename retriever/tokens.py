"""The one token counter (dataset budgets, filter accounting): a local GPT-2 tokenizer, else
``token_count``, else an estimate.

The rule, everywhere a token is counted: the budget of the challenge is in GPT-2 tokens
(ClimbLab's ``token_count``). Three sources, in order:

1. ``tokenizer``: a local tokenizer (a ``tokenizer.json``, a folder holding one, or a folder
   ``AutoTokenizer`` can load); exact, and the slowest (about 1-3 MB of text per second per core).
   Nothing is downloaded.
2. ``token_count`` on the record (top level or in ``metadata``): exact for ClimbLab, free.
3. An estimate: ``ceil(utf-8 bytes / 4)`` (GPT-2 averages about 4 bytes a token on English web
   text; code and non-English text have fewer bytes a token, so the estimate undercounts them).
   Every manifest says how many documents were counted each way.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from retriever._deps import require
from retriever.data import Doc
from retriever.errors import InputError

BYTES_PER_TOKEN = 4
METHODS = ("tokenizer", "token_count", "estimate")
# tokenizers loaded in this process, by path: a filter makes a counter per shard
_LOADED: dict[str, tuple[str, Any]] = {}


class TokenCounter:
    """Counts tokens of documents in batches.

    Args:
        tokenizer: local tokenizer folder or ``tokenizer.json`` file (``None``: no tokenizer, use
            ``token_count`` or the estimate).
        use_token_count: trust a record's ``token_count`` field when there is no tokenizer.
    """

    def __init__(self, tokenizer: str | os.PathLike | None = None, use_token_count: bool = True):
        self.tokenizer = str(tokenizer) if tokenizer else None
        self.use_token_count = use_token_count
        self._tok = None
        if self.tokenizer is not None and not Path(self.tokenizer).exists():
            raise InputError(
                f"tokenizer {self.tokenizer} does not exist; pass a local GPT-2 tokenizer folder "
                "(with tokenizer.json or vocab.json + merges.txt) or drop --tokenizer to use "
                "token_count / the bytes/4 estimate"
            )

    @property
    def exact(self) -> bool:
        """True with a tokenizer (every count exact)."""
        return self.tokenizer is not None

    @property
    def method(self) -> str:
        """How counts are made, in words (a filter manifest's ``tokens_method``)."""
        if self.tokenizer:
            return f"exact: {self.tokenizer}"
        src = "the record's token_count, else " if self.use_token_count else ""
        return f"estimate: {src}ceil(utf-8 bytes / {BYTES_PER_TOKEN}) (no --tokenizer given)"

    @property
    def spec(self) -> str:
        """What a manifest records (part of the scan fingerprint)."""
        if self.tokenizer:
            return f"tokenizer:{Path(self.tokenizer).resolve()}"
        return "token_count,estimate" if self.use_token_count else "estimate"

    def _load(self):
        if self._tok is None and self.tokenizer in _LOADED:
            self._tok = _LOADED[self.tokenizer]
        if self._tok is None:
            path = Path(str(self.tokenizer))
            tj = path if path.is_file() else path / "tokenizer.json"
            if tj.is_file():
                tokenizers = require("tokenizers")
                self._tok = ("fast", tokenizers.Tokenizer.from_file(str(tj)))
            else:
                transformers = require("transformers")
                try:
                    tok = transformers.AutoTokenizer.from_pretrained(
                        str(path), local_files_only=True
                    )
                except (OSError, ValueError) as e:
                    raise InputError(
                        f"cannot load the tokenizer in {path} ({e}); it needs tokenizer.json or "
                        "vocab.json + merges.txt"
                    ) from e
                tok.model_max_length = 1 << 62  # counting only: no length warning for long docs
                self._tok = ("hf", tok)
            _LOADED[str(self.tokenizer)] = self._tok
        return self._tok

    def count(self, docs: list[Doc]) -> tuple[list[int], list[str]]:
        """Token counts of ``docs`` and the method used for each (one of :data:`METHODS`)."""
        if self.tokenizer:
            return self._tokenize([d.text for d in docs]), ["tokenizer"] * len(docs)
        counts, methods = [], []
        for d in docs:
            tc = d.metadata.get("token_count") if self.use_token_count else None
            if isinstance(tc, (int, float)) and not isinstance(tc, bool) and tc >= 0:
                counts.append(int(tc))
                methods.append("token_count")
            else:
                counts.append(estimate_tokens(d.text))
                methods.append("estimate")
        return counts, methods

    def count_tokens(self, docs: list[Doc]) -> list[int]:
        """Token counts of ``docs`` (the methods left out)."""
        return self.count(docs)[0]

    def count_texts(self, texts: list[str]) -> list[int]:
        """Token counts of bare texts: the tokenizer, else the estimate (no record to read)."""
        if self.tokenizer:
            return self._tokenize(texts)
        return [estimate_tokens(t) for t in texts]

    def _tokenize(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        kind, tok = self._load()
        if kind == "fast":
            return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]
        return [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]


def estimate_tokens(text: str) -> int:
    """``ceil(len(text.encode("utf-8")) / 4)``, at least 1."""
    return max(1, math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN))
