"""``retriever report RUN_DIR -o report.html``: parse options, call
:func:`retriever.report.write_report`."""

from __future__ import annotations

import argparse

from retriever._cli import print_json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a self-contained report.html of a run (plots and samples)",
        description=(
            "Render report.html from what a run left on disk: score distributions with thresholds, "
            "similarity vs correlation, the distilled filter's precision-recall, kept share per "
            "source/cluster, the training set and mixture, and samples of kept, borderline and "
            "rejected documents. Artifacts are found under RUN_DIR by their shape; point at any "
            "of them explicitly with the options."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", nargs="?", help="the run folder (searched three levels deep)")
    p.add_argument("-o", "--out", help="output HTML (default RUN_DIR/report.html)")
    p.add_argument("--scores", help="a `retriever score` folder")
    p.add_argument("--confirm", help="a `retriever confirm` folder (labels/<task>.parquet)")
    p.add_argument(
        "--distill",
        action="append",
        default=[],
        metavar="MODEL",
        help="a fastText filter (M.bin or its manifest M.json); repeatable",
    )
    p.add_argument("--pools", help="the filter stage's output folder")
    p.add_argument("--dataset", help="a build-dataset output folder")
    p.add_argument("--mixture", help="a `retriever mix fit` result (json)")
    p.add_argument("--samples", type=int, default=4, help="documents shown per task and kind")
    p.add_argument("--max-pool-docs", type=int, default=200_000, help="pool records read per task")
    p.add_argument("--json", action="store_true", help="print what was found as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retriever.errors import ConfigError
    from retriever.report import find_sources, write_report

    if not args.run_dir and not args.out:
        raise ConfigError("give RUN_DIR, or -o OUT with the artifacts (--scores, --confirm, ...)")
    src = find_sources(
        args.run_dir,
        scores=args.scores,
        confirm=args.confirm,
        distill=args.distill,
        pools=args.pools,
        dataset=args.dataset,
        mixture=args.mixture,
    )
    path = write_report(
        args.run_dir,
        args.out,
        sources=src,
        n_samples=args.samples,
        max_pool_docs=args.max_pool_docs,
    )
    found = {
        k: (str(v) if not isinstance(v, list) else [str(x) for x in v]) if v else None
        for k, v in vars(src).items()
    }
    if args.json:
        print_json({"report": str(path), "sources": found})
    else:
        print(f"report -> {path}")
        for k, v in found.items():
            print(f"  {k:<9} {v if v else '(not found)'}")
    return 0
