"""``retriever plan CONFIG.toml``: documents, tokens, forwards and hours per stage, before a run.

API: ``make_plan(load_run_config(path), rates) -> Plan``; ``format_plan(plan)``; rates measured by
``calibrate(docs, Rates())`` or read with ``load_rates(path)``.
"""

from retriever.plan.plan import (
    CorpusProfile,
    Plan,
    StagePlan,
    format_plan,
    make_plan,
    profile_corpus,
)
from retriever.plan.rates import Rates, calibrate, load_rates

__all__ = [
    "CorpusProfile",
    "Plan",
    "Rates",
    "StagePlan",
    "calibrate",
    "format_plan",
    "load_rates",
    "make_plan",
    "profile_corpus",
]
