"""``retriever run CONFIG.toml``: the whole job, redoing only what changed."""

from __future__ import annotations

import argparse

from retriever._cli import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the whole job from one config: index, score, confirm, distill, filter, dataset, "
        "report",
        description="Run every stage for every task of CONFIG.toml. Steps whose inputs and "
        "settings are unchanged are skipped (fingerprints in RUN/run.json), so a rerun after a "
        "crash or a changed threshold redoes only what changed. See configs/offline.toml and "
        "configs/elmb.toml.",
    )
    p.add_argument("config", help="run config (TOML)")
    p.add_argument("--plan", action="store_true", help="print what would run, run nothing")
    p.add_argument("--json", action="store_true", help="print the step outcomes as JSON")
    p.add_argument(
        "--yes",
        action="store_true",
        help="run even when the cost plan exceeds [plan] max_core_hours / max_gpu_hours",
    )
    p.add_argument("--no-cost-plan", action="store_true", help="do not print the cost plan first")
    p.set_defaults(func=_run)


def _cost_plan(cfg, yes: bool) -> None:
    """Print the cost plan (``retriever plan``) to stderr; refuse one over the ceiling unless
    ``yes``."""
    import sys

    from retriever.errors import ConfigError
    from retriever.plan import format_plan
    from retriever.plan.run import plan_run

    plan = plan_run(cfg)
    print(format_plan(plan), file=sys.stderr, flush=True)
    over = plan.over_ceiling()
    if over and not yes:
        raise ConfigError(
            f"the plan exceeds the configured ceiling ({'; '.join(over)}); raise [plan] "
            "max_core_hours / max_gpu_hours, sample more sparsely, or pass --yes"
        )


def _run(args) -> int:
    from retriever.run.config import load_run_config
    from retriever.run.job import RunJob, format_run_summary
    from retriever.run.steps import StepRunner

    cfg = load_run_config(args.config)
    job = RunJob(cfg)
    if args.plan:
        plan = StepRunner(cfg.out).plan(job.steps())
        if args.json:
            print_json(plan)
        else:
            width = max(map(len, plan), default=0) + 2
            for name, action in plan.items():
                verb = "skipped" if action == "skipped" else action.replace("ran", "run")
                print(f"{name:<{width}}{'would be ' + verb}")
        return 0
    if not args.no_cost_plan:
        _cost_plan(cfg, args.yes)
    from retriever.logs import log_to_file

    with log_to_file(cfg.out / "logs" / "run.log"):
        outcomes = job.run()
    if args.json:
        print_json([o.__dict__ for o in outcomes])
    else:
        print(format_run_summary(cfg, outcomes))
    return 0
