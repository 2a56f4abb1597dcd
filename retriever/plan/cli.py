"""``retriever plan CONFIG.toml``: what a run will touch and cost, per stage, before it runs."""

from __future__ import annotations

import argparse

from retriever._cli import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="documents, tokens, forwards and hours per stage of a run config, before it runs",
        description="Print, per stage of CONFIG.toml: documents and tokens it will touch, forwards "
        "(embedding, LM panel, fastText), and the estimated wall time here, core-hours and "
        "GPU-hours. Corpus size from parquet metadata (or a prefix estimate); rates measured by a "
        "short calibration on the corpus, from [plan] rates, or from --rates (a JSON file).",
    )
    p.add_argument("config", help="run config (TOML)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument(
        "--rates", metavar="FILE", help="JSON of rate -> value (see retriever.plan.Rates)"
    )
    p.add_argument(
        "--calibrate-docs",
        type=int,
        metavar="N",
        help="documents the calibration embeds and scores (default: [plan] calibrate_docs)",
    )
    p.add_argument("--no-calibrate", action="store_true", help="use the given / default rates only")
    p.set_defaults(func=_plan)


def _plan(args) -> int:
    from retriever.plan import format_plan
    from retriever.plan.run import plan_run
    from retriever.run.config import load_run_config

    cfg = load_run_config(args.config)
    n = (
        0
        if args.no_calibrate
        else (args.calibrate_docs if args.calibrate_docs is not None else cfg.plan.calibrate_docs)
    )
    plan = plan_run(cfg, calibrate_docs=n, rates_file=args.rates)
    if args.json:
        print_json(plan.to_dict())
    else:
        print(format_plan(plan))
    return 0
