"""The settings of ``build-dataset``: one frozen :class:`DatasetConfig`, used as-is by the Python
API (``DatasetBuilder(pools, mixture, budget, DatasetConfig(...))``), the CLI (options made from
its fields) and the run config's ``[dataset]`` section.

Light on purpose (no pyarrow): the CLI parser and the run config import it at start-up.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from retriever.corpus.readers import ReaderConfig
from retriever.errors import ConfigError
from retriever.names import PROB, SCORE, score_name

ORDERS = ("top", "weighted", "stratified")
# stratified order: (upper quantile within the domain, share of the pool's tokens) per tier;
# documents below the last cut come after every tier (taken only when the tiers run out)
DEFAULT_TIERS: tuple[tuple[float, float], ...] = ((0.1, 0.7), (0.5, 0.3))

DATASET_FORMATS = ("lmflow", "parquet")
# the distilled filter's probability, else the similarity (retriever.names); a pool written before
# the one naming scheme (prob/<task>, sim/<task>) is read through the same keys
DEFAULT_SCORE_KEYS = (score_name(PROB, "{pool}"), score_name(SCORE, "{pool}"), "score", "quality")


MAX_BUDGET = 10**13  # far above any training set; catches unit mistakes (10T tokens)


def parse_budget(value: str | int | float) -> int:
    """``"10B"``, ``"500M"``, ``"2.5k"``, ``"1e9"`` or a number -> tokens.

    Raises:
        ConfigError: not a positive number of tokens.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        n = float(value)
    else:
        s = str(value).strip().replace("_", "").replace(",", "")
        mult = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}.get(s[-1:].lower(), 1.0)
        if mult != 1.0:
            s = s[:-1]
        try:
            n = float(s) * mult
        except ValueError:
            raise ConfigError(
                f"budget {value!r} is not a number of tokens; write e.g. 10B, 500M, 2.5k or 1000000"
            ) from None
    if not math.isfinite(n) or n < 1 or n > MAX_BUDGET:
        raise ConfigError(f"budget {value!r} must be between 1 and {MAX_BUDGET:.0e} tokens")
    return int(n)


def check_tiers(tiers) -> tuple[tuple[float, float], ...]:
    """``tiers`` as a tuple of ``(cut, share)`` with increasing cuts in (0, 1] and shares >= 0.

    Raises:
        ConfigError: cuts not increasing or outside (0, 1], a negative share, or all shares zero.
    """
    out = tuple((float(a), float(b)) for a, b in tiers)
    cuts = [a for a, _ in out]
    if not out or any(not 0 < a <= 1 for a in cuts) or cuts != sorted(set(cuts)):
        raise ConfigError(f"stratified tiers {list(out)}: cuts must increase within (0, 1]")
    if any(b < 0 for _, b in out) or sum(b for _, b in out) <= 0:
        raise ConfigError(f"stratified tiers {list(out)}: shares must be >= 0, not all zero")
    return out


def _path(p: str | os.PathLike | None) -> str | None:
    return None if p is None else os.fspath(p)


@dataclass(frozen=True)
class DatasetConfig:
    """How ``build-dataset`` samples pools (what it samples: pools, mixture and budget, are the
    builder's arguments).

    Args:
        order: top: highest score first; weighted: sampling proportional to the score;
            stratified: quality tiers within domains (``tiers``, ``domains``).
        seed: seed of the weighted order.
        tiers: stratified tiers, ``(cut, share)`` each: with the default, the top 10% of each
            domain give 70% of the tokens, 10-50% give 30%.
        tokenizer: local GPT-2 tokenizer folder or tokenizer.json (exact counts; see
            :mod:`retriever.tokens`).
        use_token_count: trust records' token_count when there is no tokenizer (else estimate
            bytes/4).
        formats: any of ``lmflow`` and ``parquet``.
        part_tokens: tokens per output part (on the command line: 25M, 1e6, ...). Memory while
            writing: one parquet row group.
        score_keys: metadata keys tried in order for a document's score; ``{pool}`` is replaced
            by the pool name. A score name is also found under its legacy spelling
            (``prob_{pool}`` under ``prob/{pool}``; :func:`retriever.names.score_value`).
        scan_cache: scan cache folder shared across builds (default OUT/scan). Builds of the
            same pools (a RegMix sweep) tokenize once.
        workers: processes scanning pool files. The scan is the costly step: read, hash and
            count every pool document once.
        decontaminate: evaluation files (``{task: path}``, jsonl of ELMB-style records or
            ``text``) whose records must not leak into the training set: a pool document sharing
            a 13-gram of words with one of them (or equal to one) is dropped, counted as
            ``dropped/contaminated`` (:mod:`retriever.evaluation.decontam`).
        domains: a `retriever domains` folder (id -> domain) for the stratified order and mixtures
            over domains; default: the records' cluster_id.
        reader: how the pools that are corpus files (the builder's ``corpus_pools``: a general
            pool, the random arm's corpus) are read: text, id and token-id fields, detokenizer
            (a run: ``[corpus]``'s). ``keep_fields`` has no effect (a pool document keeps every
            scalar field). A stage's pool records are read as written.

    Raises:
        ConfigError: an unknown order or format, bad tiers, ``part_tokens`` or ``workers`` < 1.
    """

    order: str = "top"
    seed: int = 0
    tiers: tuple[tuple[float, float], ...] = DEFAULT_TIERS
    tokenizer: str | None = None
    use_token_count: bool = True
    formats: tuple[str, ...] = DATASET_FORMATS
    part_tokens: int = 25_000_000
    score_keys: tuple[str, ...] = DEFAULT_SCORE_KEYS
    scan_cache: str | None = None
    workers: int = 1
    decontaminate: Mapping[str, str] = field(default_factory=dict)
    domains: str | None = None
    reader: ReaderConfig = ReaderConfig()

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ConfigError(f"order {self.order!r} is not one of {', '.join(ORDERS)}")
        bad = [f for f in self.formats if f not in DATASET_FORMATS]
        if bad or not self.formats:
            raise ConfigError(
                f"formats {list(self.formats)} invalid; choose from {', '.join(DATASET_FORMATS)}"
            )
        if self.part_tokens < 1:
            raise ConfigError("part_tokens must be >= 1")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        check_tiers(self.tiers)
        # paths may be given as Path objects; the settings hold strings (manifests, equality)
        for name in ("tokenizer", "scan_cache", "domains"):
            object.__setattr__(self, name, _path(getattr(self, name)))
        object.__setattr__(self, "formats", tuple(self.formats))
        object.__setattr__(self, "score_keys", tuple(self.score_keys))
        object.__setattr__(self, "tiers", tuple(tuple(t) for t in self.tiers))
        object.__setattr__(
            self, "decontaminate", {str(k): str(v) for k, v in self.decontaminate.items()}
        )
