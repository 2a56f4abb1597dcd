"""``retriever index build|add|info``."""

from __future__ import annotations

import argparse
import dataclasses

from retriever._cli import (
    HelpFormatter,
    add_config_options,
    add_reader_options,
    config_from_args,
    print_json,
    reader_from_args,
)
from retriever.index.head import MAX_NEGATIVES, HeadConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build, extend or inspect a task's gold index (indexes/TASK/)")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)

    b = isub.add_parser(
        "build",
        help="embed a task's gold exemplars into indexes/TASK/",
        description="Load the gold sources of TASK (indexes/TASK.toml, or --gold), "
        "embed them and write a FAISS index, the gold texts and a manifest.",
    )
    b.add_argument("task", help="task name (spec indexes/TASK.toml) or a spec .toml path")
    b.add_argument(
        "--gold",
        action="append",
        metavar="PATH_OR_HUB_ID",
        help="gold source replacing the spec's sources (repeatable; file, folder or Hub id)",
    )
    b.add_argument(
        "--indexes-dir",
        default="indexes",
        help="where specs live and indexes go (default: indexes)",
    )
    b.add_argument("-o", "--out", help="index folder (default: INDEXES_DIR/TASK)")
    b.add_argument("--model", help="embedding model (Hub id or local path; default: the spec's)")
    b.add_argument("--factory", help="FAISS factory string (default: the spec's, usually Flat)")
    b.add_argument(
        "--gold-limit",
        type=int,
        metavar="N",
        help="read at most N records per gold source (a quick first index)",
    )
    b.add_argument("--json", action="store_true", help="print the manifest as JSON")
    b.set_defaults(func=_build)

    a = isub.add_parser("add", help="add exemplars to an existing index (duplicates skipped)")
    a.add_argument("--index", required=True, help="index folder (indexes/TASK)")
    a.add_argument("texts", nargs="*", help="exemplar texts to add")
    a.add_argument("--gold", action="append", metavar="PATH_OR_HUB_ID", help="gold file(s) to add")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_add)

    h = isub.add_parser(
        "head",
        help="train each index's learned head (head/): a calibrated probability of the task",
        description="Per --index, a logistic regression over the document vector and its dense and "
        "sparse scores, trained with the task's gold as positives and --negatives corpus documents "
        "plus the other indexes' gold as negatives, Platt-calibrated on out-of-fold scores. The "
        "score stage then writes hybrid_TASK and head_TASK, and ranks candidates by head_TASK.",
        formatter_class=HelpFormatter,
    )
    h.add_argument(
        "--index",
        action="append",
        required=True,
        metavar="DIR",
        help="index folder (repeat for every task: the others' gold are negatives)",
    )
    h.add_argument(
        "--negatives",
        action="append",
        required=True,
        metavar="CORPUS",
        help="corpus files / folders whose documents are negatives (repeatable)",
    )
    h.add_argument(
        "--max-negatives",
        type=int,
        default=MAX_NEGATIVES,
        help="corpus documents used, a seeded sample over the shards",
    )
    add_reader_options(h)
    from retriever.score.job import ScoreJob

    h.add_argument(
        "-k",
        "--k",
        type=int,
        default=ScoreJob.k,
        help="top-k of the mean scores; must be the score stage's -k",
    )
    # every HeadConfig field is an option of `index head`
    add_config_options(h, HeadConfig, [f.name for f in dataclasses.fields(HeadConfig)])
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=_head)

    i = isub.add_parser("info", help="print an index's manifest")
    i.add_argument("index", help="index folder")
    i.set_defaults(func=_info)


def _build(args) -> int:
    from retriever.index import build_index

    gi = build_index(
        args.task,
        gold=args.gold,
        indexes_dir=args.indexes_dir,
        out=args.out,
        model=args.model,
        factory=args.factory,
        gold_limit=args.gold_limit,
    )
    if args.json:
        print_json(gi.manifest)
    else:
        c = gi.manifest["counts"]
        print(
            f"{gi.task}: {gi.ntotal} exemplars indexed ({gi.model}, dim {gi.dim}, "
            f"{gi.manifest['factory']}, built on {gi.manifest['built_on']}); read "
            f"{c.get('seen', 0)}, duplicates {c.get('dropped/duplicate', 0)}, rejected "
            f"{sum(v for k, v in c.items() if k.startswith('rejected'))}"
        )
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


def _head(args) -> int:
    from retriever.embed import load_embedder
    from retriever.index import GoldIndex
    from retriever.index.hybrid import read_negatives, train_heads

    reader = reader_from_args(args).reader()
    negatives = read_negatives(args.negatives, args.max_negatives, args.seed, reader=reader)
    emb = load_embedder(GoldIndex.load(args.index[0]).model)
    heads = train_heads(
        args.index,
        negatives,
        emb,
        config_from_args(HeadConfig, args),
        k=args.k,
        sources=list(args.negatives),
    )
    out = {t: {n: m.info for n, m in h.models.items()} for t, h in heads.items()}
    if args.json:
        print_json(out)
    else:
        for t, models in out.items():
            print(
                f"{t}: "
                + "; ".join(
                    f"{n} cv AUC {m['cv_roc_auc']:.4f} ({m['n_positive']} gold, "
                    f"{m['n_negative']} negatives)"
                    for n, m in models.items()
                )
            )
    return 0


def _info(args) -> int:
    from retriever.index import GoldIndex

    print_json(GoldIndex.load(args.index).manifest)
    return 0
