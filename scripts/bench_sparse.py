"""Benchmark of hybrid scoring: what the sparse index and the learned head add to the score stage.

In one process, on the shared ClimbLab documents, with the four task indexes of the cross-source
evaluation (``scripts/eval_quality.py --cross-source`` writes them, sparse index and head
included, under ``runs/eval_cross_source/indexes``), paired block by block (every variant runs on
the same block right after the others, order rotating per block; ratios of summed times):

1. ``baseline``: plain ``SentenceTransformer.encode`` (torch fp32) + numpy max / mean top-k
   against the four gold matrices (the reference of ``scripts/bench_score.py``);
2. ``dense``: :class:`SimilarityScorer` without the extras (embedding + FAISS, as before);
3. ``hybrid``: the same scorer with every index's sparse index and head (what ``retriever score``
   runs now: ``score_``, ``cos_``, ``topk_``, ``sparse_``, ``sparse_topk_``, ``hybrid_``,
   ``head_`` columns).

Overhead of the extras = ``hybrid`` time / ``dense`` time - 1 (goal: under 10%), and directly: the
seconds spent in the extras (``extras_ms``) against the seconds spent embedding (``embed_ms``).

    .venv/bin/python scripts/bench_sparse.py --docs 128 --block 32 [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_score import baseline_scores, print_table, read_docs  # noqa: E402

from retriever import bench  # noqa: E402

bench.offline_defaults()


def main() -> None:
    ap = bench.parser(__doc__)
    ap.add_argument("--data", default=str(bench.SHARED))
    ap.add_argument(
        "--indexes",
        default="runs/eval_cross_source/indexes",
        help="folder of task index folders with sparse/ and head/",
    )
    ap.add_argument("--docs", type=int, default=128)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument(
        "--no-baseline", action="store_true", help="skip plain SentenceTransformer.encode"
    )
    args, report = bench.start(ap, "bench_sparse")  # conditions before / after

    from retriever.embed import load_embedder
    from retriever.index import load_indexes
    from retriever.index.hybrid import load_extras
    from retriever.score.scorer import SimilarityScorer

    root = Path(args.indexes)
    dirs = (
        sorted(str(p) for p in root.iterdir() if (p / "manifest.json").is_file())
        if root.is_dir()
        else []
    )
    extras = {Path(d).name: load_extras(d) for d in dirs}
    if not dirs or any(e.head is None for e in extras.values()):
        sys.exit(
            f"{root} needs index folders with sparse/ and head/: run "
            "`scripts/eval_quality.py --cross-source` first (or pass --indexes)"
        )
    texts = read_docs(Path(args.data), args.docs)
    emb = load_embedder()
    indexes = load_indexes(dirs)
    extras = {gi.task: load_extras(d) for gi, d in zip(indexes.values(), dirs, strict=True)}
    k = int(next(iter(extras.values())).head.manifest.get("k", 10))
    dense = SimilarityScorer(indexes, emb, k=k, sort_buffer=args.block)
    hybrid = SimilarityScorer(indexes, emb, k=k, sort_buffer=args.block, extras=extras)
    calls = {
        "dense: SimilarityScorer, embed + FAISS x4": lambda t: dense.score_texts(t).vectors,
        "hybrid: + sparse x4 + head/hybrid x4": lambda t: hybrid.score_texts(t).vectors,
    }
    base = "dense: SimilarityScorer, embed + FAISS x4"
    if not args.no_baseline:
        st = emb._model  # the torch SentenceTransformer under the default embedder (fp32 on CPU)
        gold = {t: gi.index.reconstruct_n(0, gi.ntotal) for t, gi in indexes.items()}
        clip = hybrid.clip_chars
        calls = {
            "baseline: ST encode (torch fp32) + numpy x4": lambda t: baseline_scores(
                st, [x[:clip] for x in t], gold, k, 64
            )[0],
            **calls,
        }
        base = "baseline: ST encode (torch fp32) + numpy x4"
    bench.log(
        f"{len(texts)} documents, blocks of {args.block}, {len(dirs)} tasks, backend {emb.backend}"
    )
    with bench.busy_load(args.busy):  # --busy N: the same run under N competing spinners
        res = bench.paired_blocks(calls, texts, args.block, args.passes, base)
    print_table(
        f"hybrid scoring, {len(texts)} ClimbLab documents x {args.passes} pass(es)",
        res,
        res[base]["out"] if not args.no_baseline else None,
    )
    d, h = (
        res["dense: SimilarityScorer, embed + FAISS x4"],
        res["hybrid: + sparse x4 + head/hybrid x4"],
    )
    overhead = h["seconds"] / d["seconds"] - 1
    c = hybrid.stats.counts
    direct = c["extras_ms"] / max(1, c["embed_ms"])
    print(
        f"\nextras overhead: hybrid / dense time - 1 = {overhead:+.1%} (paired); "
        f"extras {c['extras_ms'] / 1000:.2f} s vs embedding {c['embed_ms'] / 1000:.2f} s inside "
        f"the hybrid scorer = {direct:.1%}"
    )
    if not args.no_baseline:
        print(
            "hybrid scorer vs plain SentenceTransformer.encode: "
            f"{res[base]['seconds'] / h['seconds']:.2f}x"
        )
    if args.json:
        out = {n: {k2: v for k2, v in r.items() if k2 != "out"} for n, r in res.items()}
        out["extras_overhead_paired"] = overhead
        out["extras_over_embed_direct"] = direct
        report.data.update(out)
    report.finish(args.json)


if __name__ == "__main__":
    main()
