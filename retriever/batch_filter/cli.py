"""``retriever filter``: keep the documents of SHARDS each task's fastText model scores high."""

from __future__ import annotations

import argparse
import sys

from retriever._cli import (
    HelpFormatter,
    add_config_options,
    add_reader_options,
    config_from_args,
    parse_named_paths,
    print_json,
    reader_from_args,
    show_progress,
)
from retriever.batch_filter.config import DEFAULT_THRESHOLD, FilterConfig
from retriever.batch_filter.thresholds import BY
from retriever.batch_filter.writers import POOL_FORMATS
from retriever.errors import ConfigError


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    return parse_named_paths(values, what, "TASK=VALUE")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "filter",
        help="filter corpus shards with the tasks' fastText models (local / Slurm / Ray)",
        description=(
            "Score every document of SHARDS with each task's fastText model (one pass for all "
            "tasks) and keep, per task, those whose probability passes a threshold or the top "
            "fraction of tokens/chars/docs. Writes OUT/<task>/<shard>.<format>, rejected "
            "records to OUT/rejected/, and OUT/manifest.json (per shard and total: docs in, "
            "kept, dropped, rejected, tokens/chars kept, throughput). Rerun the same command to "
            "resume."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--task", action="append", required=True, help="task to filter for (repeatable)")
    # --corpus / --out as in every other verb; --input / --output: the names before
    p.add_argument(
        "--corpus",
        "--input",
        dest="input",
        nargs="+",
        required=True,
        metavar="SHARDS",
        help="shard files or folders",
    )
    p.add_argument(
        "-o",
        "--out",
        "--output",
        dest="output",
        metavar="OUT",
        required=True,
        help="output folder (resumable)",
    )
    p.add_argument(
        "--model",
        action="append",
        metavar="TASK=PATH",
        help="model of a task (default: INDEXES/TASK/filter.bin)",
    )
    add_config_options(p, FilterConfig, ["indexes"])
    d = p.add_argument_group("what to keep (a threshold, or a top fraction found on a sample)")
    d.add_argument(
        "--threshold",
        action="append",
        metavar="P|TASK=P",
        help=f"keep p >= P (default {DEFAULT_THRESHOLD})",
    )
    add_config_options(
        d,
        FilterConfig,
        ["top_fraction", "by", "sample_docs"],
        by={"choices": list(BY)},
    )
    o = p.add_argument_group("input and output")
    add_config_options(o, FilterConfig, ["format"], format={"choices": list(POOL_FORMATS)})
    add_reader_options(o)
    add_config_options(
        o,
        FilterConfig,
        ["tokenizer", "batch_size", "write_scores", "max_chars"],
    )
    e = p.add_argument_group("execution (datatrove executors)")
    e.add_argument("--executor", default="local", choices=["local", "slurm", "ray"])
    e.add_argument("--workers", type=int, help="tasks at once (local default: cores)")
    e.add_argument(
        "--start-method",
        choices=["fork", "forkserver", "spawn"],
        help="local workers: fork (Linux default) shares one copy of the models",
    )
    e.add_argument("--num-tasks", type=int, help="datatrove tasks (default: one per shard)")
    e.add_argument("--slurm-partition")
    e.add_argument("--slurm-time", help="time limit per task, e.g. 04:00:00")
    e.add_argument("--slurm-cpus-per-task", type=int, default=1)
    e.add_argument("--slurm-mem-per-cpu-gb", type=float, default=2)
    e.add_argument("--slurm-job-name", default="retriever-filter")
    e.add_argument("--slurm-qos", default=None)
    e.add_argument("--slurm-venv", help="venv activate script sourced by each job")
    e.add_argument(
        "--slurm-sbatch-arg",
        action="append",
        metavar="KEY=VALUE",
        help="extra #SBATCH (repeatable)",
    )
    e.add_argument("--ray-address", help="Ray cluster address (default: start a local one)")
    e.add_argument("--ray-cpus-per-task", type=int, default=1)
    e.add_argument("--ray-mem-per-cpu-gb", type=float, default=2)
    e.add_argument(
        "--dry-run", action="store_true", help="Slurm: print the sbatch script, submit nothing"
    )
    e.add_argument(
        "--collect",
        action="store_true",
        help="only rewrite the manifest from finished shards (after a Slurm job)",
    )
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=run)

    r = subparsers.add_parser(
        "filter-rethreshold",
        help="a new threshold for a finished filter run, from its stored probabilities",
        description=(
            "Read FILTER_DIR/scores/ of a finished `retriever filter` run (every document's "
            "probabilities, float16) and print what a new threshold or top fraction keeps per "
            "task; with --out, write the new pools there (one read of the corpus, no scoring)."
        ),
        formatter_class=HelpFormatter,
    )
    r.add_argument("filter_dir", help="the filter run's output folder")
    r.add_argument(
        "--threshold", action="append", metavar="P|TASK=P", help="keep p >= P (per task: TASK=P)"
    )
    r.add_argument("--top-fraction", type=float, help="keep the top share of --by per task")
    r.add_argument("--by", default="docs", choices=["docs", "chars"])
    r.add_argument("-o", "--out", help="write the new pools to this folder")
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    r.set_defaults(func=run_rethreshold)


