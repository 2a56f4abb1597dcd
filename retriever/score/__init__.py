"""Similarity of every corpus document to every task's gold: core, stage, resumable job,
selection."""

from retriever.score.core import score_embeddings, topk_scores
from retriever.score.job import ScoreJob, shard_outputs
from retriever.score.read import iter_scored_docs, read_scores
from retriever.score.run import ingest_store, score_corpus
from retriever.score.scorer import ScoredBatch, SimilarityScorer
from retriever.score.select import ScoreHistogram, choose_thresholds, format_summary, summarize

__all__ = [
    "ScoreHistogram",
    "ScoreJob",
    "ScoredBatch",
    "SimilarityScorer",
    "choose_thresholds",
    "format_summary",
    "ingest_store",
    "iter_scored_docs",
    "read_scores",
    "score_corpus",
    "score_embeddings",
    "shard_outputs",
    "summarize",
    "topk_scores",
]
