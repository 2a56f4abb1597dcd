"""``retriever query``: nearest gold exemplars (--index) or corpus documents (--corpus-store)."""

from __future__ import annotations

import argparse

from retriever._cli import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("query", help="nearest gold exemplars or corpus documents of a new exemplar",
                       description="Embed TEXT and list its nearest neighbours.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--index", help="task index folder: search its gold exemplars")
    src.add_argument("--corpus-store", help="score folder (or LanceDB URI): search the scored corpus")
    p.add_argument("text", nargs="+", help="exemplar text(s)")
    p.add_argument("-k", type=int, default=10, help="neighbours per text (default 10)")
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    p.set_defaults(func=_query)


def _query(args) -> int:
    from retriever.query import query_corpus, query_gold

    if args.index:
        results = query_gold(args.index, args.text, args.k)
    else:
        results = query_corpus(args.corpus_store, args.text, args.k)
    if args.json:
        print_json([{"query": q, "hits": h} for q, h in zip(args.text, results, strict=True)])
        return 0
    for q, hits in zip(args.text, results, strict=True):
        print(f"query: {q[:100]}")
        for h in hits:
            where = h.get("source") or f"{h.get('shard')}:{h.get('row')}"
            body = (h.get("text") or h.get("preview") or "").replace("\n", " ")
            print(f"  {h['rank']:>3}  {h['score']:.4f}  {h['id']}  [{where}]  {body[:110]}")
    return 0
