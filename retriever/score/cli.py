"""``retriever score`` (embed + score a corpus) and ``retriever candidates`` (re-threshold only)."""

from __future__ import annotations

import argparse
from pathlib import Path

from retriever._cli import (
    HelpFormatter,
    add_config_options,
    add_reader_options,
    parse_task_values,
    print_json,
    reader_from_args,
    show_progress,
)


def _add_rule_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--top-fraction",
        type=float,
        metavar="F",
        help="mark the top F of documents (0-1] of each task as candidates",
    )
    p.add_argument(
        "--threshold",
        action="append",
        metavar="TASK=SCORE",
        help="candidate threshold on the max cosine for one task (repeatable; wins over "
        "--top-fraction)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score corpus shards by similarity to each task's gold",
        description="Stream corpus shards, embed every document once, and score it against every "
        "--index: max cosine (score_TASK) and mean top-k cosine (topk_TASK). Writes "
        "OUT/scores/*.parquet (with the embeddings), rejects, a LanceDB store and summary.json. "
        "Rerun the same command to resume a killed run.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--index",
        action="append",
        required=True,
        metavar="DIR",
        help="task index folder (repeatable)",
    )
    p.add_argument(
        "--corpus",
        nargs="+",
        required=True,
        metavar="PATH",
        help="shard files, folders, or Hub datasets (hf://org/name[@split])",
    )
    p.add_argument("-o", "--out", required=True, help="output folder")
    _add_rule_options(p)
    from retriever.score.job import DocSampler, ScoreJob

    add_config_options(
        p,
        ScoreJob,
        ["k", "batch_size"],
        k={"flag": ("-k", "--k")},
    )
    add_reader_options(p)
    p.add_argument(
        "--meta-field",
        action="append",
        dest="meta_fields",
        metavar="FIELD",
        help="record field kept as a column (default: cluster_id)",
    )
    add_config_options(p, ScoreJob, ["device"])
    p.add_argument(
        "--sample",
        metavar="N|F",
        help="embed a seeded random sample only: a fraction (0.01, 1%%) or a document count "
        "(2000000, 2M; turned into a fraction of the corpus size, read from parquet metadata)",
    )
    add_config_options(p, DocSampler, ["seed"])
    st = p.add_mutually_exclusive_group()
    st.add_argument("--store", help="LanceDB URI for the embeddings (default: OUT/store)")
    st.add_argument("--no-store", action="store_true", help="do not fill the LanceDB store")
    p.add_argument(
        "--ann-min-rows", type=int, default=100_000, help="build an ANN index from this many rows"
    )
    p.add_argument(
        "--executor",
        choices=["inline", "local", "slurm", "ray"],
        default="inline",
        help="inline (this process) or a datatrove executor",
    )
    p.add_argument("--workers", type=int, help="parallel workers for datatrove executors")
    p.set_defaults(func=_score)

    c = sub.add_parser(
        "candidates",
        help="re-threshold, show or export the candidates of a score folder",
        description="Recompute candidates per task and the summary of a score folder (no "
        "re-embedding). Tasks not named by --threshold keep their earlier rule unless "
        "--top-fraction or --reset is given; what changed is printed. --show N lists the "
        "best documents per task, --export DIR writes each task's candidates with text.",
    )
    c.add_argument("scores", help="score folder made by `retriever score`")
    _add_rule_options(c)
    c.add_argument(
        "--reset",
        action="store_true",
        help="forget the earlier rules: tasks without a new rule get no threshold",
    )
    c.add_argument(
        "--show",
        type=int,
        metavar="N",
        help="print the N best documents per task (score, id, preview)",
    )
    c.add_argument(
        "--export",
        metavar="DIR",
        help="write DIR/TASK.jsonl.gz: each task's candidates with their text (id, text, metadata)",
    )
    c.set_defaults(func=_candidates)


def _report(summary: dict, as_json: bool) -> int:
    from retriever.score import format_summary

    if as_json:
        print_json(summary)
    else:
        print(format_summary(summary))
    return 1 if summary["shards"]["failed"] else 0


def _score(args) -> int:
    from retriever.score import score_corpus

    job = dict(
        k=args.k,
        batch_size=args.batch_size,
        reader=reader_from_args(args),
        device=args.device,
    )
    if args.meta_fields:
        job["meta_fields"] = tuple(args.meta_fields)
    summary = score_corpus(
        args.index,
        args.corpus,
        args.out,
        top_fraction=args.top_fraction,
        thresholds=parse_task_values(args.threshold, "--threshold"),
        store=None if args.no_store else (args.store or "default"),
        ann_min_rows=args.ann_min_rows,
        executor=args.executor,
        workers=args.workers,
        progress=show_progress(),
        sample=args.sample,
        seed=args.seed,
        **job,
    )
    return _report(summary, args.json)


def _candidates(args) -> int:
    import sys

    from retriever.errors import ConfigError
    from retriever.score.read import export_candidates, top_documents
    from retriever.score.select import format_changes, rethreshold, score_columns

    if args.show is not None and args.show < 1:
        raise ConfigError(f"--show expects a number of documents >= 1, got {args.show}")
    thresholds = parse_task_values(args.threshold, "--threshold")
    score_columns(args.scores)  # a clear error before anything else when it is no score folder
    rules = args.top_fraction is not None or args.threshold or args.reset
    if rules or not (args.show or args.export):
        summary, changes = rethreshold(
            args.scores, args.top_fraction, thresholds, keep=not args.reset
        )
    else:  # only looking: the summary stays as it is
        from retriever.io import read_json

        path = Path(args.scores) / "summary.json"
        found = read_json(path) if path.exists() else None
        changes = None
        if found is None:
            summary, changes = rethreshold(args.scores)
        else:
            summary = found
    shown = top_documents(args.scores, args.show) if args.show else None
    exported = export_candidates(args.scores, args.export) if args.export else None
    if args.json:
        print_json(
            {
                **summary,
                **({"changes": changes} if changes is not None else {}),
                **({"top": shown} if shown is not None else {}),
                **({"exported": exported} if exported is not None else {}),
            }
        )
        return 1 if summary["shards"]["failed"] else 0
    if changes is not None:
        print(format_changes(changes), file=sys.stderr)
    rc = _report(summary, False)
    if shown is not None:
        thr = {t: d["threshold"] for t, d in summary["tasks"].items()}
        for t, hits in shown.items():
            cut = "-" if thr.get(t) is None else f"{thr[t]:.4f}"
            print(f"\n{t}: top {len(hits)} (threshold {cut})")
            for h in hits:
                mark = "*" if thr.get(t) is not None and h["score"] >= thr[t] else " "
                body = (h.get("preview") or "").replace("\n", " ")
                print(f"  {h['rank']:>3} {mark} {h['score']:.4f}  {h['id']}  {body[:100]}")
    if exported is not None:
        for t, n in exported.items():
            print(f"exported {n:,} {t} candidates to {Path(args.export) / (t + '.jsonl.gz')}")
    return rc
