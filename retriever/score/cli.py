"""``retriever score`` (embed + score a corpus) and ``retriever candidates`` (re-threshold only)."""

from __future__ import annotations

import argparse

from retriever._cli import parse_task_values, print_json, show_progress


def _add_rule_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top-fraction", type=float, metavar="F",
                   help="mark the top F of documents (0-1] of each task as candidates")
    p.add_argument("--threshold", action="append", metavar="TASK=SCORE",
                   help="candidate threshold on the max cosine for one task (repeatable; wins over --top-fraction)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score", help="score corpus shards by similarity to each task's gold",
        description="Stream corpus shards, embed every document once, and score it against every "
        "--index: max cosine (score_TASK) and mean top-k cosine (topk_TASK). Writes OUT/scores/*.parquet "
        "(with the embeddings), rejects, a LanceDB store and summary.json. Rerun the same command to "
        "resume a killed run.")
    p.add_argument("--index", action="append", required=True, metavar="DIR", help="task index folder (repeatable)")
    p.add_argument("--corpus", nargs="+", required=True, metavar="PATH",
                   help="shard files, folders, or Hub datasets (hf://org/name[@split])")
    p.add_argument("--out", required=True, help="output folder")
    _add_rule_options(p)
    p.add_argument("-k", "--k", type=int, default=10, help="neighbours averaged by topk_TASK (default 10)")
    p.add_argument("--batch-size", type=int, default=256, help="documents embedded together (default 256)")
    p.add_argument("--text-field", default="text")
    p.add_argument("--id-field", default="id")
    p.add_argument("--tokens-field", default="tokens", help="token-id field, used when there is no text field")
    p.add_argument("--detokenizer", help="tokenizer turning token ids into text (gpt2 for ClimbLab tokens)")
    p.add_argument("--meta-field", action="append", dest="meta_fields", metavar="FIELD",
                   help="record field kept as a column (default: cluster_id)")
    p.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    p.add_argument("--sample", metavar="N|F",
                   help="embed a seeded random sample only: a fraction (0.01, 1%%) or a document count "
                   "(2000000, 2M; turned into a fraction of the corpus size, read from parquet metadata)")
    p.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    st = p.add_mutually_exclusive_group()
    st.add_argument("--store", help="LanceDB URI for the embeddings (default: OUT/store)")
    st.add_argument("--no-store", action="store_true", help="do not fill the LanceDB store")
    p.add_argument("--ann-min-rows", type=int, default=100_000, help="build an ANN index from this many rows")
    p.add_argument("--executor", choices=["inline", "local", "slurm", "ray"], default="inline",
                   help="inline (this process, default) or a datatrove executor")
    p.add_argument("--workers", type=int, help="parallel workers for datatrove executors")
    p.set_defaults(func=_score)

    c = sub.add_parser("candidates", help="re-threshold a score folder (no re-embedding)",
                       description="Recompute candidates per task and the summary of a score folder.")
    c.add_argument("scores", help="score folder made by `retriever score`")
    _add_rule_options(c)
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

    job = dict(k=args.k, batch_size=args.batch_size, text_field=args.text_field, id_field=args.id_field,
               tokens_field=args.tokens_field, detokenizer=args.detokenizer, device=args.device)
    if args.meta_fields:
        job["meta_fields"] = tuple(args.meta_fields)
    summary = score_corpus(
        args.index, args.corpus, args.out, top_fraction=args.top_fraction,
        thresholds=parse_task_values(args.threshold, "--threshold"),
        store=None if args.no_store else (args.store or "default"), ann_min_rows=args.ann_min_rows,
        executor=args.executor, workers=args.workers, progress=show_progress(), sample=args.sample,
        seed=args.seed, **job)
    return _report(summary, args.json)


def _candidates(args) -> int:
    from retriever.score import summarize

    summary = summarize(args.scores, args.top_fraction, parse_task_values(args.threshold, "--threshold"))
    return _report(summary, args.json)
