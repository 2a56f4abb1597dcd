"""Retrieval quality on ../shared/data.

Two modes:

* default (random records held out): build the four task indexes from the gold files, score the
  corpus files with held-out gold records of each task mixed in, and report per task the ROC-AUC
  and precision at N of the task's own records against the corpus and the other tasks.
* ``--cross-source`` (whole sources held out, ``retriever/holdout.py``): per task the ``gold``
  role builds the index (and its sparse index), the ``train`` corpus plus the other tasks' gold
  train the learned heads, and the test set is every task's ``heldout`` records mixed into the
  ``test`` corpus (``--test-limit`` documents, seeded). Per task and scoring variant (max cosine,
  mean top-k, sparse, sparse top-k, hybrid, the head without words ("dense"), the head, a
  fastText student on the heads' labels and a TF-IDF 1-2 gram max-cosine baseline fitted on the
  same gold): ROC-AUC and P@N (N = the task's
  held-out count) with stratified bootstrap 95% intervals. Embeddings are cached on disk
  (``--cache``), so a rerun re-embeds nothing.

    .venv/bin/python scripts/eval_quality.py --holdout 100 --gold-limit 1000 [--json]
    .venv/bin/python scripts/eval_quality.py --cross-source [--test-limit 1500 --seed 0 --boot 1000]
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
from retriever.names import SCORE, TOPK, score_name
from retriever.score import read_scores, score_corpus
from retriever.score.evaluate import holdout_split, retrieval_metrics

TASKS = {
    "function-calling": "function_calling",
    "roleplay": "roleplay",
    "rag": "rag",
    "reasoning": "reasoning",
}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--holdout", type=int, default=100, help="held-out gold records per task")
    ap.add_argument(
        "--gold-limit",
        type=int,
        default=None,
        help="gold records indexed per task (default 1000; cross-source: all of the gold role)",
    )
    ap.add_argument(
        "--corpus-limit", type=int, default=None, help="corpus documents per corpus file"
    )
    ap.add_argument("--work", help="work folder (default: a temp folder)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--cross-source", action="store_true", help="hold out whole sources (holdout.py)"
    )
    ap.add_argument(
        "--test-limit", type=int, default=1500, help="test corpus documents (cross-source)"
    )
    ap.add_argument("--seed", type=int, default=0, help="test corpus sample and bootstrap seed")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples (cross-source)")
    ap.add_argument(
        "--cache", default="runs/eval_cache", help="embedding cache folder (cross-source)"
    )
    ap.add_argument(
        "--out",
        default="runs/eval_cross_source",
        help="work folder and results.json (cross-source)",
    )
    ap.add_argument(
        "--no-fasttext", action="store_true", help="skip the fastText student (cross-source)"
    )
    ap.add_argument(
        "--plant",
        type=int,
        default=0,
        metavar="N",
        help="cross-source: plant N held-out records per task among the heads' corpus negatives "
        "(as `retriever run` samples negatives from the corpus it scores) and report how the "
        "planted rank among the train corpus (the main table then has seen them)",
    )
    args = ap.parse_args()
    if args.cross_source:
        cross_source(args)
        return

    data = Path(args.data)
    work = Path(args.work or tempfile.mkdtemp(prefix="eval_quality_"))
    emb = load_embedder()
    t0 = time.perf_counter()
    # 1. indexes from the gold files, held-out records kept aside
    heldout: dict[str, list[str]] = {}
    for task, sub in TASKS.items():
        gold, heldout[task] = holdout_split(
            load_gold([str(data / "gold" / sub)]), args.holdout, args.gold_limit or 1000
        )
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
    summary = score_corpus(
        [str(work / "indexes" / t) for t in TASKS], [str(corpus)], work / "scores", store=None
    )
    tbl = read_scores(work / "scores").to_pydict()
    label = np.array([i.split("/")[1] if i.startswith("heldout/") else "corpus" for i in tbl["id"]])
    metrics = retrieval_metrics(label, {t: np.array(tbl[score_name(SCORE, t)]) for t in TASKS})
    metrics_topk = retrieval_metrics(label, {t: np.array(tbl[score_name(TOPK, t)]) for t in TASKS})
    result = {
        "docs": summary["scored"],
        "corpus_docs": int((label == "corpus").sum()),
        "heldout_per_task": args.holdout,
        "gold_indexed_per_task": args.gold_limit or 1000,
        "seconds": round(time.perf_counter() - t0, 1),
        "max_cosine": metrics,
        "mean_topk_cosine": metrics_topk,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['docs']} documents scored ({result['corpus_docs']} corpus + {args.holdout} "
        f"held-out per task), {result['seconds']} s"
    )
    print(
        f"{'task':<18}{'score':<7}{'AUC all':>9}{'AUC corpus':>12}{'AUC tasks':>11}{'P@N all':>9}"
        f"{'P@N corpus':>12}"
    )
    for name, m in (("max", metrics), ("topk", metrics_topk)):
        for t, r in m.items():
            print(
                f"{t:<18}{name:<7}{r['roc_auc']:>9.4f}{r['roc_auc_vs_corpus']:>12.4f}{r['roc_auc_vs_other_tasks']:>11.4f}"
                f"{r['precision_at_n']:>9.3f}{r['precision_at_n_vs_corpus']:>12.3f}"
            )


VARIANTS = {  # name in the table -> what it is
    "cos": "max cosine (score_TASK before)",
    "topk": "mean top-10 cosine",
    "sparse": "TF-IDF max cosine (sparse index)",
    "sparse_topk": "TF-IDF mean top-10 (sparse index)",
    "hybrid": "learned combination of the 4 scores",
    "dense": "learned head without words: vector + 4 scores",
    "head": "learned head: vector + 4 scores + words",
    "fasttext": "fastText student, same labels as the head",
    "tfidf_baseline": "TF-IDF 1-2 gram max cosine (plain scikit-learn)",
}


def cross_source(args) -> None:
    """The ``--cross-source`` evaluation (see the module docstring)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _embed_cache import CachedEmbedder

    from retriever.holdout import TASKS as SPLIT_TASKS
    from retriever.holdout import load_split
    from retriever.index import build_index, load_indexes
    from retriever.index.head import DENSE, MODELS
    from retriever.index.hybrid import load_extras, train_heads
    from retriever.score.evaluate import bootstrap_metrics
    from retriever.score.scorer import SimilarityScorer

    t0 = time.perf_counter()
    work = Path(args.out)
    split = load_split(args.data, test_corpus_limit=args.test_limit, seed=args.seed)
    split.write(work / "split")
    if args.gold_limit:  # the first records of each task's gold role (speed on a shared CPU)
        for task in SPLIT_TASKS:
            path = work / "split" / "gold" / f"{task}.jsonl"
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            path.write_text("".join(lines[: args.gold_limit]), encoding="utf-8")
    emb = CachedEmbedder(load_embedder(), args.cache)
    timings = {}
    # 1. an index (+ sparse index) per task from its gold role only
    dirs = {}
    for task in SPLIT_TASKS:
        dirs[task] = str(work / "indexes" / task)
        build_index(
            task,
            gold=[str(work / "split" / "gold" / f"{task}.jsonl")],
            out=dirs[task],
            indexes_dir=work / "specs",
            embedder=emb,
        )
    timings["indexes_s"] = round(time.perf_counter() - t0, 1)
    print(f"indexes built: {timings['indexes_s']} s", file=sys.stderr, flush=True)
    # 2. heads: gold positives, train corpus + other tasks' gold negatives
    train_texts = [r.text for r in split.corpus("train")]
    planted = []  # (task, text) planted among the negatives (--plant)
    rng = np.random.default_rng(args.seed)
    for task in SPLIT_TASKS if args.plant else ():
        held = split.records(task, "heldout")
        planted += [(task, held[i].text) for i in rng.choice(len(held), args.plant, replace=False)]
    models = {**MODELS, "dense": DENSE}  # dense: the head without words, for the table
    train_heads(
        list(dirs.values()),
        train_texts + [x for _, x in planted],
        emb,
        sources=["holdout corpus role 'train'"],
        models=models,
    )
    timings["heads_s"] = round(time.perf_counter() - t0 - timings["indexes_s"], 1)
    print(f"heads trained: {timings['heads_s']} s", file=sys.stderr, flush=True)
    # 3. the test set: every task's held-out records + the test corpus
    test = [(task, r) for task in SPLIT_TASKS for r in split.records(task, "heldout")]
    test += [("corpus", r) for r in split.corpus("test")]
    label = np.array([lab for lab, _ in test])
    texts = [r.text for _, r in test]
    indexes = load_indexes(list(dirs.values()))
    scorer = SimilarityScorer(
        indexes, emb, k=10, extras={t: load_extras(d) for t, d in dirs.items()}
    )
    cols = {v: {} for v in VARIANTS}
    parts = [scorer.score_texts(texts[i : i + 1024]) for i in range(0, len(texts), 1024)]
    for task in SPLIT_TASKS:
        cols["cos"][task] = np.concatenate([p.max[task] for p in parts])
        cols["topk"][task] = np.concatenate([p.topk[task] for p in parts])
        for c in ("sparse", "sparse_topk", "hybrid", "dense", "head"):
            cols[c][task] = np.concatenate([p.extra[c][task] for p in parts])
    print(f"test set scored: {round(time.perf_counter() - t0, 1)} s", file=sys.stderr, flush=True)
    # 4. references: fastText on the heads' labels, plain TF-IDF over the same gold
    golds = {t: indexes[t].texts for t in SPLIT_TASKS}
    for task in SPLIT_TASKS:
        cols["tfidf_baseline"][task] = tfidf_baseline(golds[task], texts)
        if not args.no_fasttext:
            neg = train_texts + [x for o in SPLIT_TASKS if o != task for x in golds[o]]
            cols["fasttext"][task] = fasttext_student(golds[task], neg, texts, args.seed)
            print(
                f"fastText {task}: {round(time.perf_counter() - t0, 1)} s",
                file=sys.stderr,
                flush=True,
            )
    if args.no_fasttext:
        del cols["fasttext"]
    timings["scoring_s"] = round(
        time.perf_counter() - t0 - timings["indexes_s"] - timings["heads_s"], 1
    )
    metrics = {v: bootstrap_metrics(label, cols[v], n_boot=args.boot, seed=args.seed) for v in cols}
    if planted:  # the planted among the train corpus: what a run's candidates would see
        p_label = np.array(["corpus"] * len(train_texts) + [t for t, _ in planted])
        p_parts = scorer.score_texts(train_texts + [x for _, x in planted])
        p_cols = {
            "cos": p_parts.max,
            **{c: p_parts.extra[c] for c in ("hybrid", "dense", "head")},
        }
        metrics_planted = {
            v: bootstrap_metrics(p_label, p_cols[v], n_boot=args.boot, seed=args.seed)
            for v in p_cols
        }
    result = {
        "split": {
            t: {
                "gold": len(split.records(t, "gold")),
                "gold_indexed": indexes[t].ntotal,
                "heldout": len(split.records(t, "heldout")),
            }
            for t in SPLIT_TASKS
        },
        "gold_limit": args.gold_limit,
        "test_corpus": int((label == "corpus").sum()),
        "test_docs": len(label),
        "train_corpus": len(train_texts),
        "seed": args.seed,
        "boot": args.boot,
        "embedding_cache": {"hits": emb.hits, "misses": emb.misses},
        "seconds": round(time.perf_counter() - t0, 1),
        **timings,
        "variants": VARIANTS,
        "metrics": metrics,
        **({"plant": args.plant, "metrics_planted": metrics_planted} if planted else {}),
    }
    (work / "results.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"cross-source: {len(label)} test documents ({result['test_corpus']} test corpus + "
        f"held-out { {t: v['heldout'] for t, v in result['split'].items()} }), {result['seconds']} "
        f"s (embedding cache {emb.hits} hits / {emb.misses} misses); 95% bootstrap intervals, "
        f"{args.boot} resamples"
    )
    print("| task | variant | ROC-AUC [95% CI] | P@N [95% CI] |\n|---|---|---|---|")
    for task in SPLIT_TASKS:
        for v in cols:
            m = metrics[v][task]
            print(
                f"| {task} | {v} | {m['roc_auc']:.4f} [{m['roc_auc_ci'][0]:.4f}, "
                f"{m['roc_auc_ci'][1]:.4f}] | {m['precision_at_n']:.3f} "
                f"[{m['precision_at_n_ci'][0]:.3f}, {m['precision_at_n_ci'][1]:.3f}] |"
            )
    if planted:
        print(
            f"\n{args.plant} held-out records per task planted among the heads' negatives; "
            f"ranked among the {len(train_texts)} train corpus documents (P@N, N = {args.plant}):"
        )
        print("| task | variant | ROC-AUC [95% CI] | P@N [95% CI] |\n|---|---|---|---|")
        for task in SPLIT_TASKS:
            for v, mv in metrics_planted.items():
                m = mv[task]
                print(
                    f"| {task} | {v} | {m['roc_auc']:.4f} [{m['roc_auc_ci'][0]:.4f}, "
                    f"{m['roc_auc_ci'][1]:.4f}] | {m['precision_at_n']:.3f} "
                    f"[{m['precision_at_n_ci'][0]:.3f}, {m['precision_at_n_ci'][1]:.3f}] |"
                )
    print(f"results: {work / 'results.json'}")


def tfidf_baseline(gold: list[str], texts: list[str]) -> np.ndarray:
    """Plain scikit-learn TF-IDF (word 1-2 grams, defaults otherwise) fitted on the gold: max
    cosine."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2)).fit(gold)
    G, X = vec.transform(gold), vec.transform(texts)
    return np.asarray((X @ G.T).max(axis=1).toarray()).ravel()


def fasttext_student(pos: list[str], neg: list[str], texts: list[str], seed: int) -> np.ndarray:
    """A fastText student (the distill stage's defaults) on the head's labels: P(task) per text."""
    import fasttext

    from retriever.distill.labels import fasttext_text
    from retriever.distill.train import LABEL_PREFIX, DistillConfig

    rows = [(1, t) for t in pos] + [(0, t) for t in neg]
    order = np.random.default_rng(seed).permutation(len(rows))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        with open(path, "w", encoding="utf-8") as fh:
            for i in order:
                y, t = rows[i]
                fh.write(f"{LABEL_PREFIX}{'positive' if y else 'negative'} {fasttext_text(t)}\n")
        model = fasttext.train_supervised(
            input=str(path), **DistillConfig(seed=seed).fasttext_args()
        )
    labels, probs = model.predict([fasttext_text(t) for t in texts], k=2)
    return np.array(
        [
            dict(zip(lab, p, strict=True)).get(LABEL_PREFIX + "positive", 0.0)
            for lab, p in zip(labels, probs, strict=True)
        ]
    )


if __name__ == "__main__":
    main()
