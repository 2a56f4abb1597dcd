"""``retriever decontam`` and ``retriever proxy-eval``: parse options, call retriever.evaluation."""

from __future__ import annotations

from retriever._cli import (
    HelpFormatter,
    add_config_options,
    add_repeated,
    parse_named_paths,
    print_json,
)


def add_parser(subparsers) -> None:
    from retriever.corpus.readers import ReaderConfig

    p = subparsers.add_parser(
        "decontam",
        help="check evaluation records against gold / training sets (13-gram and exact overlap)",
        description=(
            "Fingerprint the evaluation sets (words lowercased, punctuation dropped; 13-grams and "
            "the whole normalized text, as GPT-3 and lm-eval's decontamination) and report, per "
            "task, how many evaluation records share a 13-gram with, or equal, a document of the "
            "--against inputs (index gold, a build-dataset folder, corpus files)."
        ),
        formatter_class=HelpFormatter,
    )
    add_repeated(
        p,
        "--eval",
        "TASK=FILE",
        "evaluation records (jsonl; repeatable); 'elmb' (default) = the four local ELMB sets",
    )
    p.add_argument(
        "--against",
        action="append",
        required=True,
        metavar="PATH",
        help="files / folders / a build-dataset folder, or holdout:<task> (the offline "
        "index gold); repeatable",
    )
    add_config_options(p, ReaderConfig, ["text_field"])  # of the --against records
    p.add_argument("--fail", action="store_true", help="exit 1 when any overlap is found")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run_decontam)

    e = subparsers.add_parser(
        "proxy-eval",
        help="score a model on the ELMB tasks with lm-evaluation-harness (acc, acc_norm, BPB)",
        description=(
            "Run lm_eval.simple_evaluate (HF model wrapper) on the shipped ELMB task configs "
            "(retriever/evaluation/tasks), on local files (default: the local ELMB sets built from "
            "../shared/data) or the Hub datasets (--data hub), plus bits per byte of each task's "
            "records (prompt + right answer)."
        ),
        formatter_class=HelpFormatter,
    )
    e.add_argument("model", help="HF model folder (tokenizer beside it) or Hub id")
    e.add_argument(
        "--task",
        action="append",
        default=None,
        help="function-calling, reasoning, roleplay, rag (repeatable; default all four)",
    )
    add_repeated(
        e,
        "--data",
        "TASK=FILE",
        "local evaluation file of a task (repeatable), a folder of <task>.jsonl, or 'hub'",
    )
    e.add_argument("--limit", type=int, default=None, help="records per task")
    e.add_argument("--device", default="auto", help="auto, cpu or cuda")
    e.add_argument("--batch-size", type=int, default=32, help="lm-eval batch size")
    e.add_argument("--no-bpb", action="store_true", help="skip bits per byte")
    e.add_argument("--json", action="store_true", help="print the scores as JSON")
    e.set_defaults(func=_run_eval)


def _against_docs(paths: list[str], text_field: str):
    from retriever.config import GoldSource
    from retriever.evaluation.decontam import corpus_docs
    from retriever.gold import GoldLoader
    from retriever.gold.loader import HOLDOUT_PREFIX

    for p in paths:
        if p.startswith(HOLDOUT_PREFIX):
            for d in GoldLoader([GoldSource(path=p)]).load().docs:
                yield d.id, d.text
        else:
            yield from corpus_docs([p], text_field=text_field)


def _run_decontam(args) -> int:
    from retriever.dataset.cli import parse_decontaminate
    from retriever.evaluation.decontam import check_overlap, fingerprint_files

    files = parse_decontaminate(args.eval or ["elmb"], "--eval")
    fp = fingerprint_files(files)
    rep = check_overlap(fp, _against_docs(args.against, args.text_field))
    if args.json:
        print_json(rep)
    else:
        print(
            f"{rep['docs']:,} documents checked against {fp.n_records:,} evaluation records "
            f"({rep['n']}-grams): {rep['docs_contaminated']:,} documents overlap"
        )
        print(f"  {'task':<18}{'records':>9}{'13-gram':>9}{'exact':>7}{'share':>8}")
        for t, r in rep["tasks"].items():
            print(
                f"  {t:<18}{r['records']:>9,}{r['ngram_overlap']:>9,}{r['exact_match']:>7,}"
                f"{r['share']:>8.1%}" + (f"   e.g. {r['examples'][0]}" if r["examples"] else "")
            )
        print(
            "clean"
            if rep["clean"]
            else "CONTAMINATED: drop these records from the evaluation "
            "or the documents from the gold / training set (build-dataset --decontaminate)"
        )
    return 1 if args.fail and not rep["clean"] else 0


def _run_eval(args) -> int:
    from pathlib import Path

    from retriever.evaluation import evaluate_model

    data: str | dict[str, str] | None = None
    if args.data == ["hub"]:
        data = "hub"
    elif len(args.data) == 1 and "=" not in args.data[0] and Path(args.data[0]).is_dir():
        data = args.data[0]
    elif args.data:
        data = parse_named_paths(args.data, "--data", "TASK=FILE, a folder, or hub")
    tasks = args.task or ["function-calling", "reasoning", "roleplay", "rag"]
    scores = evaluate_model(
        args.model,
        tasks=tasks,
        data=data,
        limit=args.limit,
        device=args.device,
        batch_size=args.batch_size,
        bpb=not args.no_bpb,
    )
    if args.json:
        print_json(scores)
    else:
        print(f"  {'task':<18}{'n':>6}{'acc':>16}{'acc_norm':>16}{'bpb':>8}")
        for t, r in scores.items():
            print(
                f"  {t:<18}{r['n']:>6}{r['acc']:>9.3f} ±{r['acc_stderr']:.3f}"
                f"{r['acc_norm']:>9.3f} ±{r['acc_norm_stderr']:.3f}{r['bpb']:>8.3f}"
            )
    return 0
