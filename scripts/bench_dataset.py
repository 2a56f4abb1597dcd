"""Benchmark build-dataset against baselines measured in the same process.

Pools: ``--tasks`` pools of ``--docs`` documents each (real ClimbLab texts from ../shared/data,
repeated with new ids; a quarter of each pool shared with the next pool so dedup has work).
Prints:

1. read baseline: one plain pass over every pool record (gzip + JSON + Doc), the floor of any build;
2. cold build (scan + select + write) and its ratio to the read pass;
3. warm rebuild with another mixture and budget through the same scan cache (a RegMix sweep),
   and the cold / warm speed-up; then a cold build scanning with ``--workers`` processes;
4. the selection core alone on ``--select-docs`` synthetic candidates (docs/s).

Usage: .venv/bin/python scripts/bench_dataset.py [--docs 20000] [--tasks 4] [--workers 2]
"""

from __future__ import annotations

import gzip
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from retriever import bench
from retriever.dataset import (
    Candidates,
    DatasetBuilder,
    discover_pools,
    read_pool_shard,
    select_budgeted,
)
from retriever.names import PROB, score_name


def make_pools(root: Path, tasks: int, docs: int, shards: int = 4) -> int:
    src = bench.SHARED / "corpus" / "climblab_clusters_sample.jsonl"
    texts = (
        [json.loads(x)["text"] for x in src.read_text().splitlines()]
        if src.exists()
        else [f"synthetic document {i} " * 200 for i in range(1000)]
    )
    clusters = (
        [json.loads(x).get("cluster_id", 0) for x in src.read_text().splitlines()]
        if src.exists()
        else [0] * 1000
    )
    rng = np.random.default_rng(0)
    total_bytes = 0
    for t in range(tasks):
        d = root / f"task{t}"
        d.mkdir(parents=True)
        per = docs // shards
        for s in range(shards):
            with gzip.open(d / f"s{s}.jsonl.gz", "wb", compresslevel=1) as fh:
                for i in range(per):
                    k = s * per + i
                    shared = k < docs // 4
                    doc_id = (
                        f"shared-{(t + 1) % tasks}-{k}"
                        if shared and t % 2
                        else f"t{t}-{k}"
                        if not shared
                        else f"shared-{t}-{k}"
                    )
                    j = (k * 7 + t) % len(texts)
                    rec = {
                        "id": doc_id,
                        "text": texts[j] + (f" [{doc_id}]" if not shared else ""),
                        "metadata": {
                            "shard": f"cluster_{clusters[j]}",
                            "row": k,
                            score_name(PROB, f"task{t}"): float(rng.random()),
                            "cluster_id": clusters[j],
                        },
                    }
                    line = orjson.dumps(rec) + b"\n"
                    total_bytes += len(line)
                    fh.write(line)
    return total_bytes


def main() -> None:
    ap = bench.parser(__doc__)
    ap.add_argument("--docs", type=int, default=20_000, help="documents per pool")
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--select-docs", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2, help="processes of the parallel-scan build")
    args, report = bench.start(ap, "bench_dataset")
    with bench.busy_load(args.busy):
        run(args, report)
    report.finish(args.json)


def run(args, report) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-dataset-") as tmp:
        root = Path(tmp)
        nbytes = make_pools(root / "pools", args.tasks, args.docs)
        pools = discover_pools(root / "pools")
        n_docs = args.tasks * args.docs
        print(f"pools: {args.tasks} x {args.docs:,} docs, {nbytes / 1e6:.0f} MB of JSON lines")

        t0 = time.perf_counter()
        seen = 0
        for p in pools.values():
            for f in sorted(Path(p).glob("*.jsonl.gz")):
                for _ in read_pool_shard(str(f)):
                    seen += 1
        t_read = time.perf_counter() - t0
        print(f"1. read baseline      {t_read:7.2f} s  {seen / t_read:10,.0f} docs/s")

        mix = {k: 1.0 for k in pools}
        budget = int(0.5 * nbytes / 4)  # about half of the pools' tokens
        b = DatasetBuilder(pools, mix, budget, scan_cache=root / "scan")
        s, t_cold = bench.timed(b.build, root / "out1")
        print(
            f"2. cold build         {t_cold:7.2f} s  {n_docs / t_cold:10,.0f} docs/s   "
            f"= {t_cold / t_read:.2f}x the read pass  ({s['tokens']:,} tokens, {s['docs']:,} docs, "
            f"{s['counts'].get('dropped/duplicate', 0):,} duplicates)"
        )

        mix2 = {k: float(i + 1) for i, k in enumerate(pools)}
        b = DatasetBuilder(pools, mix2, budget // 2, scan_cache=root / "scan")
        t_warm = bench.timed(b.build, root / "out2")[1]
        print(
            f"3. warm rebuild       {t_warm:7.2f} s  (other mixture, half budget, shared scan "
            f"cache): cold/warm = {t_cold / t_warm:.2f}x"
        )

        if args.workers > 1:
            b = DatasetBuilder(
                pools, mix, budget, scan_cache=root / "scan_par", workers=args.workers
            )
            t_par = bench.timed(b.build, root / "out3")[1]
            print(
                f"   cold, {args.workers} workers {t_par:7.2f} s  serial/parallel = "
                f"{t_cold / t_par:.2f}x"
            )

        rng = np.random.default_rng(0)
        m = args.select_docs
        per = m // args.tasks
        ids = rng.integers(0, m, size=(args.tasks, per)).astype(
            np.uint64
        )  # overlapping ids across pools
        cands = {
            f"p{t}": Candidates(
                rng.integers(100, 5000, per), rng.random(per), ids[t], ids[t] + np.uint64(1)
            )
            for t in range(args.tasks)
        }
        t0 = time.perf_counter()
        sel = select_budgeted(
            cands, {k: 10**12 for k in cands}
        )  # budget never binds: every candidate visited
        t_sel = time.perf_counter() - t0
        print(
            f"4. selection core     {t_sel:7.2f} s  {m / t_sel:10,.0f} candidates/s "
            f"({sum(len(p.selected) for p in sel.pools.values()):,} selected, all visited)"
        )


if __name__ == "__main__":
    main()
