"""Token counts of kept documents: exact with a local tokenizer, else an estimate (and said so).

ClimbLab is counted in GPT-2 tokens. Nothing is downloaded here: pass a local tokenizer
(``tokenizer.json`` or a folder holding one, e.g. a saved ``gpt2`` tokenizer) to count exactly;
without one, tokens are estimated as characters / :data:`CHARS_PER_TOKEN` and every manifest says
``"tokens_method": "estimate ..."``.
"""

from __future__ import annotations

import os
from pathlib import Path

from retriever._deps import require
from retriever.errors import InputError

# GPT-2 BPE on English web text averages about 4 characters per token
CHARS_PER_TOKEN = 4.0
_CACHE: dict[str, object] = {}


class TokenCounter:
    """Counts tokens of texts.

    Args:
        tokenizer: path to a ``tokenizer.json`` or to a folder holding one (or a folder a
            ``transformers`` fast tokenizer loads from); ``None`` estimates from characters.
    """

    def __init__(self, tokenizer: str | os.PathLike | None = None):
        self.tokenizer = str(tokenizer) if tokenizer else None
        if self.tokenizer and not Path(self.tokenizer).exists():
            raise InputError(
                f"tokenizer {self.tokenizer} does not exist; pass a local tokenizer.json or a "
                "folder holding one (nothing is downloaded), or leave --tokenizer out to estimate"
            )

    @property
    def exact(self) -> bool:
        return self.tokenizer is not None

    @property
    def method(self) -> str:
        if self.tokenizer:
            return f"exact: {self.tokenizer}"
        return f"estimate: characters / {CHARS_PER_TOKEN} (no --tokenizer given)"

    def _load(self):
        if self.tokenizer not in _CACHE:
            p = Path(self.tokenizer)
            tj = p if p.is_file() else p / "tokenizer.json"
            if tj.is_file():
                tok = require("tokenizers").Tokenizer.from_file(str(tj))
                _CACHE[self.tokenizer] = ("tokenizers", tok)
            else:
                transformers = require("transformers")
                try:
                    tok = transformers.AutoTokenizer.from_pretrained(str(p), local_files_only=True)
                except (OSError, ValueError) as e:
                    raise InputError(f"cannot load a tokenizer from {p} ({e})") from e
                _CACHE[self.tokenizer] = ("transformers", tok)
        return _CACHE[self.tokenizer]

    def count(self, texts: list[str]) -> list[int]:
        """Tokens of each text (no special tokens added)."""
        if not texts:
            return []
        if not self.tokenizer:
            return [round(len(t) / CHARS_PER_TOKEN) for t in texts]
        kind, tok = self._load()
        if kind == "tokenizers":
            return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]
        enc = tok(texts, add_special_tokens=False, return_attention_mask=False)
        return [len(ids) for ids in enc["input_ids"]]
