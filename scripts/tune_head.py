"""Choose the learned head's settings by cross-validation whose folds hold out whole sources.

The cross-source table (``scripts/eval_quality.py --cross-source``) is the test: nothing in it may
pick a setting. This script picks them on the training side of the same split only
(``retriever/holdout.py``'s ``gold`` roles and ``train`` corpus), with 4 folds that each hold out:

* one roleplay character (Socrates, Spartacus, Hermione, Martin Luther King: the gold has four);
* a quarter of the corpus by source (ClimbLab clusters ``cluster_id % 4``; WikiText in fold 1;
  the ClimbLab stream file split between folds 2 and 3);
* TinyAgent (fold 0), and a seeded quarter of xLAM, GSM8K and PubMedQA (each one source only).

A held-out fold's gold rows are removed from the task's nearest-neighbour and sparse scores too
(max / mean top-k over the remaining gold), so a held-out character is scored against the other
characters only, as an unseen source would be. Per setting: mean over folds of ROC-AUC and P@N
(N = the task's records in the fold) of each task's head, trained on the other folds with
:func:`retriever.index.head.fit_linear`.

    .venv/bin/python scripts/eval_quality.py --cross-source      # builds runs/eval_cross_source
    .venv/bin/python scripts/tune_head.py --indexes runs/eval_cross_source/indexes \\
        --grid "c=0.1,1 words_scale=0,10,100,300"
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _embed_cache import CachedEmbedder  # noqa: E402

from retriever.embed import load_embedder  # noqa: E402
from retriever.holdout import TASKS, load_split  # noqa: E402
from retriever.index import load_indexes  # noqa: E402
from retriever.index.head import DENSE, HeadConfig, fit_linear  # noqa: E402
from retriever.index.hybrid import gold_vectors, load_extras  # noqa: E402
from retriever.index.sparse import TermWeights  # noqa: E402
from retriever.metrics import roc_auc  # noqa: E402

FOLDS = 4
CHARACTERS = {
    "Socrates": 0,
    "Spartacus": 1,
    "Hermonie": 2,
    "Hermione Granger": 2,
    "Martin": 3,
    "Martin Luther King Jr.": 3,
}


def _h(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=4).digest(), "big")


def _top(M: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    part = -np.partition(-M, k - 1, axis=1)[:, :k]  # [n, k] the k largest
    return part.max(axis=1), part.mean(axis=1)


def precision_at_n(y: np.ndarray, s: np.ndarray) -> float:
    n = int(y.sum())
    return float(y[np.argsort(-s, kind="stable")[:n]].mean())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--indexes", default="runs/eval_cross_source/indexes")
    ap.add_argument("--cache", default="runs/eval_cache")
    ap.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    ap.add_argument("--grid", default="c=1 words_scale=0,100", help='"c=... words_scale=..."')
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--json", help="write the table here")
    args = ap.parse_args()
    grid = dict(kv.split("=") for kv in args.grid.split())
    cs = [float(x) for x in grid.get("c", "1").split(",")]
    scales = [float(x) for x in grid.get("words_scale", "100").split(",")]

    split = load_split(args.data)
    emb = CachedEmbedder(load_embedder(), args.cache)
    clip = emb.clip_chars
    dirs = {t: str(Path(args.indexes) / t) for t in TASKS}
    idx = load_indexes(list(dirs.values()))
    sparse = {t: load_extras(d).sparse for t, d in dirs.items()}
    # rows: every task's gold (index order), then the train corpus
    texts, label, fold, own, vecs = [], [], [], [], []
    for t in TASKS:
        by_text = {r.text: r for r in split.records(t, "gold")}
        vecs.append(gold_vectors(idx[t]))
        for j, x in enumerate(idx[t].texts):
            r = by_text[x]
            if t == "roleplay":
                f = CHARACTERS[r.raw["character"]]
            elif "tinyagent" in r.source:
                f = 0
            else:
                f = _h(x) % FOLDS
            texts.append(x[:clip]), label.append(t), fold.append(f), own.append(j)
    train = split.corpus("train")
    for r in train:
        if "cluster_id" in r.raw:
            f = int(r.raw["cluster_id"]) % FOLDS
        elif "wikitext" in r.source:
            f = 1
        else:
            f = 2 + _h(r.id) % 2
        texts.append(r.text[:clip]), label.append("corpus"), fold.append(f), own.append(-1)
    vecs.append(emb.encode([r.text[:clip] for r in train]))
    X = np.concatenate(vecs).astype(np.float32)  # [n, dim]
    label, fold, own = np.array(label), np.array(fold), np.array(own)
    dense = {t: X @ X[label == t].T for t in TASKS}  # [n, n_gold(t)] cosine
    lexical = {
        t: (sparse[t].transform(texts) @ sparse[t].gold.T).toarray() for t in TASKS
    }  # [n, n_gold(t)] TF-IDF cosine
    for t in TASKS:  # a gold row never scores against itself (leave-one-out)
        rows = np.flatnonzero(label == t)
        dense[t][rows, own[rows]] = lexical[t][rows, own[rows]] = -np.inf

    def scores(t: str, held: int) -> np.ndarray:
        """``[n, 4]`` max / top-k cosine and TF-IDF cosine against the gold outside ``held``."""
        cols = fold[label == t] != held
        a, b = _top(dense[t][:, cols], args.k)
        c, d = _top(lexical[t][:, cols], args.k)
        return np.c_[a, b, c, d]

    table = []
    for c, scale in itertools.product(cs, scales):
        cfg = HeadConfig(c=c, words_scale=max(scale, 1e-12), folds=2)
        features = (*DENSE, "words") if scale > 0 else DENSE
        per_task = {t: [] for t in TASKS}
        for held in range(FOLDS):
            tr, te = fold != held, fold == held
            words = TermWeights.fit(
                [x for x, m in zip(texts, tr, strict=True) if m], cfg.vocabulary()
            )
            W = words.transform(texts)
            for t in TASKS:
                Z = np.hstack([X, scores(t, held)]).astype(np.float64)
                y = (label == t).astype(int)
                m = fit_linear(Z[tr], y[tr], features, cfg, W[tr] if scale > 0 else None)
                s = m.decision(Z[te], W[te] if scale > 0 else None)
                per_task[t].append((roc_auc(y[te], s), precision_at_n(y[te], s)))
        row = {"c": c, "words_scale": scale}
        for t, v in per_task.items():
            row[t] = {
                "roc_auc": float(np.mean([a for a, _ in v])),
                "p_at_n": float(np.mean([p for _, p in v])),
            }
        row["mean_p_at_n"] = float(np.mean([row[t]["p_at_n"] for t in TASKS]))
        table.append(row)
        print(
            f"c={c:g} words_scale={scale:g}: "
            + "  ".join(f"{t} {row[t]['roc_auc']:.4f}/{row[t]['p_at_n']:.3f}" for t in TASKS)
            + f"  | mean P@N {row['mean_p_at_n']:.4f}",
            flush=True,
        )
    best = max(table, key=lambda r: r["mean_p_at_n"])
    print(
        f"best by mean P@N over the source-held-out folds: c={best['c']:g} "
        f"words_scale={best['words_scale']:g}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
