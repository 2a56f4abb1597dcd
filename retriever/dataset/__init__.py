"""Training sets: sample the per-task filtered pools to a token budget (``retriever
build-dataset``).

API: :class:`DatasetBuilder` (``DatasetBuilder(pools, mixture, budget).build(out)``), the pure
selection core :func:`select_budgeted`, :func:`parse_mixture`, :func:`parse_budget`,
:func:`discover_pools` and :func:`pool_token_counts` / :func:`domain_token_counts` (the RegMix
priors over pools and over domains).
"""

from retriever.dataset.build import (
    DatasetBuilder,
    domain_token_counts,
    parse_budget,
    pool_token_counts,
)
from retriever.dataset.mixture import (
    DOMAIN_PREFIX,
    domain_key,
    is_domain_mixture,
    parse_mixture,
    read_weight_csv,
)
from retriever.dataset.pools import discover_pools, list_pool_files, read_pool_shard
from retriever.dataset.select import Candidates, Selection, select_budgeted, split_budget
from retriever.tokens import TokenCounter, estimate_tokens

__all__ = [
    "DOMAIN_PREFIX",
    "Candidates",
    "DatasetBuilder",
    "Selection",
    "TokenCounter",
    "discover_pools",
    "domain_key",
    "domain_token_counts",
    "estimate_tokens",
    "is_domain_mixture",
    "list_pool_files",
    "parse_budget",
    "parse_mixture",
    "pool_token_counts",
    "read_pool_shard",
    "read_weight_csv",
    "select_budgeted",
    "split_budget",
]
