"""Mixture search (RegMix): propose candidate mixtures, fit proxy results, propose the best.

API: :func:`propose_mixtures` / :func:`write_proposals` (``retriever mix propose``),
:func:`read_results` and :func:`fit_mixture` (``retriever mix fit``). The proxy training between
the two is the user's (the challenge trainer); README section "Mixture search" shows the loop.
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

__all__ = [
    "MODELS",
    "ProxyResults",
    "cross_validate",
    "fit_mixture",
    "make_model",
    "propose_mixtures",
    "read_results",
    "sample_dirichlet",
    "search_mixture",
    "smooth_prior",
    "upper_bounds",
    "write_proposals",
]
