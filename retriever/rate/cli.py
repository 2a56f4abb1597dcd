"""``retriever rate``: LLM ratings 0-5 per task from an OpenAI-compatible endpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from retriever._cli import (
    HelpFormatter,
    add_config_options,
    add_reader_options,
    config_from_args,
    parse_task_values,
    print_json,
    read_task_table,
    reader_from_args,
)


def add_parser(subparsers) -> None:
    from retriever.rate.client import APIS, EndpointConfig
    from retriever.rate.stage import RateConfig

    p = subparsers.add_parser(
        "rate",
        help="rate documents 0-5 per task with an LLM (FineWeb-Edu style annotation)",
        description=(
            "Ask an OpenAI-compatible endpoint (vLLM, llama.cpp server, a hosted API) to rate "
            "each task's documents with the task's 0-5 rubric (`rubric` in indexes/<task>.toml, "
            "or a --prompts file). From a score folder, the task's similarity candidates plus a "
            "random sample of the other documents are rated; from a corpus, every document (or "
            "--max-candidates of them). Every answer is cached (OUT/cache.sqlite) by prompt "
            "version, model and document id, so a rerun or a resumed run asks nothing twice. "
            "Writes OUT/ratings/<task>.parquet (id, score, int_score, raw, error) and "
            "OUT/labels/<task>.parquet (source = rating) for `retriever distill --labels`."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--docs", nargs="+", required=True, help="a score folder, or corpus paths")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument(
        "--task", action="append", dest="tasks", default=None, help="task to rate (repeatable)"
    )
    e = p.add_argument_group("endpoint")
    add_config_options(
        e,
        EndpointConfig,
        ["base_url", "model", "api"],
        model={"required": True},
        api={"choices": list(APIS)},
    )
    add_config_options(e, RateConfig, ["api_key_env"])
    add_config_options(
        e,
        EndpointConfig,
        ["temperature", "max_tokens", "seed", "timeout", "retries", "backoff", "max_backoff"],
    )
    add_config_options(e, RateConfig, ["concurrency", "max_requests"])
    r = p.add_argument_group("prompt and labels")
    r.add_argument(
        "--prompts",
        default=None,
        help="TOML file with a [prompts] table {task = template with {text}} replacing rubrics",
    )
    r.add_argument(
        "--indexes-dir",
        type=Path,
        default=Path("indexes"),
        help="folder of task specs (<task>.toml with a `rubric`)",
    )
    add_config_options(
        r,
        RateConfig,
        ["system", "max_chars", "score_marker", "threshold", "cache"],
    )
    s = p.add_argument_group("which documents (score folder)")
    add_config_options(s, RateConfig, ["top_fraction"])
    s.add_argument(
        "--sim-threshold",
        action="append",
        default=[],
        metavar="TASK=SCORE",
        help="candidates: similarity at or above (repeatable)",
    )
    add_config_options(
        s,
        RateConfig,
        ["max_candidates", "negatives_per_positive", "max_random_negatives", "sample_seed"],
    )
    add_reader_options(p)
    p.add_argument(
        "--show-prompt",
        action="store_true",
        help="print each task's prompt for its first document and how many would be rated; "
        "send nothing",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from retriever._cli import show_progress
    from retriever.rate.client import EndpointConfig
    from retriever.rate.stage import RateConfig, rate_docs

    prompts = read_task_table(args.prompts, "prompts", "prompts file")
    if not all(isinstance(v, str) for v in prompts.values()):
        from retriever.errors import ConfigError

        raise ConfigError(f"{args.prompts}: [prompts] must map task names to template strings")
    cfg = config_from_args(
        RateConfig,
        args,
        endpoint=config_from_args(EndpointConfig, args),
        tasks=tuple(args.tasks or (list(prompts) if prompts else [])),
        prompts=prompts,
        threshold_sim=parse_task_values(args.sim_threshold, "--sim-threshold"),
        reader=reader_from_args(args),
    )
    if args.show_prompt:
        from retriever.rate.stage import preview_prompts

        pv = preview_prompts(args.docs, cfg, indexes_dir=args.indexes_dir)
        if args.json:
            print_json(pv)
            return 0
        for t, d in pv.items():
            print(f"== {t}: {d['documents']} documents would be rated; prompt {d['version']}")
            if d["system"]:
                print(f"-- system:\n{d['system']}")
            print(f"-- user (document {d['id']}):\n{d['prompt']}")
        return 0
    s = rate_docs(args.docs, args.out, cfg, indexes_dir=args.indexes_dir, progress=show_progress())
    if args.json:
        print_json(s)
        return 0
    print(
        f"rate {s['model']}: {s['requests']} requests ({s['asked']} answered, {s['cached']} "
        f"from the cache) in {s['seconds']:.1f} s"
        + (f", {s['requests_per_s']} requests/s, {s['docs_per_s']} docs/s" if s["asked"] else "")
    )
    for t, ts in s["tasks"].items():
        rej = sum(ts["rejected"].values())
        print(
            f"  {t:<18} {ts['docs_in']} docs in = {ts['rated']} rated + {rej} rejected"
            + (f" + {ts['over_budget']} over budget" if ts["over_budget"] else "")
            + f"; labels {ts['labels']['positive']} positive / {ts['labels']['negative']} negative"
            + (f"; mean score {ts['mean_score']}" if ts["mean_score"] is not None else "")
        )
        if rej:
            print(f"    rejected: {ts['rejected']} (raw answers in {args.out}/ratings/{t}.parquet)")
    if not s["complete"]:
        print("  the request budget ran out: rerun with a larger --max-requests to rate the rest")
    print(
        f"  -> {args.out}/ratings, {args.out}/labels (retriever distill --labels {args.out}/labels "
        "--training-set rating)"
    )
    return 0
