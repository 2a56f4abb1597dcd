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
    "DatasetBuilder": "build",
    "domain_token_counts": "build",
    "parse_budget": "build",
    "pool_token_counts": "build",
    "DatasetConfig": "config",
    "DOMAIN_PREFIX": "mixture",
    "domain_key": "mixture",
    "is_domain_mixture": "mixture",
    "parse_mixture": "mixture",
    "read_weight_csv": "mixture",
    "corpus_pools": "pools",
    "discover_pools": "pools",
    "list_pool_files": "pools",
    "read_pool_shard": "pools",
    "Candidates": "select",
    "Selection": "select",
    "select_budgeted": "select",
    "split_budget": "select",
}


def __getattr__(name: str) -> Any:
    if name in ("TokenCounter", "estimate_tokens"):
        module = importlib.import_module("retriever.tokens")
    elif name in _WHERE:
        module = importlib.import_module(f"retriever.dataset.{_WHERE[name]}")
    else:
        raise AttributeError(f"module 'retriever.dataset' has no attribute {name!r}")
    value = getattr(module, name)
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
