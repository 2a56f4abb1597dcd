"""``retriever distill``: train the fastText filter of one task from confirmed labels."""

from __future__ import annotations

import argparse

from retriever._cli import HelpFormatter, print_json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "distill",
        help="train a fastText filter on the confirmed labels of a task",
        description=(
            "Train a supervised fastText classifier (positive vs negative rows of the labels, "
            "newlines to spaces, word bigrams) on a stratified split, report precision / recall / "
            "F1 / ROC-AUC on the held-out part and the rank agreement with the teacher's score, and "
            "save the model with a manifest (OUT with suffix .json)."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--labels", required=True, help="labels parquet file or folder of <task>.parquet"
    )
    p.add_argument("--task", required=True, help="task whose rows to train on")
    p.add_argument("--out", default=None, help="model path (default: indexes/TASK/filter.bin)")
    from retriever.distill.train import DistillConfig

    d = DistillConfig()
    g = p.add_argument_group("fastText hyperparameters")
    g.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    g.add_argument("--epoch", type=int, default=d.epoch, help="passes over the data")
    g.add_argument("--dim", type=int, default=d.dim, help="vector size")
    g.add_argument("--word-ngrams", type=int, default=d.word_ngrams, help="2 = word bigrams")
    g.add_argument("--min-count", type=int, default=d.min_count, help="rarer words are dropped")
    g.add_argument("--bucket", type=int, default=d.bucket, help="n-gram hash buckets (model size)")
    g.add_argument("--loss", default=d.loss, choices=["softmax", "ova", "hs", "ns"], help="loss")
    g.add_argument(
        "--thread",
        type=int,
        default=d.thread,
        help="at least 11 are used (fastText initialises its matrix per thread)",
    )
    g.add_argument("--seed", type=int, default=d.seed, help="fastText and split seed")
    g.add_argument("--max-chars", type=int, default=d.max_chars, help="cut documents (0: whole)")
    e = p.add_argument_group("evaluation")
    e.add_argument(
        "--test-fraction", type=float, default=d.test_fraction, help="share of each class held out"
    )
    e.add_argument("--threshold", type=float, default=d.threshold, help="for precision/recall/F1")
    e.add_argument("--refit", action="store_true", help="after evaluating, retrain on all rows")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retriever.distill.train import DistillConfig, FastTextDistiller

    cfg = DistillConfig(
        lr=args.lr,
        epoch=args.epoch,
        dim=args.dim,
        word_ngrams=args.word_ngrams,
        min_count=args.min_count,
        bucket=args.bucket,
        loss=args.loss,
        thread=args.thread,
        seed=args.seed,
        test_fraction=args.test_fraction,
        threshold=args.threshold,
        refit=args.refit,
        max_chars=args.max_chars,
    )
    out = args.out or f"indexes/{args.task}/filter.bin"
    rep = FastTextDistiller(cfg).run(args.labels, args.task, out)
    if args.json:
        print_json(rep.manifest)
        return 0
    m = rep.metrics
    print(f"task {rep.task}: trained on {rep.n_train} rows, held out {rep.n_test} ({rep.counts})")
    print(
        f"  held-out  precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}  "
        f"ROC-AUC {m['roc_auc']:.3f}  AP {m['average_precision']:.3f}  (p >= {m['threshold']})"
    )
    print(
        f"  Spearman with the teacher's combined score: {m['spearman_combined']:.3f} (n={m['spearman_n']})"
    )
    print(f"  model {rep.model_path}  manifest {rep.manifest_path}  ({rep.seconds:.1f}s)")
    return 0
