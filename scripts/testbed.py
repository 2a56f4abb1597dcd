"""Planted testbed: does the pipeline's selection teach more than random or similarity selection?

Recipe (all library calls; see docs/evaluation-arms.md for the figures it printed):

1. The cross-source split of ``../shared/data`` (:mod:`retriever.holdout`): per task ``gold``
   (indexes, panel, students), ``eval`` (what proxies are scored on) and ``planted`` (records in
   neither), disjoint by construction and checked.
2. A corpus of ``--corpus-docs`` ClimbLab + WikiText documents (seeded subsample of the split's
   ``train`` corpus) with ``--planted`` records per task planted in it (ids ``planted:<task>:...``).
3. ``retriever run`` on it (``OUT/testbed.toml``, a small offline config: tiny panel, top 10%
   similarity candidates, top 15% of tokens per task filtered, ``--budget`` tokens dataset).
4. ``retriever evaluate``: arms random, similarity and pipeline, ``--seeds`` tiny byte-level
   proxies each, scored on the ``eval`` records through lm-eval (acc / acc_norm; the ELMB sets
   for function calling and reasoning, multiple choice derived from the held-out records for
   roleplay and RAG: :func:`retriever.evaluation.elmb.local_eval_sets`) and their BPB.
5. Per task and arm: the share of the planted records the arm's dataset holds, and the proxies'
   BPB and acc_norm with intervals (the evaluate table). ``OUT/testbed.json`` keeps everything.

Rerunning the same command redoes only what is missing (the run's steps and the proxies are
cached), so a killed measurement resumes.

    .venv/bin/python scripts/testbed.py --out runs/testbed            # sized for a 2-core box
    shared by 8 jobs .venv/bin/python scripts/testbed.py --out runs/testbed --device cuda
    --proxy-tokens 20000000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASKS = ("function-calling", "reasoning", "roleplay", "rag")


def unit_hash(key: str, seed: int) -> float:
    h = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    tmp.replace(path)


def build_testbed(args) -> dict:
    """Split, corpus with planted records, config. Returns the planted ids per task."""
    from retriever.holdout import load_split

    out = Path(args.out)
    split = load_split(args.data)
    split.write(out / "split")
    train = sorted(split.corpus("train"), key=lambda r: unit_hash(r.id, args.seed))
    wiki = [r for r in train if "wikitext" in r.source][: args.wiki_docs]
    climb = [r for r in train if "wikitext" not in r.source][: args.corpus_docs - len(wiki)]
    docs = [{"id": r.id, "text": r.text, "source": r.source} for r in climb + wiki]
    planted: dict[str, list[str]] = {}
    for t in TASKS:
        recs = sorted(split.records(t, "planted"), key=lambda r: unit_hash(r.id, args.seed))
        recs = recs[: args.planted]
        planted[t] = [f"planted:{t}:{r.id}" for r in recs]
        docs += [{"id": f"planted:{t}:{r.id}", "text": r.text, "source": r.source} for r in recs]
    docs.sort(key=lambda d: unit_hash(d["id"], args.seed + 1))  # planted records spread through
    write_jsonl(out / "corpus" / "corpus.jsonl", docs)
    proxy = {
        "tokens": args.proxy_tokens,
        "seq_len": 256,
        "n_layer": 2,
        "n_embd": 64,
        "n_head": 2,
        "batch_size": 8,
        "lr": 3e-3,
        "threads": args.threads,
    }
    tasks = "".join(
        f'[tasks.{t}]\ngold = ["./split/gold/{t}.jsonl"]\ngold_limit = {args.gold_limit}\n\n'
        for t in TASKS
    )
    eval_data = ", ".join(f'"{t}" = "./eval/{t}.jsonl"' for t in TASKS)
    proxy_toml = ", ".join(f"{k} = {json.dumps(v)}" for k, v in proxy.items())
    (out / "testbed.toml").write_text(
        f"""# written by scripts/testbed.py: the planted testbed's run (paths relative to this file)
[run]
out = "./run"
seed = {args.seed}

{tasks}[corpus]
paths = ["./corpus"]

[score]
k = 10
top_fraction = {args.top_fraction}

[confirm]
panel = "tiny"
tiny_models = {args.panel_models}
tiny_steps = {args.panel_steps}
scorecard_kind = "text"
estimator = "spearman"
positive_min = 0.3
negative_max = 0.0
negatives_per_positive = 1.0

[distill]
epoch = 10
test_fraction = 0.25

[filter]
top_fraction = 0.15
by = "tokens"
format = "jsonl.gz"

[dataset]
budget = "{args.budget}"
mixture = "equal"
order = "top"