def _threshold(values: list[str] | None) -> float | dict[str, float] | None:
    """``--threshold P`` once, or ``TASK=P`` for every task."""
    if not values:
        return None
    per = [t for t in values if "=" in t]
    if per and len(per) != len(values):
        raise ConfigError("give --threshold P once, or TASK=P for every task")
    try:
        return (
            {k: float(v) for k, v in _pairs(per, "--threshold").items()}
            if per
            else float(values[-1])
        )
    except ValueError as e:
        raise ConfigError(f"--threshold takes a probability: {e}") from e


def run_rethreshold(args: argparse.Namespace) -> int:
    from retriever.batch_filter.rethreshold import rethreshold, write_rethresholded

    res = rethreshold(args.filter_dir, _threshold(args.threshold), args.top_fraction, args.by)
    if args.out:
        thr = {t: d["threshold"] for t, d in res["tasks"].items()}
        res["written"] = write_rethresholded(args.filter_dir, args.out, thr)
    if args.json:
        print_json(res)
        return 0
    print(f"rule: {res['rule']}")
    for t, d in res["tasks"].items():
        print(
            f"  {t}: threshold {d['threshold']:.4f}, kept {d['kept']:,} of {d['docs']:,} docs, "
            f"{d['chars_kept']:,} chars"
        )
    if args.out:
        print(f"pools -> {args.out}")
    return 0


def filter_config_from_args(args: argparse.Namespace) -> FilterConfig:
    return config_from_args(
        FilterConfig,
        args,
        tasks=tuple(args.task),
        models=_pairs(args.model, "--model") or None,
        threshold=_threshold(args.threshold),
        reader=reader_from_args(args),
    )


def executor_settings(args: argparse.Namespace) -> dict:
    if args.executor == "slurm":
        if not args.slurm_partition or not args.slurm_time:
            raise ConfigError("--executor slurm needs --slurm-partition and --slurm-time")
        s = {
            "partition": args.slurm_partition,
            "time": args.slurm_time,
            "cpus_per_task": args.slurm_cpus_per_task,
            "mem_per_cpu_gb": args.slurm_mem_per_cpu_gb,
            "job_name": args.slurm_job_name,
            "sbatch_args": _pairs(args.slurm_sbatch_arg, "--slurm-sbatch-arg") or None,
        }
        if args.slurm_qos:
            s["qos"] = args.slurm_qos
        if args.slurm_venv:
            s["venv_path"] = args.slurm_venv
        return s
    if args.executor == "ray":
        return {
            "cpus_per_task": args.ray_cpus_per_task,
            "mem_per_cpu_gb": args.ray_mem_per_cpu_gb,
            "ray_address": args.ray_address,
        }
    return {"start_method": args.start_method} if args.start_method else {}


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from retriever.batch_filter.run import BatchFilter, write_summary

    if args.collect:
        man = write_summary(args.output)
        _print(man, args.json)
        return 0 if man["complete"] else 1
    stage = BatchFilter(filter_config_from_args(args))
    settings = executor_settings(args)
    if args.dry_run:
        from retriever.batch_filter.shard import FilterShard
        from retriever.executors import ShardRunner, build_executor, slurm_script

        if args.executor != "slurm":
            raise ConfigError("--dry-run prints a Slurm script; use it with --executor slurm")
        shards, fs, _ = stage.prepare(args.input, args.output)
        out = Path(args.output)
        runner = ShardRunner(
            FilterShard(fs), shards, str(out / "done"), str(out / "logs" / "failed")
        )
        ex = build_executor(
            [runner], "slurm", args.num_tasks or len(shards), args.workers, out / "logs", **settings
        )
        sys.stdout.write(slurm_script(ex))
        return 0
    rep = stage.run(
        args.input,
        args.output,
        executor=args.executor,
        tasks=args.num_tasks,
        workers=args.workers,
        progress=show_progress(),
        **settings,
    )
    _print(rep.manifest, args.json)
    if rep.run.submitted:
        print(
            f"submitted to Slurm ({len(rep.run.missing)} shards); when the job array ends, run "
            "the same command with --collect to write the totals",
            file=sys.stderr,
        )
        return 0
    rep.run.raise_for_failures()
    return 0


def _print(man: dict, as_json: bool) -> None:
    if as_json:
        print_json(man)
        return
    t = man["totals"]
    print(
        f"{t['shards_done']}/{t['shards_total']} shards, {t['docs_in']} docs in, "
        f"{t['rejected_total']} rejected {t['rejected'] or ''}"
    )
    for task in man["settings"]["tasks"]:
        thr = man["decisions"][task]["threshold"]
        print(
            f"  {task}: kept {t['kept'][task]} (p >= {thr:.4f}), dropped {t['dropped'][task]}, "
            f"chars kept {t['chars_kept'][task]} ({100 * t['kept_share_chars'][task]:.1f}%), "
            f"tokens kept {t['tokens_kept'][task]}"
        )
    th = man.get("throughput", {})
    if th.get("docs_per_second"):
        print(
            f"  {th['docs_this_run']} docs this run in {th['wall_seconds']:.1f}s: "
            f"{th['docs_per_second']:.0f} docs/s ({th['docs_per_core_second']:.0f} docs/s per core)"
        )
    print(f"  tokens: {man.get('tokens_method', '')}")
