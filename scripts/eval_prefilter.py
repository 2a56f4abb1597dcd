"""What the keyword prefilter passes, what it keeps of the task data, and what it costs.

On the shared data (../shared/data), with the default patterns:
- *pass share*: the share of corpus documents (ClimbLab + WikiText) some task's patterns match at
  least M times (the documents `retriever prefilter --mode drop --min-matches M` would keep);
- *recall of held-out task records*: the share of each task's held-out records (the cross-source
  split of retriever/holdout.py: sources the patterns were not written from... mostly) that reach M
  matches of their own task's patterns;
- *recall of the similarity stage's candidates* (with --scores DIR, a `retriever score` folder of
the
  same corpus): the share of each task's top-F documents by `score_<task>` the prefilter keeps;
- *speed*: matcher docs/s against the default embedder's docs/s on the same documents, in this
  process (a ratio: both measured here, now).
Shares come with 95% Wilson intervals.

    .venv/bin/python scripts/eval_prefilter.py [--scores runs/offline/scores] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from retriever.holdout import TASKS, load_split
from retriever.metrics import wilson
from retriever.names import SCORE, score_name
from retriever.prefilter import KeywordMatcher


def fmt(t: tuple[float, float, float]) -> str:
    return f"{t[0]:6.1%} [{t[1]:.1%}, {t[2]:.1%}]"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    ap.add_argument("--scores", default=None, help="a `retriever score` folder of corpus/")
    ap.add_argument(
        "--top-fraction", type=float, default=0.1, help="similarity candidates per task"
    )
    ap.add_argument("--min-matches", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument(
        "--speed-docs", type=int, default=200, help="documents timed against the embedder"
    )
    ap.add_argument("--no-embedder", action="store_true", help="skip the embedder timing")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    split = load_split(args.data)
    corpus = split.corpus("train") + split.corpus("test")[:1500]
    m = KeywordMatcher()
    ti = {t: m.tasks.index(t) for t in TASKS}
    texts = [r.text for r in corpus]
    t0 = time.process_time()
    counts = m.count_batch(texts)  # [n_docs, n_tasks]
    kw_cpu = time.process_time() - t0
    out: dict = {"backend": m.backend, "n_corpus": len(texts), "by_min_matches": {}}
    for mm in args.min_matches:
        passed = counts.max(axis=1) >= mm
        row: dict = {"pass_share": wilson(int(passed.sum()), len(texts)), "recall_heldout": {}}
        for t in TASKS:
            held = split.records(t, "heldout")
            c = m.count_batch([r.text for r in held])[:, ti[t]]
            row["recall_heldout"][t] = wilson(int((c >= mm).sum()), len(held))
        out["by_min_matches"][mm] = row

    if args.scores:
        from retriever.score import read_scores

        table = read_scores(args.scores).to_pandas()
        by_id = {r.id: i for i, r in enumerate(corpus)}
        # score ids are <shard>:<row> or the record's id; match on the shard-row text instead
        from retriever.corpus import CorpusReader

        reader = CorpusReader()
        text_of = {}
        for shard in {s for s in table["shard"]}:
            for p in (split.data_dir / "corpus").glob("*.jsonl"):
                if p.stem == shard.split("__")[-1]:
                    for d in reader.read(str(p)):
                        if hasattr(d, "text"):
                            text_of[(shard, d.metadata["row"])] = d.text
        mcount = {}
        for mm in args.min_matches:
            out["by_min_matches"][mm]["recall_candidates"] = {}
        for t in TASKS:
            col = score_name(SCORE, t)
            if col not in table:
                continue
            k = max(1, int(round(args.top_fraction * len(table))))
            top = table.nlargest(k, col)
            cs = [
                m.count(text_of.get((s, int(r)), ""))
                for s, r in zip(top["shard"], top["row"], strict=True)
            ]
            mcount[t] = np.array(cs)
            for mm in args.min_matches:
                own = int((mcount[t][:, ti[t]] >= mm).sum())
                anyt = int((mcount[t].max(axis=1) >= mm).sum())
                out["by_min_matches"][mm]["recall_candidates"][t] = {
                    "own_task": wilson(own, k),
                    "any_task": wilson(anyt, k),
                }
        del by_id

    sample = texts[: args.speed_docs]
    t0 = time.perf_counter(), time.process_time()
    m.count_batch(sample)
    kw_wall = time.perf_counter() - t0[0]
    out["matcher_docs_per_cpu_s"] = len(texts) / kw_cpu if kw_cpu else None
    if not args.no_embedder:
        from retriever.embed import load_embedder

        emb = load_embedder()
        emb.encode(sample[:16])  # warm-up
        t1 = time.perf_counter()
        emb.encode(sample)
        emb_wall = time.perf_counter() - t1
        t2 = time.perf_counter()
        m.count_batch(sample)
        kw_wall = min(kw_wall, time.perf_counter() - t2)
        out["speed"] = {
            "docs": len(sample),
            "matcher_docs_per_s": len(sample) / kw_wall,
            "embedder_docs_per_s": len(sample) / emb_wall,
            "ratio": emb_wall / kw_wall,
            "load_avg": os.getloadavg(),
        }
    if args.json:
        print(json.dumps(out, indent=2, default=float))
        return
    print(
        f"keyword prefilter ({m.backend}), {len(texts)} corpus documents "
        f"({split.corpus('test')[0].source if split.corpus('test') else ''} + corpus/)"
    )
    for mm, row in out["by_min_matches"].items():
        print(f"\nmin_matches = {mm}: pass share {fmt(row['pass_share'])}")
        print(
            f"  {'task':<18} {'held-out recall':>26} {'candidates kept (own task)':>30} "
            f"{'(any task)':>26}"
        )
        for t in TASKS:
            rc = row.get("recall_candidates", {}).get(t)
            own = fmt(rc["own_task"]) if rc else "-"
            anyt = fmt(rc["any_task"]) if rc else "-"
            print(f"  {t:<18} {fmt(row['recall_heldout'][t]):>26} {own:>30} {anyt:>26}")
    if "speed" in out:
        s = out["speed"]
        print(
            f"\nspeed on {s['docs']} docs: matcher {s['matcher_docs_per_s']:,.0f} docs/s, embedder "
            f"{s['embedder_docs_per_s']:,.1f} docs/s: x{s['ratio']:,.0f} (load avg "
            f"{s['load_avg'][0]:.1f})"
        )


if __name__ == "__main__":
    main()