[evaluate]
arms = ["random", "similarity", "pipeline"]
seeds = {args.seeds}
eval_data = {{{eval_data}}}
eval_limit = {args.eval_limit}
device = "{args.device}"
proxy = {{{proxy_toml}}}
"""
    )
    n_planted = sum(map(len, planted.values()))
    chars = sum(len(d["text"]) for d in docs)
    planted_chars = sum(len(d["text"]) for d in docs if d["id"].startswith("planted:"))
    return {
        "planted": planted,
        "docs": len(docs),
        "planted_docs": n_planted,
        "planted_doc_share": n_planted / len(docs),
        "planted_char_share": planted_chars / chars,
        "split_counts": split.counts(),
    }


def planted_shares(eval_out: Path, arms: list[str], planted: dict[str, list[str]]) -> dict:
    """Per arm and task: planted records in the arm's dataset / planted records."""
    import pyarrow.parquet as pq

    out = {}
    for arm in arms:
        ids = set(
            pq.read_table(eval_out / "datasets" / arm / "selection.parquet", columns=["id"])
            .column("id")
            .to_pylist()
        )
        out[arm] = {t: sum(i in ids for i in p) / len(p) for t, p in planted.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "runs" / "testbed"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--corpus-docs", type=int, default=700, help="ClimbLab + WikiText documents")
    ap.add_argument("--wiki-docs", type=int, default=30, help="of which WikiText articles")
    ap.add_argument("--planted", type=int, default=12, help="planted records per task")
    ap.add_argument("--gold-limit", type=int, default=300, help="gold records per task index")
    ap.add_argument("--top-fraction", type=float, default=0.05, help="similarity candidates")
    ap.add_argument("--panel-models", type=int, default=3)
    ap.add_argument("--panel-steps", type=int, default=40)
    ap.add_argument("--budget", default="60k", help="tokens per arm's dataset (bytes / 4)")
    ap.add_argument("--proxy-tokens", type=int, default=30_000, help="byte tokens per proxy")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of proxy training")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--eval-limit", type=int, default=20, help="evaluation records per task")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-evaluate", action="store_true", help="build and run the pipeline only")
    args = ap.parse_args(argv)

    from retriever.arms import evaluate_run, format_table
    from retriever.arms.run import stderr_progress
    from retriever.run.config import load_run_config
    from retriever.run.job import RunJob, format_run_summary

    out = Path(args.out)
    t0 = time.perf_counter()
    bed = build_testbed(args)
    print(
        f"testbed: {bed['docs']} documents, {bed['planted_docs']} planted "
        f"({bed['planted_doc_share']:.1%} of documents, {bed['planted_char_share']:.1%} of "
        f"characters) -> {out / 'testbed.toml'}",
        file=sys.stderr,
    )
    cfg = load_run_config(out / "testbed.toml")
    t1 = time.perf_counter()
    outcomes = RunJob(cfg, progress=False).run()
    print(format_run_summary(cfg, outcomes), file=sys.stderr)
    t2 = time.perf_counter()
    if args.no_evaluate:
        return 0
    from retriever.evaluation.elmb import local_eval_sets

    # the split's eval role as multiple choice (ELMB sets; derived ones for roleplay and RAG)
    local_eval_sets(out / "eval", data_dir=args.data, seed=args.seed)
    res = evaluate_run(out / "testbed.toml", on_proxy=stderr_progress)
    t3 = time.perf_counter()
    s = res.summary
    shares = planted_shares(res.out, s["settings"]["arms"], bed["planted"])
    print(format_table(s))
    print(f"\nshare of the planted records in each arm's dataset ({args.planted} per task):")
    print(f"{'task':<18}" + "".join(f"{a:>12}" for a in shares))
    for t in TASKS:
        print(f"{t:<18}" + "".join(f"{shares[a][t]:>12.2f}" for a in shares))
    cost = {
        "pipeline_run_minutes": (t2 - t1) / 60,
        "evaluate_minutes": (t3 - t2) / 60,
        "total_minutes": (t3 - t0) / 60,
        "run_steps": {o.name: round(o.seconds, 1) for o in outcomes},
    }
    print(
        f"\ncost: run {cost['pipeline_run_minutes']:.1f} min, evaluate "
        f"{cost['evaluate_minutes']:.1f} min, total {cost['total_minutes']:.1f} min"
    )
    report = {
        "testbed": {k: v for k, v in bed.items() if k != "planted"},
        "args": vars(args),
        "planted_share": shares,
        "evaluate": s,
        "cost": cost,
    }
    (out / "testbed.json").write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
