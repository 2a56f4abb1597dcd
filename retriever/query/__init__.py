"""Nearest gold exemplars or corpus documents of a new exemplar."""

from retriever.query.search import query_corpus, query_gold, query_gold_many, resolve_store

__all__ = ["query_corpus", "query_gold", "query_gold_many", "resolve_store"]
