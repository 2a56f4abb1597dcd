"""Training sets: sample the per-task filtered pools to a token budget (``retriever
build-dataset``).

API: :class:`DatasetBuilder` (``DatasetBuilder(pools, mixture, budget, config).build(out)``) with
its settings :class:`DatasetConfig`, the pure selection core :func:`select_budgeted`,
:func:`parse_mixture`, :func:`parse_budget`, :func:`discover_pools`, :func:`corpus_pools` (which
pools are corpus files) and :func:`pool_token_counts` / :func:`domain_token_counts` (the RegMix
priors over pools and over domains).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retriever.dataset.build import (
        DatasetBuilder,
        domain_token_counts,
        parse_budget,
        pool_token_counts,
    )
    from retriever.dataset.config import DatasetConfig
    from retriever.dataset.mixture import (
        DOMAIN_PREFIX,
        domain_key,
        is_domain_mixture,
        parse_mixture,
        read_weight_csv,
    )
    from retriever.dataset.pools import (
        corpus_pools,
        discover_pools,
        list_pool_files,
        read_pool_shard,
    )
    from retriever.dataset.select import Candidates, Selection, select_budgeted, split_budget
    from retriever.tokens import TokenCounter, estimate_tokens

# imported on first use (PEP 562): the CLI parser and the run config read DatasetConfig at start-up
# without loading pyarrow through the builder
_WHERE = {
    "DatasetBuilder": "retriever.dataset.build",
    "domain_token_counts": "retriever.dataset.build",
    "parse_budget": "retriever.dataset.config",
    "pool_token_counts": "retriever.dataset.build",
    "DatasetConfig": "retriever.dataset.config",
    "DOMAIN_PREFIX": "retriever.dataset.mixture",
    "domain_key": "retriever.dataset.mixture",
    "is_domain_mixture": "retriever.dataset.mixture",
    "parse_mixture": "retriever.dataset.mixture",
    "read_weight_csv": "retriever.dataset.mixture",
    "corpus_pools": "retriever.dataset.pools",
    "discover_pools": "retriever.dataset.pools",
    "list_pool_files": "retriever.dataset.pools",
    "read_pool_shard": "retriever.dataset.pools",
    "Candidates": "retriever.dataset.select",
    "Selection": "retriever.dataset.select",
    "select_budgeted": "retriever.dataset.select",
    "split_budget": "retriever.dataset.select",
    "TokenCounter": "retriever.tokens",
    "estimate_tokens": "retriever.tokens",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'retriever.dataset' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "DOMAIN_PREFIX",
    "Candidates",
    "DatasetBuilder",
    "DatasetConfig",
    "Selection",
    "TokenCounter",
    "corpus_pools",
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
