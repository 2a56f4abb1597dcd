"""``retriever prefilter``: keyword / pattern match counts per task, before anything is embedded."""

from __future__ import annotations

import argparse
from pathlib import Path

from retriever._cli import (
    HelpFormatter,
    add_config_options,
    add_reader_options,
    config_from_args,
    print_json,
    read_task_table,
    reader_from_args,
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "prefilter",
        help="count task keywords / patterns per document (cheap, before embedding)",
        description=(
            "Scan every corpus document once with all tasks' patterns (one combined regex) and "
            "write the match counts per task (OUT/matches/*.parquet). In drop mode, documents "
            "where some task has at least --min-matches matches are written to "
            "OUT/kept/*.jsonl.gz, the corpus for `retriever score --corpus OUT/kept`."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--corpus", nargs="+", required=True, help="corpus files or folders")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument(
        "--task",
        action="append",
        dest="tasks",
        default=None,
        help="task to match (repeatable; default: the four ELMB tasks)",
    )
    from retriever.prefilter.stage import MODES, PrefilterConfig

    add_config_options(
        p,
        PrefilterConfig,
        ["mode", "min_matches"],
        mode={"choices": list(MODES)},
    )
    p.add_argument(
        "--patterns",
        default=None,
        help="TOML file with a [patterns] table {task = [regex, ...]} replacing defaults",
    )
    p.add_argument(
        "--indexes-dir",
        type=Path,
        default=Path("indexes"),
        help="folder of task specs (<task>.toml; their `patterns` replace the defaults)",
    )
    add_reader_options(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from retriever.config import spec_patterns
    from retriever.prefilter import DEFAULT_PATTERNS, PrefilterConfig, prefilter_corpus

    patterns = read_task_table(args.patterns, "patterns", "patterns file")
    tasks = tuple(args.tasks or (patterns and list(patterns)) or DEFAULT_PATTERNS)
    # a task spec's own `patterns` replace the defaults (a --patterns file wins)
    specs = {t: args.indexes_dir / f"{t}.toml" for t in tasks if t not in patterns}
    patterns.update(spec_patterns(specs))
    cfg = config_from_args(
        PrefilterConfig, args, tasks=tasks, patterns=patterns, reader=reader_from_args(args)
    )
    summary = prefilter_corpus(args.corpus, args.out, cfg)
    if args.json:
        print_json({k: v for k, v in summary.items() if k != "shards"})
        return 0
    print(
        f"prefilter: {summary['docs_in']} docs in = {summary['kept']} kept + "
        f"{sum(summary['dropped'].values())} dropped + {sum(summary['rejected'].values())} "
        f"rejected ({summary['kept_share']:.1%} kept, {summary['docs_per_s']} docs/s)"
    )
    for t, share in summary["matched_share"].items():
        print(f"  {t:<18} {share:6.1%} of documents reach {summary['min_matches']} matches")
    print(f"  -> {args.out}/matches (counts), {args.out}/kept (documents)")
    return 0
