"""``retriever distill``: train the fastText filter of one task from confirmed labels."""

from __future__ import annotations

import argparse

from retriever._cli import HelpFormatter, print_json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "distill",
        help="train a fastText filter on the confirmed labels of a task",
        description=(
            "Train a supervised fastText classifier (newlines to spaces, word bigrams) on the "
            "student's training set: the task's gold (--indexes) and the confirmed candidates as "
            "positives, random documents and the other tasks' gold as negatives (--training-set "
            "picks the sources). Report precision / recall / F1 / ROC-AUC on a split held out per "
            "source, the student's AUC beside the similarity stage's on held-out gold vs random "
            "documents (with warnings), and save the model with a manifest (OUT with suffix .json) "
            "and its training set (OUT with suffix .student_set.parquet)."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--labels",
        nargs="+",
        default=None,
        help="labels parquet file or folder of <task>.parquet (confirm; rate), one or more",
    )
    p.add_argument("--task", required=True, help="task whose rows to train on")
    p.add_argument(
        "--indexes",
        default=None,
        help="folder of gold indexes <task>/ (e.g. indexes/ or RUN/indexes): the gold and "
        "other-gold sources; without it the student learns from the labels alone",
    )
    p.add_argument("--out", default=None, help="model path (default: indexes/TASK/filter.bin)")
    from retriever.distill.train import DistillConfig

    d = DistillConfig()
    g = p.add_argument_group("fastText hyperparameters")
    g.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    g.add_argument("--epoch", type=int, default=d.epoch, help="passes over the data")
    g.add_argument("--dim", type=int, default=d.dim, help="vector size")
    g.add_argument("--word-ngrams", type=int, default=d.word_ngrams, help="2 = word bigrams")
    g.add_argument(
        "--minn", type=int, default=d.minn, help="shortest character n-gram (0: no subwords)"
    )
    g.add_argument("--maxn", type=int, default=d.maxn, help="longest character n-gram")
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
    g.add_argument(
        "--normalization",
        default=d.normalization,
        choices=["newlines", "words", "both"],
        help="words: lowercase, punctuation as tokens; newlines: newlines to spaces only; "
        "both: the two on one line (docs/distill.md)",
    )
    from retriever.distill.trainset import SOURCES, VARIANTS

    t = p.add_argument_group("training set")
    t.add_argument(
        "--training-set",
        default=d.training_set,
        help=f"a variant {list(VARIANTS)} or comma-separated sources from {list(SOURCES)}",
    )
    t.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="SOURCE=W",
        help="weight of a source (lines replicated / subsampled; repeatable)",
    )
    t.add_argument(
        "--balance", action="store_true", help="replicate the lighter class to equal weight"
    )
    t.add_argument(
        "--hard-negative-max",
        type=float,
        default=None,
        help="rejected candidates are hard negatives only at or below this correlation",
    )
    e = p.add_argument_group("evaluation")
    e.add_argument(
        "--test-fraction", type=float, default=d.test_fraction, help="share of each class held out"
    )
    e.add_argument("--threshold", type=float, default=d.threshold, help="for precision/recall/F1")
    e.add_argument("--refit", action="store_true", help="after evaluating, retrain on all rows")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from retriever.distill.train import DistillConfig, FastTextDistiller
    from retriever.errors import ConfigError

    weights = {}
    for w in args.weight:
        name, _, val = w.partition("=")
        try:
            weights[name] = float(val)
        except ValueError:
            raise ConfigError(f"--weight {w!r}: use SOURCE=NUMBER, e.g. --weight gold=2") from None
    ts = args.training_set
    ts = tuple(x.strip() for x in ts.split(",")) if "," in ts else ts
    cfg = DistillConfig(
        training_set=ts,
        normalization=args.normalization,
        weights=weights,
        balance=args.balance,
        hard_negative_max=args.hard_negative_max,
        lr=args.lr,
        epoch=args.epoch,
        dim=args.dim,
        word_ngrams=args.word_ngrams,
        min_count=args.min_count,
        bucket=args.bucket,
        minn=args.minn,
        maxn=args.maxn,
        loss=args.loss,
        thread=args.thread,
        seed=args.seed,
        test_fraction=args.test_fraction,
        threshold=args.threshold,
        refit=args.refit,
        max_chars=args.max_chars,
    )
    out = args.out or f"indexes/{args.task}/filter.bin"
    indexes = None
    if args.indexes:
        root = Path(args.indexes)
        if not root.is_dir():
            raise ConfigError(f"--indexes {root} is not a folder of gold indexes <task>/")
        indexes = {d.name: d for d in sorted(root.iterdir()) if (d / "gold.parquet").is_file()}
        if args.task not in indexes:
            raise ConfigError(
                f"--indexes {root} has no gold index {args.task}/ (has {sorted(indexes)})"
            )
    rep = FastTextDistiller(cfg).run(args.labels, args.task, out, indexes=indexes)
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
        f"  Spearman with the teacher's combined score: {m['spearman_combined']:.3f} "
        f"(n={m['spearman_n']})"
    )
    c = m.get("heldout_vs_similarity") or {}
    if c.get("student_auc") is not None:
        print(
            f"  {c['rows']}: student AUC {c['student_auc']:.3f}, similarity AUC "
            f"{c['similarity_auc']:.3f}"
        )
    for w in rep.warnings:
        print(f"  WARNING: {w}")
    print(f"  model {rep.model_path}  manifest {rep.manifest_path}  ({rep.seconds:.1f}s)")
    return 0
