"""Keyword / pattern prefilter: cheap per-task match counts before anything is embedded."""

from retriever.prefilter.matcher import DEFAULT_PATTERNS, KeywordMatcher
from retriever.prefilter.stage import (
    KeywordPrefilter,
    PrefilterConfig,
    prefilter_corpus,
    read_matches,
)

__all__ = [
    "DEFAULT_PATTERNS",
    "KeywordMatcher",
    "KeywordPrefilter",
    "PrefilterConfig",
    "prefilter_corpus",
    "read_matches",
]
