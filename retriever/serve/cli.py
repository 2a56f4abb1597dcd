"""``retriever serve``: the HTTP query service (nearest gold exemplars and corpus documents)."""

from __future__ import annotations

import argparse

from retriever._cli import HelpFormatter, add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    from retriever.query.corpus_search import SEARCH_MODES
    from retriever.serve.service import POSITIVE_INT_FIELDS, ServeConfig

    p = sub.add_parser(
        "serve",
        help="HTTP JSON API: nearest gold exemplars / corpus documents (loads the model once)",
        formatter_class=HelpFormatter,
        description="Load the embedder, the task indexes and the corpus store once, then answer "
        "POST /gold, POST /corpus, GET /health, GET /manifests (see docs/serve.md).",
    )
    p.add_argument("--index", action="append", default=[], help="task index folder (repeatable)")
    add_config_options(
        p,
        ServeConfig,
        ["store", "model", "backend", "host", "port", *POSITIVE_INT_FIELDS]
        + ["search", "threads", "max_seq_length"],
        store={"flag": "--corpus-store"},
        search={"choices": SEARCH_MODES},
    )
    p.set_defaults(func=_serve)


def _serve(args) -> int:
    from retriever.serve.server import run_server
    from retriever.serve.service import ServeConfig

    config = config_from_args(ServeConfig, args, indexes=tuple(args.index))
    return run_server(config)
