"""Similarity of every corpus document to every task's gold.

Modules: ``scorer`` (the similarity kernel and the :class:`SimilarityScorer` stage), ``job``
(the resumable shard-by-shard :class:`ScoreJob` and its document sampling), ``api``
(:func:`score_corpus`, the library call behind ``retriever score``), ``select`` (thresholds and
the summary), ``read`` (reading a score folder back), ``evaluate`` (retrieval quality),
``datatrove_step`` (the datatrove step), ``cli`` (``retriever score``).
"""

from retriever.score.api import ingest_store, score_corpus
from retriever.score.job import ScoreJob, shard_outputs
from retriever.score.read import iter_scored_docs, read_scores
from retriever.score.scorer import ScoredBatch, SimilarityScorer, score_embeddings, topk_scores
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
