"""``retriever confirm`` (label candidates) and its verbs ``bpb``, ``scorecard``, ``tiny-panel``.

Each verb only parses options and calls the library (:mod:`retriever.confirm`).
"""

from __future__ import annotations

import argparse

from retriever._cli import (
    HelpFormatter,
    add_config_options,
    add_reader_options,
    config_from_args,
    parse_task_values,
    print_json,
    reader_from_args,
    show_progress,
)
from retriever.confirm.decide import DecisionRules
from retriever.confirm.docs import CandidateRule
from retriever.confirm.scorecard import KINDS, ScorecardConfig
from retriever.confirm.tiny_panel import TinyPanelConfig


def _panel_opts(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--models",
        required=required,
        metavar="PANEL.toml",
        help="panel file: models (Hub ids or folders) and their task scores",
    )
    p.add_argument("--scores", metavar="FILE", help="scores CSV/TOML overriding the panel's own")


def _docs_opts(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--docs",
        nargs="+",
        required=required,
        metavar="PATH",
        help="a score folder (`retriever score --out`) or corpus files/folders (jsonl/parquet)",
    )
    p.add_argument(
        "-o",
        "--out",
        required=required,
        help="output folder (rerun to resume; the BPB cache is reused)",
    )
    add_reader_options(p)


_BPB_FIELDS = (
    "device",
    "dtype",
    "max_batch_tokens",
    "max_batch_size",
    "context_tokens",
    "block_docs",
)


def _bpb_opts(p: argparse.ArgumentParser, names: tuple[str, ...] = _BPB_FIELDS) -> None:
    """The :class:`~retriever.confirm.stage.BpbOptions` fields ``names`` and ``--threads``."""
    from retriever.confirm.bpb import DTYPES
    from retriever.confirm.stage import BpbOptions

    g = p.add_argument_group("bits per byte")
    add_config_options(
        g,
        BpbOptions,
        list(names),
        dtype={"choices": list(DTYPES)},
        max_batch_tokens={"flag": "--batch-tokens"},
        max_batch_size={"flag": "--batch-size"},
    )
    g.add_argument("--threads", type=int, help="torch CPU threads")


