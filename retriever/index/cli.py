"""``retriever index build|add|info``."""

from __future__ import annotations

import argparse

from retriever._cli import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build, extend or inspect a task's gold index (indexes/TASK/)")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)

    b = isub.add_parser("build", help="embed a task's gold exemplars into indexes/TASK/",
                        description="Load the gold sources of TASK (indexes/TASK.toml, or --gold), "
                        "embed them and write a FAISS index, the gold texts and a manifest.")
    b.add_argument("task", help="task name (spec indexes/TASK.toml) or a spec .toml path")
    b.add_argument("--gold", action="append", metavar="PATH_OR_HUB_ID",
                   help="gold source replacing the spec's sources (repeatable; file, folder or Hub id)")
    b.add_argument("--indexes-dir", default="indexes", help="where specs live and indexes go (default: indexes)")
    b.add_argument("--out", help="index folder (default: INDEXES_DIR/TASK)")
    b.add_argument("--model", help="embedding model (Hub id or local path; default: the spec's)")
    b.add_argument("--factory", help="FAISS factory string (default: the spec's, usually Flat)")
    b.add_argument("--gold-limit", type=int, metavar="N",
                   help="read at most N records per gold source (a quick first index)")
    b.add_argument("--json", action="store_true", help="print the manifest as JSON")
    b.set_defaults(func=_build)

    a = isub.add_parser("add", help="add exemplars to an existing index (duplicates skipped)")
    a.add_argument("--index", required=True, help="index folder (indexes/TASK)")
    a.add_argument("texts", nargs="*", help="exemplar texts to add")
    a.add_argument("--gold", action="append", metavar="PATH_OR_HUB_ID", help="gold file(s) to add")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_add)

    i = isub.add_parser("info", help="print an index's manifest")
    i.add_argument("index", help="index folder")
    i.set_defaults(func=_info)


def _build(args) -> int:
    from retriever.index import build_index

    gi = build_index(args.task, gold=args.gold, indexes_dir=args.indexes_dir, out=args.out,
                     model=args.model, factory=args.factory, gold_limit=args.gold_limit)
    if args.json:
        print_json(gi.manifest)
    else:
        c = gi.manifest["counts"]
        print(f"{gi.task}: {gi.ntotal} exemplars indexed ({gi.model}, dim {gi.dim}, {gi.manifest['factory']}, "
              f"built on {gi.manifest['built_on']}); read {c.get('seen', 0)}, duplicates "
              f"{c.get('dropped/duplicate', 0)}, rejected {sum(v for k, v in c.items() if k.startswith('rejected'))}")
    return 0


def _add(args) -> int:
    from retriever.errors import ConfigError
    from retriever.index import add_to_index

    if not args.texts and not args.gold:
        raise ConfigError("give exemplar texts or --gold PATH to add")
    added, stats = add_to_index(args.index, texts=args.texts, gold=args.gold)
    if args.json:
        print_json({"added": added, **stats.to_dict()})
    else:
        print(f"added {added} exemplar(s) to {args.index} ({stats.to_dict()['counts']})")
    return 0


def _info(args) -> int:
    from retriever.index import GoldIndex

    print_json(GoldIndex.load(args.index).manifest)
    return 0
