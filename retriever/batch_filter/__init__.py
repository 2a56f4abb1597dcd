"""Stage batch_filter: keep the documents each task's fastText model scores high, shard by shard.

API: ``BatchFilter(FilterConfig(tasks=[...])).run(inputs, output, executor="local")``;
``FastTextScorer`` (scores, a :class:`~retriever.step.BatchStep`); ``FilterShard`` (one shard,
what executors run); :mod:`retriever.batch_filter.probs` (the stored probabilities' writer and
reader) and :mod:`retriever.batch_filter.rethreshold` (new thresholds from them);
``retriever.batch_filter.datatrove_filter.FastTextTaskFilter`` (a datatrove ``BaseFilter`` for your
own datatrove pipelines).
"""

from retriever.batch_filter.config import FilterConfig, FilterPlan
from retriever.batch_filter.run import BatchFilter, FilterReport, write_summary
from retriever.batch_filter.scorer import FastTextScorer, ProbBatch, load_model, resolve_models
from retriever.batch_filter.shard import FilterShard
from retriever.batch_filter.thresholds import threshold_for_fraction
from retriever.batch_filter.writers import POOL_FORMATS, open_pool_writer
from retriever.tokens import TokenCounter

__all__ = [
    "POOL_FORMATS",
    "BatchFilter",
    "FastTextScorer",
    "FilterConfig",
    "FilterReport",
    "FilterPlan",
    "FilterShard",
    "ProbBatch",
    "TokenCounter",
    "load_model",
    "open_pool_writer",
    "resolve_models",
    "threshold_for_fraction",
    "write_summary",
]
