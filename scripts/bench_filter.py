"""Benchmark: `retriever filter` against datatrove's own FastTextClassifierFilter pipeline.

Same fastText model, same shards (real ClimbLab text from ../shared/data/corpus, repeated to get
volume), same threshold, gzip jsonl in and out; single process and all cores. Each configuration
runs in its own subprocess so its peak RSS is its own. Prints docs/s, the ratio ours / datatrove,
peak RSS, and checks both kept the same documents. Ends with the ClimbLab scale plan computed from
the measured per-core throughput.

    .venv/bin/python scripts/bench_filter.py                  # defaults: x8 repeat, 8 shards
    .venv/bin/python scripts/bench_filter.py --repeat 20 --shards 16 --workers 16
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from retriever.bench import BenchReport, add_bench_args, busy_load, run_watched

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RETRIEVER_SHARED_DATA", REPO.parent / "shared" / "data"))
CORPUS_FILES = ["climblab_stream_first1000.jsonl", "climblab_clusters_sample.jsonl"]
CLIMBLAB_TOKENS = 1.2e12


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def prepare(work: Path, repeat: int, n_shards: int) -> tuple[Path, Path, dict]:
    """Train a function-calling model (xLAM gold vs ClimbLab) and write the repeated corpus."""
    from retriever.distill import DistillConfig, FastTextDistiller, write_labels

    corpus = [r["text"] for f in CORPUS_FILES for r in read_jsonl(SHARED / "corpus" / f)]
    gold = [r["text"] for r in read_jsonl(SHARED / "gold" / "function_calling" / "xlam_3k.jsonl")]
    rows = [
        {"id": f"g{i}", "text": t, "task": "fc", "label": "positive"}
        for i, t in enumerate(gold[:1500])
    ]
    rows += [
        {"id": f"c{i}", "text": t, "task": "fc", "label": "negative"}
        for i, t in enumerate(corpus[:1500])
    ]
    write_labels(work / "labels.parquet", rows)
    model = work / "fc" / "filter.bin"
    rep = FastTextDistiller(DistillConfig()).run(work / "labels.parquet", "fc", model)
    shards = work / "corpus"
    shards.mkdir()
    # gold documents mixed in at 2% so that something passes the threshold
    docs = corpus + gold[1500 : 1500 + len(corpus) // 50]
    fhs = [
        gzip.open(shards / f"part_{s:03d}.jsonl.gz", "wb", compresslevel=1) for s in range(n_shards)
    ]
    n = chars = 0
    for r in range(repeat):
        for i, t in enumerate(docs):
            fhs[n % n_shards].write(json.dumps({"id": f"r{r}-{i}", "text": t}).encode() + b"\n")
            n += 1
            chars += len(t)
    for fh in fhs:
        fh.close()
    info = {"docs": n, "chars": chars, "shards": n_shards, "model_auc": rep.metrics["roc_auc"]}
    return model, shards, info


def run_ours(model: str, corpus: str, out: str, workers: int, threshold: float) -> dict:
    from retriever.batch_filter import BatchFilter, FilterConfig

    rep = BatchFilter(FilterConfig(tasks=("fc",), models={"fc": model}, threshold=threshold)).run(
        [corpus], out, workers=workers
    )
    return {"kept": rep.totals["kept"]["fc"], "docs": rep.totals["docs_in"]}


def run_datatrove(model: str, corpus: str, out: str, workers: int, threshold: float) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import FastTextClassifierFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    n_shards = len(list(Path(corpus).glob("*.jsonl.gz")))
    ex = LocalPipelineExecutor(
        [
            JsonlReader(corpus, glob_pattern="*.jsonl.gz"),
            FastTextClassifierFilter(
                model, keep_labels=("positive", threshold), newline_replacement=" "
            ),
            JsonlWriter(out),
        ],
        tasks=n_shards,
        workers=workers,
        logging_dir=out + "_logs",
    )
    ex.run()
    kept = 0
    for f in Path(out).glob("*.jsonl.gz"):
        with gzip.open(f, "rb") as fh:
            kept += sum(1 for _ in fh)
    return {"kept": kept}


def one(args: argparse.Namespace) -> None:
    """Child process: run one configuration, print its JSON result."""
    fn = run_ours if args.impl == "ours" else run_datatrove
    t0 = time.perf_counter()
    res = fn(args.model, args.corpus, args.out, args.workers, args.threshold)
    res["seconds"] = time.perf_counter() - t0
    print("RESULT " + json.dumps(res))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeat", type=int, default=8, help="times the ClimbLab sample is repeated")
    p.add_argument("--shards", type=int, default=8)
    p.add_argument(
        "--workers", type=int, default=len(os.sched_getaffinity(0)), help="'all cores' run"
    )
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument(
        "--rounds", type=int, default=1, help="runs per configuration; the fastest counts"
    )
    p.add_argument("--work", help="work folder (default: a temporary one)")
    add_bench_args(p)
    p.add_argument("--_one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._one:
        one(args)
        return
    with busy_load(args.busy):
        run(args)


def run(args) -> None:
    if not (SHARED / "corpus").is_dir():
        sys.exit(f"shared data not found at {SHARED}")
    report = BenchReport("bench_filter", args)
    tmp = tempfile.TemporaryDirectory(prefix="bench_filter_") if not args.work else None
    work = Path(args.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, corpus, info = prepare(work, args.repeat, args.shards)
    mb = sum(f.stat().st_size for f in corpus.iterdir()) / 2**20
    print(
        f"corpus: {info['docs']} docs, {info['chars'] / 1e6:.1f} M chars in {info['shards']} shards "
        f"({mb:.1f} MiB gzip); model ROC-AUC {info['model_auc']:.3f}; prepared in "
        f"{time.perf_counter() - t0:.1f}s"
    )
    results = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    for workers in sorted({1, args.workers}):
        for rnd in range(args.rounds):
            for impl in ("datatrove", "ours"):
                out = work / f"out_{impl}_{workers}_{rnd}"
                cmd = [
                    sys.executable,
                    __file__,
                    "--_one",
                    "--impl",
                    impl,
                    "--model",
                    str(model),
                    "--corpus",
                    str(corpus),
                    "--out",
                    str(out),
                    "--workers",
                    str(workers),
                    "--threshold",
                    str(args.threshold),
                ]
                proc, rss_sum, rss_one = run_watched(cmd, env)
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode or not line:
                    sys.exit(f"{impl} x{workers} failed:\n{proc.stderr[-3000:]}")
                r = json.loads(line[0][7:])
                r["peak_rss_mb"], r["peak_rss_one_mb"] = rss_sum, rss_one
                r["docs_per_s"] = info["docs"] / r["seconds"]
                r["mchars_per_s"] = info["chars"] / r["seconds"] / 1e6
                best = results.get(f"{impl}_{workers}")
                if best is None or r["seconds"] < best["seconds"]:
                    results[f"{impl}_{workers}"] = r
                print(
                    f"  {impl:9s} workers={workers:2d} round {rnd}: {r['seconds']:7.2f}s  "
                    f"{r['docs_per_s']:8.0f} docs/s  {r['mchars_per_s']:6.2f} M chars/s  "
                    f"kept {r['kept']:6d}  peak RSS {r['peak_rss_mb']:6.0f} MiB (largest process "
                    f"{r['peak_rss_one_mb']:.0f})"
                )
                shutil.rmtree(out, ignore_errors=True)
    print(f"ratios (ours / datatrove FastTextClassifierFilter), fastest of {args.rounds} round(s):")
    for workers in sorted({1, args.workers}):
        o, d = results[f"ours_{workers}"], results[f"datatrove_{workers}"]
        same = (
            "same kept set size"
            if o["kept"] == d["kept"]
            else f"KEPT DIFFERS {o['kept']} vs {d['kept']}"
        )
        print(
            f"  workers={workers:2d}: speed x{o['docs_per_s'] / d['docs_per_s']:.2f}, "
            f"peak RSS x{o['peak_rss_mb'] / d['peak_rss_mb']:.2f}  ({same})"
        )
    one_core = results["ours_1"]
    chars_per_core_s = info["chars"] / one_core["seconds"]
    chars_per_token = 4.0  # GPT-2 on English web text; see retriever.batch_filter.tokens
    core_hours = CLIMBLAB_TOKENS * chars_per_token / chars_per_core_s / 3600
    print(
        f"scale plan: {chars_per_core_s / 1e6:.2f} M chars/s per core -> ClimbLab (1.2T tokens, "
        f"~{chars_per_token:.0f} chars/token) = {core_hours:,.0f} core-hours; "
        + ", ".join(f"{n} cores: {core_hours / n:,.1f} h" for n in (64, 512, 2048))
    )
    report.data.update({"corpus": info, "results": results, "core_hours_climblab": core_hours})
    report.finish(args.json)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
