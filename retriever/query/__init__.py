"""Nearest gold exemplars or corpus documents of a new exemplar."""

from retriever.query.cache import clear_caches, open_index, open_store
from retriever.query.search import query_corpus, query_gold, query_gold_many, resolve_store

__all__ = [
    "clear_caches",
    "open_index",
    "open_store",
    "query_corpus",
    "query_gold",
    "query_gold_many",
    "resolve_store",
]