def _candidate_opts(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("candidates (score folders)")
    g.add_argument(
        "--tasks",
        nargs="+",
        metavar="TASK",
        help="tasks to label (default: the score folder's tasks that the panel has scores for)",
    )
    add_config_options(
        g,
        CandidateRule,
        ["top_fraction"],
        top_fraction={"metavar": "F"},
    )
    g.add_argument(
        "--threshold",
        action="append",
        metavar="TASK=SIM",
        help="candidates: similarity >= SIM for TASK (repeatable; wins over --top-fraction); "
        "with neither, the threshold recorded by `retriever score`",
    )
    add_config_options(
        g,
        CandidateRule,
        ["negatives_per_positive", "max_random_negatives", "max_candidates", "seed"],
        negatives_per_positive={"metavar": "R"},
        max_candidates={"metavar": "N"},
    )


def _decision_opts(p: argparse.ArgumentParser) -> None:
    from retriever.confirm.correlate import ESTIMATORS
    from retriever.confirm.stage import ConfirmSettings

    g = p.add_argument_group("decision")
    add_config_options(
        g,
        DecisionRules,
        ["estimator", "positive_min", "negative_max", "positive_top_fraction"],
        estimator={"choices": list(ESTIMATORS)},
        positive_top_fraction={"flag": "--positive-top", "metavar": "F"},
    )
    add_config_options(
        g,
        ConfirmSettings,
        ["min_models", "metric", "sample_budget", "center_models"],
        metric={"choices": ["acc", "acc_norm", "neg_bpb"]},
        center_models={"flag": "--center"},
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "confirm",
        help="confirm similarity candidates by perplexity correlation across an LM panel",
        description="Compute bits per byte of the candidates under every model of the panel "
        "(cached), correlate them with the models' task errors, and write auditable labels per "
        "task to OUT/labels/TASK.parquet (positive / negative / uncertain, with the reason). "
        "Verbs: bpb (matrix only), scorecard (model scores), tiny-panel (offline test panel).",
        formatter_class=HelpFormatter,
    )
    _panel_opts(p, required=False)
    _docs_opts(p, required=False)
    _candidate_opts(p)
    _decision_opts(p)
    _bpb_opts(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_label)
    # optional: plain `retriever confirm` runs the whole stage
    verbs = p.add_subparsers(dest="confirm_command", metavar="[VERB]")

    b = verbs.add_parser(
        "bpb",
        help="the BPB matrix only (documents x models, cached)",
        description="Compute (or complete) the cached BPB matrix OUT/bpb/matrix.parquet: "
        "a rerun with one more model computes only that model.",
        formatter_class=HelpFormatter,
    )
    _panel_opts(b)
    _docs_opts(b)
    bc = b.add_argument_group("restrict to candidates (score folders)")
    bc.add_argument("--tasks", nargs="+", metavar="TASK", help="only these tasks' candidates")
    add_config_options(bc, CandidateRule, ["top_fraction"], top_fraction={"metavar": "F"})
    bc.add_argument(
        "--threshold", action="append", metavar="TASK=SIM", help="candidates: similarity >= SIM"
    )
    _bpb_opts(b)
    b.add_argument("--json", action="store_true", help="print the report as JSON")
    b.set_defaults(func=_bpb)

    s = verbs.add_parser(
        "scorecard",
        help="score each panel model on a task's gold",
        description="Multiple-choice gold (ELMB: question/choices/answer): acc and "
        "acc_norm like lm-eval. Gold without choices: neg_bpb (minus bits per byte). "
        "Rows go to the scores CSV the panel reads.",
        formatter_class=HelpFormatter,
    )
    _panel_opts(s)
    s.add_argument("--task", required=True, help="task name (as in the score folder / labels)")
    s.add_argument("--gold", nargs="+", required=True, metavar="PATH", help="gold files or folders")
    s.add_argument("-o", "--out", help="scores CSV to update (default: the panel's `scores` file)")
    add_config_options(s, ScorecardConfig, ["kind", "limit"], kind={"choices": list(KINDS)})
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    _bpb_opts(s, ("dtype", "max_batch_tokens"))
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_scorecard)

    t = verbs.add_parser(
        "tiny-panel",
        help="train a tiny byte-level GPT-2 panel offline (seconds)",
        description="Train N tiny GPT-2 models, each on its own mix of task-like "
        "(--gold) and generic (--generic) text, and write DIR/panel.toml. Without "
        "--gold/--generic, seeded synthetic texts are used. With --task, each model's "
        "neg_bpb on held-out gold is written to DIR/scores.csv.",
        formatter_class=HelpFormatter,
    )
    t.add_argument("-o", "--out", required=True, help="folder for panel.toml and the models")
    t.add_argument(
        "--gold", nargs="+", metavar="PATH", help="task-like texts (jsonl/parquet with text)"
    )
    t.add_argument(
        "--generic", nargs="+", metavar="PATH", help="generic texts (jsonl/parquet with text)"
    )
    t.add_argument("--task", help="score the models on held-out --gold texts under this task name")
    t.add_argument(
        "--holdout", type=float, default=0.2, help="share of gold texts kept for scoring"
    )
    t.add_argument(
        "--max-texts",
        type=int,
        default=400,
        help="texts sampled per corpus, the held-out gold included",
    )
    add_config_options(t, TinyPanelConfig, ["models", "steps"], models={"flag": "--n-models"})
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=_tiny_panel)


def _threads(args) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def _need(args, *names: str) -> None:
    from retriever.errors import ConfigError

    missing = [f"--{n.replace('_', '-')}" for n in names if not getattr(args, n, None)]
    if missing:
        raise ConfigError(f"`retriever confirm` needs {', '.join(missing)} (see --help)")


def _bpb_options(args):
    from retriever.confirm.stage import BpbOptions

    return config_from_args(BpbOptions, args)


def _open(args):
    from retriever.confirm.docs import open_docs
    from retriever.confirm.panel import load_panel

    panel = load_panel(args.models, args.scores)
    docs = open_docs(args.docs, reader_from_args(args).reader())
    return panel, docs


def _label(args) -> int:
    from retriever.confirm.decide import DecisionRules
    from retriever.confirm.docs import CandidateRule
    from retriever.confirm.stage import ConfirmSettings, ConfirmStage

    _need(args, "models", "docs", "out")
    _threads(args)
    panel, docs = _open(args)
    settings = config_from_args(
        ConfirmSettings,
        args,
        tasks=tuple(args.tasks) if args.tasks else None,
        candidates=config_from_args(
            CandidateRule, args, threshold=parse_task_values(args.threshold, "--threshold")
        ),
        rules=config_from_args(DecisionRules, args),
        bpb=_bpb_options(args),
    )
    summary = ConfirmStage(panel, args.out, settings, progress=show_progress()).run(docs)
    if args.json:
        print_json(summary)
    else:
        b = summary["bpb"]
        print(
            f"docs in {summary['docs']['in']} (unique {summary['docs']['unique']}, rejected "
            f"{summary['docs']['rejected'] or 0}); BPB {b['docs']} docs x "
            f"{len(b['usable_models'])} models, "
            f"{str(b['tokens_per_s']) + ' tokens/s' if b['tokens_per_s'] else 'all cached'} on "
            f"{b['device']}"
        )
        for name, m in b["models"].items():
            if m["status"] != "ok":
                print(f"  model {name}: {m['status']} {m.get('error', '')}")
        for task, info in summary["tasks"].items():
            lab = info["labels"]
            print(
                f"{task}: {info['candidates']} candidates ({info['candidate_rule']}), "
                f"{lab['positive']} positive, {lab['negative']} negative "
                f"({info['random_negatives']} random), {lab['uncertain']} uncertain"
                + (f"  PROBLEM: {info['problem']}" if info.get("problem") else "")
            )
        print(f"labels: {args.out}/labels/TASK.parquet")
    return 1 if any(i.get("problem") for i in summary["tasks"].values()) else 0


