"""Mixture search (RegMix): propose candidate mixtures, fit proxy results, propose the best.

API: :func:`propose_mixtures` / :func:`write_proposals` (``retriever mix propose``),
:func:`read_results` and :func:`fit_mixture` (``retriever mix fit``), and the whole loop with the
proxies in between, :class:`MixRun` / :func:`mix_run` (``retriever mix run``, see
:mod:`retriever.mix.run`), which trains and evaluates them through ``retriever evaluate``'s proxy
loop.
"""

from retriever.mix.fit import (
    MODELS,
    ProxyResults,
    cross_validate,
    fit_mixture,
    make_model,
    read_results,
    search_mixture,
)
from retriever.mix.propose import (
    propose_mixtures,
    sample_dirichlet,
    smooth_prior,
    upper_bounds,
    write_proposals,
)
from retriever.mix.run import MixRun, MixRunConfig, MixRunResult, mix_run

__all__ = [
    "MODELS",
    "MixRun",
    "MixRunConfig",
    "MixRunResult",
    "ProxyResults",
    "cross_validate",
    "fit_mixture",
    "make_model",
    "mix_run",
    "propose_mixtures",
    "read_results",
    "sample_dirichlet",
    "search_mixture",
    "smooth_prior",
    "upper_bounds",
    "write_proposals",
]
