"""Embedders: texts -> L2-normalized float32 vectors."""

from retriever.embed.embedder import DEFAULT_MODEL, Embedder, SentenceEmbedder, load_embedder

__all__ = ["DEFAULT_MODEL", "Embedder", "SentenceEmbedder", "load_embedder"]
