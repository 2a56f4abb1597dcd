"""The plan of a run config: rates from ``[plan]`` (+ a rates file, + a calibration), then the
plan."""

from __future__ import annotations

from retriever.plan.plan import Plan, make_plan, profile_corpus
from retriever.plan.rates import Rates, calibrate, load_rates


def plan_run(cfg, calibrate_docs: int | None = None, rates_file: str | None = None) -> Plan:
    """Build the plan of ``cfg`` (a :class:`~retriever.run.config.RunConfig`).

    Rates, later ones winning: the defaults, ``[plan] rates_file``, ``[plan] rates``, ``rates_file``
    (the CLI's ``--rates``), then what a calibration on ``calibrate_docs`` documents of the corpus
    measures (``None``: ``[plan] calibrate_docs`` when ``[plan] calibrate``, else no calibration;
    ``0``: none). Rates passed explicitly (``--rates``) are not overwritten by the calibration.
    """
    from retriever.run.job import RunJob

    ps = cfg.plan
    rates = Rates()
    if ps.rates_file:
        rates = load_rates(ps.rates_file, rates)
    if ps.rates:
        rates = rates.with_values(dict(ps.rates), "[plan] rates")
    passed: set[str] = set()
    if rates_file:
        rates = load_rates(rates_file, rates)
        passed = {k for k, v in rates.sources.items() if "passed in" in v or "via" in v}
    job = RunJob(cfg, progress=False)
    prof = profile_corpus(
        list(cfg.corpus.paths), job.corpus_reader(), exact_limit=ps.exact_limit, fallback=ps
    )
    n = (ps.calibrate_docs if ps.calibrate else 0) if calibrate_docs is None else calibrate_docs
    info = None
    if n and prof.texts:
        measured, info = calibrate(
            prof.texts[:n],
            rates,
            model=cfg.run.model,
            embed="embed_docs_per_s" not in passed,
            filter_="filter_chars_per_core_s" not in passed,
            device=cfg.score.device,
        )
        rates = measured
        if prof.read_docs_per_s and "read_docs_per_core_s" not in passed:
            rates = rates.with_values(
                {"read_docs_per_core_s": prof.read_docs_per_s},
                f"measured here (reading {len(prof.texts)}+ documents, one core)",
            )
    return make_plan(cfg, rates, prof, calibration=info)
