"""``retriever distill``: train the fastText filter of one task from confirmed labels."""

from __future__ import annotations

import argparse

from retriever._cli import (
    HelpFormatter,
    add_config_options,
    config_from_args,
    parse_task_values,
    print_json,
)

# DistillConfig fields with an option of the same name
HYPERPARAMETERS = (
    "lr",
    "epoch",
    "dim",
    "word_ngrams",
    "minn",
    "maxn",
    "min_count",
    "bucket",
    "loss",
    "thread",
    "seed",
    "max_chars",
    "normalization",
)


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
    p.add_argument(
        "-o", "--out", default=None, help="model path (default: indexes/TASK/filter.bin)"
    )
    from retriever.distill.train import DistillConfig
    from retriever.distill.trainset import SOURCES, VARIANTS

    g = p.add_argument_group("fastText hyperparameters")
    add_config_options(
        g,
        DistillConfig,
        HYPERPARAMETERS,
        loss={"choices": ["softmax", "ova", "hs", "ns"]},
        normalization={"choices": ["newlines", "words", "both"]},
    )
    t = p.add_argument_group(
        "training set", f"variants: {', '.join(VARIANTS)}; sources: {', '.join(SOURCES)}"
    )
    add_config_options(t, DistillConfig, ["training_set"], training_set={"type": str})
    t.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="SOURCE=W",
        help="weight of a source (lines replicated / subsampled; repeatable)",
    )
    add_config_options(t, DistillConfig, ["balance", "hard_negative_max"])
    e = p.add_argument_group("evaluation")
    add_config_options(
        e,
        DistillConfig,
        ["test_fraction", "threshold", "refit"],
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from retriever.distill.train import DistillConfig, FastTextDistiller
    from retriever.errors import ConfigError

    weights = parse_task_values(args.weight, "--weight", "SOURCE=NUMBER", "gold=2")
    ts = args.training_set
    ts = tuple(x.strip() for x in ts.split(",")) if "," in ts else ts
    cfg = config_from_args(DistillConfig, args, training_set=ts, weights=weights)
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
