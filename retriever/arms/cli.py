"""``retriever evaluate CONFIG.toml``: parse options, call :func:`retriever.arms.evaluate_run`."""

from __future__ import annotations

import argparse

from retriever._cli import HelpFormatter, add_repeated, print_json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="ablation arms: train proxies on random / similarity / pipeline data, compare",
        formatter_class=HelpFormatter,
        description=(
            "Train N proxy models per arm at one token budget and score them on the tasks: "
            "random (uniform from the corpus), similarity (top by similarity only), pipeline "
            "(the run's filtered pools), band / prefilter / rating (similarity within the run's "
            "perplexity band, among its keyword-prefilter matches, or less the documents its "
            "LLM ratings put below the threshold; named explicitly), student:<variant> (the "
            "pipeline with its students retrained on that label-source variant, e.g. "
            "student:gold+confirmed; named explicitly), and any --dataset "
            "NAME=PATH. Prints per arm and task the mean and interval of acc, acc_norm and BPB, "
            "and each arm's difference to random (paired by seed). Options default to the "
            "config's [evaluate] section. Proxies are cached per (dataset, proxy settings, "
            "seed): adding an arm trains only that arm."
        ),
    )
    p.add_argument("config", help="run config (TOML); its run folder must be finished")
    p.add_argument("--arms", help="comma-separated arms, e.g. random,similarity,pipeline,mine")
    add_repeated(
        p,
        "--dataset",
        "NAME=PATH",
        "a user arm: a dataset or corpus folder (repeatable; add NAME to --arms)",
    )
    p.add_argument("--seeds", type=int, help="proxies per arm (default 3)")
    p.add_argument("--budget", help="tokens per arm's dataset (default the run's [dataset] budget)")
    p.add_argument("-o", "--out", help="output folder (default RUN/evaluate)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retriever._cli import parse_named_paths, show_progress
    from retriever.arms import evaluate_run, format_table
    from retriever.arms.run import stderr_progress

    datasets = parse_named_paths(args.dataset, "--dataset")
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip()) if args.arms else None
    overrides = {
        "arms": arms,
        "seeds": args.seeds,
        "budget": args.budget,
        "out": args.out,
        "device": args.device,
        "datasets": datasets or None,
    }
    res = evaluate_run(args.config, overrides, progress=show_progress(), on_proxy=stderr_progress)
    if args.json:
        print_json(res.summary)
    else:
        print(format_table(res.summary))
        c = res.summary["counts"]
        print(
            f"proxies: {c['trained']} trained, {c['reused']} from cache, {c['evaluated']} "
            f"evaluated -> {res.out}/summary.json, results.parquet"
        )
    return 0
