"""``retriever query``: nearest gold exemplars (--index) or corpus documents (--corpus-store), here
or from a running ``retriever serve`` (--server)."""

from __future__ import annotations

import argparse
import sys

from retriever._cli import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "query",
        help="nearest gold exemplars or corpus documents of a new exemplar",
        description="Embed TEXT and list its nearest neighbours. TEXT `-` reads one "
        "exemplar from stdin (all of it, newlines kept).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--index",
        action="append",
        metavar="DIR",
        help="task index folder: search its gold exemplars (repeatable: all are searched, "
        "hits merged by score)",
    )
    src.add_argument(
        "--corpus-store",
        metavar="DIR_OR_URI",
        help="score folder (or LanceDB URI): search the scored corpus",
    )
    src.add_argument(
        "--server",
        metavar="URL",
        help="ask a running `retriever serve` (no model load here): its corpus store, or its "
        "gold exemplars with --task",
    )
    p.add_argument(
        "--task",
        action="append",
        metavar="TASK",
        help="with --server: search this task's gold exemplars instead of the corpus "
        "(repeatable; 'all' for every task the server has)",
    )
    p.add_argument("text", nargs="+", help="exemplar text(s); - reads stdin")
    p.add_argument("-k", type=int, default=10, help="neighbours per text (default 10)")
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    p.set_defaults(func=_query)


def _texts(args) -> list[str]:
    from retriever.errors import ConfigError

    texts = []
    for t in args.text:
        if t == "-":
            t = sys.stdin.read().strip("\n")
            if not t.strip():
                raise ConfigError(
                    "`retriever query -` read nothing from stdin; pipe the exemplar in"
                )
        texts.append(t)
    if args.k < 1:
        raise ConfigError(f"-k must be at least 1, got {args.k}")
    return texts


def _query(args) -> int:
    texts = _texts(args)
    if args.task and not args.server:
        from retriever.errors import ConfigError

        raise ConfigError("--task goes with --server; locally, name the task's --index folder")
    if args.server:
        from retriever.query.client import server_corpus, server_gold

        if args.task:
            tasks = None if "all" in args.task else args.task
            results = server_gold(args.server, texts, args.k, tasks)
        else:
            results = server_corpus(args.server, texts, args.k)
    elif args.index:
        from retriever.query import query_gold_many

        results = query_gold_many(args.index, texts, args.k)
    else:
        from retriever.query import query_corpus

        results = query_corpus(args.corpus_store, texts, args.k)
    if args.json:
        print_json([{"query": q, "hits": h} for q, h in zip(texts, results, strict=True)])
        return 0
    for q, hits in zip(texts, results, strict=True):
        print("query: " + q[:100].replace("\n", " "))
        for h in hits:
            print("  " + _format_hit(h))
    return 0


def _format_hit(h: dict) -> str:
    """``rank score [task] id [where] text``, the location left out when the id already says it."""
    where = h.get("source") or f"{h.get('shard')}:{h.get('row')}"
    hid = str(h["id"])
    loc = "" if not where or where in hid or hid in where else f"  [{where}]"
    task = f"  {h['task']}" if h.get("task") else ""
    body = (h.get("text") or h.get("preview") or "").replace("\n", " ")
    return f"{h['rank']:>3}  {h['score']:.4f}{task}  {hid}{loc}  {body[:110]}"
