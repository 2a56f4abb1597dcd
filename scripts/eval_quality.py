"""Retrieval quality on ../shared/data: build the four task indexes from the gold files, score the
corpus files with held-out gold records of each task mixed in, and report per task the ROC-AUC and
precision at N of the task's own records against the corpus and the other tasks.

    .venv/bin/python scripts/eval_quality.py --holdout 100 --gold-limit 1000 [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from retriever.corpus import list_shards
from retriever.embed import load_embedder
from retriever.gold import load_gold
from retriever.index import GoldIndex
from retriever.score import read_scores, score_corpus
from retriever.score.evaluate import holdout_split, retrieval_metrics

TASKS = {"function-calling": "function_calling", "roleplay": "roleplay", "rag": "rag", "reasoning": "reasoning"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--holdout", type=int, default=100, help="held-out gold records per task")
    ap.add_argument("--gold-limit", type=int, default=1000, help="gold records indexed per task")
    ap.add_argument("--corpus-limit", type=int, default=None, help="corpus documents per corpus file")
    ap.add_argument("--work", help="work folder (default: a temp folder)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    data = Path(args.data)
    work = Path(args.work or tempfile.mkdtemp(prefix="eval_quality_"))
    emb = load_embedder()
    t0 = time.perf_counter()
    # 1. indexes from the gold files, held-out records kept aside
    heldout: dict[str, list[str]] = {}
    for task, sub in TASKS.items():
        gold, heldout[task] = holdout_split(load_gold([str(data / "gold" / sub)]), args.holdout, args.gold_limit)
        GoldIndex.build(task, gold, emb).save(work / "indexes" / task)
    # 2. an evaluation corpus: the corpus files + every task's held-out records, labelled
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    with open(corpus / "heldout.jsonl", "w") as fh:
        for task, texts in heldout.items():
            for i, t in enumerate(texts):
                fh.write(json.dumps({"id": f"heldout/{task}/{i}", "text": t}) + "\n")
    for src in list_shards([str(data / "corpus")]):
        with open(src) as fin, open(corpus / Path(src).name, "w") as fout:
            for i, line in enumerate(fin):
                if args.corpus_limit is not None and i >= args.corpus_limit:
                    break
                fout.write(line)
    # 3. score and measure
    summary = score_corpus([str(work / "indexes" / t) for t in TASKS], [str(corpus)], work / "scores", store=None)
    tbl = read_scores(work / "scores").to_pydict()
    label = np.array([i.split("/")[1] if i.startswith("heldout/") else "corpus" for i in tbl["id"]])
    metrics = retrieval_metrics(label, {t: np.array(tbl[f"score_{t}"]) for t in TASKS})
    metrics_topk = retrieval_metrics(label, {t: np.array(tbl[f"topk_{t}"]) for t in TASKS})
    result = {"docs": summary["scored"], "corpus_docs": int((label == "corpus").sum()),
              "heldout_per_task": args.holdout, "gold_indexed_per_task": args.gold_limit,
              "seconds": round(time.perf_counter() - t0, 1), "max_cosine": metrics, "mean_topk_cosine": metrics_topk}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['docs']} documents scored ({result['corpus_docs']} corpus + {args.holdout} held-out per task), "
          f"{result['seconds']} s")
    print(f"{'task':<18}{'score':<7}{'AUC all':>9}{'AUC corpus':>12}{'AUC tasks':>11}{'P@N all':>9}{'P@N corpus':>12}")
    for name, m in (("max", metrics), ("topk", metrics_topk)):
        for t, r in m.items():
            print(f"{t:<18}{name:<7}{r['roc_auc']:>9.4f}{r['roc_auc_vs_corpus']:>12.4f}{r['roc_auc_vs_other_tasks']:>11.4f}"
                  f"{r['precision_at_n']:>9.3f}{r['precision_at_n_vs_corpus']:>12.3f}")


if __name__ == "__main__":
    main()