def _bpb(args) -> int:
    from retriever.confirm.docs import CandidateRule
    from retriever.confirm.stage import ConfirmSettings, ConfirmStage

    _threads(args)
    panel, docs = _open(args)
    stage = ConfirmStage(
        panel, args.out, ConfirmSettings(bpb=_bpb_options(args)), progress=show_progress()
    )
    ids = None
    if args.tasks:
        docs.select(
            args.tasks,
            CandidateRule(
                top_fraction=args.top_fraction,
                threshold=parse_task_values(args.threshold, "--threshold"),
                negatives_per_positive=0,
                max_candidates=args.max_candidates,
            ),
        )
        wanted = docs.wanted_ids()
        ids = [i for i in docs.ids if i in wanted]
    result = stage.compute_bpb(docs, ids)
    if args.json:
        print_json(result.report)
    else:
        rep = result.report
        speed = f"{rep['tokens_per_s']} tokens/s" if rep["tokens_per_s"] else "all cached"
        print(
            f"BPB matrix {len(result.ids)} docs x {len(result.models)} models -> "
            f"{args.out}/bpb/matrix.parquet ({rep['tokens']} new tokens, {speed}, {rep['device']} "
            f"{rep['dtype']})"
        )
        for name, m in rep["models"].items():
            print(
                f"  {name}: {m['status']}, cached {m.get('cached', 0)}, computed "
                f"{m.get('computed', 0)}, NaN {m.get('nan_docs', 0)}"
                + (f", error: {m['error']}" if m.get("error") else "")
            )
    failed = [m for m, r in result.report["models"].items() if r["status"] != "ok"]
    return 1 if failed else 0


def _scorecard(args) -> int:
    from retriever.confirm.panel import load_panel
    from retriever.confirm.scorecard import read_gold, scorecard, update_scores_file
    from retriever.errors import ConfigError

    _threads(args)
    panel = load_panel(args.models, args.scores)
    out = args.out or panel.scores_file
    if not out:
        raise ConfigError("the panel names no `scores` file: pass --out scores.csv")
    sc = config_from_args(ScorecardConfig, args)
    gold = read_gold(args.gold, limit=sc.limit, seed=args.seed, kind=sc.kind)
    res = scorecard(
        panel,
        args.task,
        gold,
        device=args.device,
        dtype=args.dtype,
        max_batch_tokens=args.max_batch_tokens,
    )
    update_scores_file(out, res.scores)
    report = {
        "task": args.task,
        "kind": res.kind,
        "records": len(gold.items) or len(gold.texts),
        "skipped": gold.skipped,
        "scores_file": str(out),
        "models": res.details,
    }
    if args.json:
        print_json(report)
    else:
        print(f"{args.task}: {report['records']} {res.kind} gold records -> {out}")
        for name, d in res.details.items():
            print(
                f"  {name}: "
                + ", ".join(
                    f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items()
                )
            )
    return 0 if res.scores else 1


def _tiny_panel(args) -> int:
    from retriever.confirm.tiny_panel import build_tiny_panel

    _threads(args)
    tiny = config_from_args(TinyPanelConfig, args)
    report = build_tiny_panel(
        args.out,
        gold=args.gold,
        generic=args.generic,
        task=args.task,
        holdout=args.holdout,
        max_texts=args.max_texts,
        n_models=tiny.models,
        steps=tiny.steps,
        seed=args.seed,
    )
    if args.json:
        print_json(report)
    else:
        print(
            f"panel -> {report['panel']} ({len(report['models'])} models, corpora "
            f"{report['corpora']})"
        )
        for m in report["models"]:
            print(
                f"  {m['name']}: mix {m['mix']}, train loss {m['final_train_loss']}, "
                f"{m['seconds']}s"
                + (f", {report['task']} neg_bpb {m['score']:.4f}" if "score" in m else "")
            )
    return 0
