"""``retriever <verb>``: each subcommand only parses options and calls the library.

Stage packages contribute their verbs through a ``cli.py`` module exposing
``add_parser(subparsers)``; the parser's ``func(args) -> int`` does the work.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from collections.abc import Iterator

from retriever import __version__
from retriever._cli import HelpFormatter
from retriever.errors import RetrieverError

# Order is the order of --help. Each module must be importable without heavy dependencies.
COMMAND_MODULES = [
    "retriever.index.cli",
    "retriever.prefilter.cli",
    "retriever.score.cli",
    "retriever.domains.cli",
    "retriever.query.cli",
    "retriever.serve.cli",
    "retriever.confirm.cli",
    "retriever.rate.cli",
    "retriever.band.cli",
    "retriever.distill.cli",
    "retriever.batch_filter.cli",
    "retriever.dataset.cli",
    "retriever.mix.cli",
    "retriever.proxy.cli",
    "retriever.evaluation.cli",
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
    _add_common_options(parser, default=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # stage not built yet
                continue
            raise
        mod.add_parser(sub)
    for _, p in _subparsers(parser):
        # -v / -q after the verb too (``retriever run c.toml -q``); SUPPRESS keeps a top-level value
        _add_common_options(p, default=argparse.SUPPRESS)
        if p.formatter_class is argparse.ArgumentDefaultsHelpFormatter:
            p.formatter_class = HelpFormatter  # no "(default: None)"
    return parser


def _add_common_options(p: argparse.ArgumentParser, default) -> None:
    have = set(p._option_string_actions)
    if not {"-v", "--verbose"} & have:
        p.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=default,
            help="show debug logs and third-party logs on the terminal",
        )
    if not {"-q", "--quiet"} & have:
        p.add_argument(
            "-q", "--quiet", action="store_true", default=default, help="no progress bars"
        )


def _subparsers(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    """Every sub-command parser below ``parser`` with its path of verbs (depth first)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, p in action.choices.items():
                yield [name], p
                for path, q in _subparsers(p):
                    yield [name, *path], q


def _chosen_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The deepest sub-command parser the parsed ``args`` went through."""
    while True:
        nxt = None
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                name = (
                    getattr(args, action.dest, None)
                    if action.dest is not argparse.SUPPRESS
                    else None
                )
                nxt = action.choices.get(name) if name else None
        if nxt is None:
            return parser
        parser = nxt


def _suggest(flag: str, p: argparse.ArgumentParser) -> str | None:
    """The option of ``p`` closest to a mistyped ``flag`` (compared without dashes), if any."""
    options = {o.lstrip("-"): o for o in p._option_string_actions if o.startswith("--")}
    close = difflib.get_close_matches(
        flag.split("=", 1)[0].lstrip("-"), list(options), n=1, cutoff=0.6
    )
    return options[close[0]] if close else None


def _unknown_flags(p: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    return [
        a
        for a in argv
        if a.startswith("--") and len(a) > 2 and a.split("=", 1)[0] not in p._option_string_actions
    ]


def _hints(p: argparse.ArgumentParser, flags: list[str]) -> str:
    parts = []
    for f in flags:
        close = _suggest(f, p)
        parts.append(f"{f} (did you mean {close}?)" if close else f)
    return " ".join(parts)


def _install_error_hints(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Errors of every sub-command (missing required option...) also name mistyped flags."""
    for _, p in [([], parser), *_subparsers(parser)]:

        def error(message: str, p=p) -> None:
            unknown = _unknown_flags(p, argv)
            if unknown and "unrecognized arguments" not in message:
                message += "; unrecognized arguments: " + _hints(p, unknown)
            argparse.ArgumentParser.error(p, message)

        p.error = error  # type: ignore[method-assign,assignment]


def _unknown_args(
    parser: argparse.ArgumentParser, args: argparse.Namespace, extras: list[str]
) -> None:
    """Exit with the sub-command's usage and a "did you mean" for each unknown option."""
    p = _chosen_parser(parser, args)
    p.error("unrecognized arguments: " + _hints(p, extras))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    _install_error_hints(parser, argv)
    args, extras = parser.parse_known_args(argv)
    if extras:
        _unknown_args(parser, args, extras)
    from retriever.logs import setup_logging
    from retriever.progress import set_quiet

    setup_logging(verbose=args.verbose)
    set_quiet(args.quiet)
    if not getattr(args, "func", None):
        _chosen_parser(parser, args).print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RetrieverError as e:
        print(f"retriever {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        from retriever.io import WRITE_ERRNOS

        if e.errno not in WRITE_ERRNOS:
            raise
        where = f" ({e.filename})" if e.filename else ""
        print(
            f"retriever {args.command}: error: cannot write{where}: {e.strerror}; free space or "
            "fix permissions and rerun the same command (finished work is kept)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
