"""``retriever <verb>``: each subcommand only parses options and calls the library.

Stage packages contribute their verbs through a ``cli.py`` module exposing
``add_parser(subparsers)``; the parser's ``func(args) -> int`` does the work.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from retriever import __version__
from retriever.errors import RetrieverError

# Order is the order of --help. Each module must be importable without heavy dependencies.
COMMAND_MODULES = [
    "retriever.index.cli",
    "retriever.score.cli",
    "retriever.query.cli",
    "retriever.confirm.cli",
    "retriever.distill.cli",
    "retriever.batch_filter.cli",
    "retriever.dataset.cli",
    "retriever.mix.cli",
    "retriever.arms.cli",
    "retriever.report.cli",
    "retriever.plan.cli",
    "retriever.run.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retriever",
        description="Find the pretraining documents that teach a target skill.",
    )
    parser.add_argument("--version", action="version", version=f"retriever {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # stage not built yet
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # our own progress at INFO; third-party chatter (faiss loader, model loading) only with -v
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("retriever").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RetrieverError as e:
        print(f"retriever {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
