"""Benchmark of similarity scoring: docs/s against plain sentence-transformers, and peak memory.

In one process, on the shared ClimbLab documents, with the four task indexes built from the shared
gold files (``--gold-limit`` exemplars per task):

0. ``backend``: the default embedder (``backend="auto"``: torch or OpenVINO as calibrated on this
   machine, :mod:`retriever.embed.calibrate`) against plain ``SentenceTransformer.encode``, first
   as found, then with ``--load N`` spinning processes started by this script (default one per
   CPU), paired blocks both times: one command gives the idle and the loaded figure.
1. ``baseline``: ``SentenceTransformer.encode`` (torch fp32, same model, same max_seq_length) plus
   numpy dot products against the four gold matrices (max and mean top-k cosine);
   ``scorer[torch]`` / ``scorer[default]``: :class:`SimilarityScorer` over the four
   :class:`GoldIndex` with the torch embedder / the default one (OpenVINO when installed);
   ``job[default]``: the whole :func:`score_corpus` path (read the shard, score, parquet, LanceDB
   store ingest, summary). Our overhead is each path against the pure embedding of its own engine.
2. Embedding variants (threads, batch size, clipping, bf16, int8, onnxruntime, OpenVINO): docs/s,
   ratio to the baseline and the lowest cosine to the baseline's vectors; then length bucketing
   (sorting across 64 / 256 / 1,024 documents) with the padding each leaves.
3. Peak RSS of :func:`score_corpus` over 1x and 10x the documents, each in a fresh subprocess.

The machine may be shared, so timings are paired: all variants run on the same block of documents
one after the other (order rotating per block), and ratios are taken of the summed times; the
25-75% range of the per-block ratios shows the noise. Absolute docs/s are only context.

    .venv/bin/python scripts/bench_score.py --docs 256 --repeats 3 --gold-limit 500
    .venv/bin/python scripts/bench_score.py --sections backend --backend-docs 128 --json runs/b.json
    .venv/bin/python scripts/bench_score.py --busy -1 ...     # everything under a competing load

Conditions (load average before / after, CPU flags, threads, library versions) are printed and
written with ``--json`` (:mod:`retriever.bench`).
    .venv/bin/python scripts/bench_score.py --device cuda --docs 2000     # FAISS GPU + fp16
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from retriever import bench

bench.offline_defaults()

TASKS = {
    "function-calling": "function_calling",
    "roleplay": "roleplay",
    "rag": "rag",
    "reasoning": "reasoning",
}


# -- data ------------------------------------------------------------------------------------------
def read_docs(data: Path, n: int) -> list[str]:
    """The first ``n`` ClimbLab texts, taken in turn from the two ClimbLab sample files."""
    streams = [open(data / "corpus" / f) for f in bench.CLIMBLAB_FILES]
    texts: list[str] = []
    try:
        while len(texts) < n and streams:
            for fh in list(streams):
                line = fh.readline()
                if not line:
                    streams.remove(fh)
                elif len(texts) < n:
                    texts.append(json.loads(line)["text"])
    finally:
        for fh in streams:
            fh.close()
    return texts


def write_shards(folder: Path, texts: list[str], copies: int) -> Path:
    """``copies`` jsonl shards of ``texts`` (ids unique across copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    for c in range(copies):
        with open(folder / f"part{c:03d}.jsonl", "w") as fh:
            for i, t in enumerate(texts):
                fh.write(json.dumps({"id": f"c{c}-{i}", "text": t}) + "\n")
    return folder


def build_indexes(data: Path, work: Path, gold_limit: int, embedder) -> list[str]:
    """One index per task from a seeded sample of ``gold_limit`` shared gold records (kept in
    work)."""
    from retriever.gold import load_gold
    from retriever.gold.loader import GoldSet
    from retriever.index import GoldIndex

    root = work / f"indexes-g{gold_limit}"
    dirs = []
    for task, sub in TASKS.items():
        out = root / task
        dirs.append(str(out))
        if (out / "manifest.json").is_file():
            continue
        gold = load_gold([str(data / "gold" / sub)])
        docs = list(gold.docs)
        random.Random(0).shuffle(docs)
        t0 = time.perf_counter()
        GoldIndex.build(task, GoldSet(docs[:gold_limit], gold.stats, gold.sources), embedder).save(
            out
        )
        bench.log(
            f"index {task}: {min(gold_limit, len(docs))} exemplars in "
            f"{time.perf_counter() - t0:.1f}s"
        )
    return dirs


# -- the measured calls ----------------------------------------------------------------------------
def baseline_scores(model, texts: list[str], gold: dict[str, np.ndarray], k: int, batch_size: int):
    """Plain sentence-transformers encode + numpy: the reference every ratio is taken against."""
    xq = model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
    )
    out = {}
    for task, xb in gold.items():
        S = xq @ xb.T  # [n, m]
        kk = min(k, xb.shape[0])
        top = -np.partition(-S, kk - 1, axis=1)[:, :kk]  # [n, k] unordered
        out[task] = (top.max(1), top.mean(1))
    return xq, out


def run_scorer(scorer, texts: list[str]) -> np.ndarray:
    from retriever.data import Doc

    docs = (Doc(str(i), t, {}) for i, t in enumerate(texts))
    return np.concatenate([sc.vectors for _, sc in scorer.scored(docs)])


def run_job(
    index_dirs: list[str], shard_dir: Path, out: Path, device: str | None, batch_size: int
) -> dict:
    from retriever.score import score_corpus

    shutil.rmtree(out, ignore_errors=True)
    s = score_corpus(
        index_dirs, [str(shard_dir)], out, top_fraction=0.01, device=device, batch_size=batch_size
    )
    shutil.rmtree(out, ignore_errors=True)
    return s


def length_batches(texts: list[str], buffer: int, batch: int) -> list[list[int]]:
    """Forward batches (text positions) of an encoder called on ``buffer`` texts at a time, which
    sorts each call's texts longest first (as sentence-transformers and our OpenVINO path do)."""
    out = []
    for i in range(0, len(texts), buffer):
        part = sorted(range(i, min(i + buffer, len(texts))), key=lambda j: -len(texts[j]))
        out += [part[j : j + batch] for j in range(0, len(part), batch)]
    return out


class OnnxRuntimeEncoder:
    """The transformer exported with torch.onnx and run by onnxruntime (a variant we tried)."""

    def __init__(self, st_model, path: Path, threads: int):
        import onnxruntime as ort
        import torch

        from retriever.embed.openvino_encoder import _features, _HiddenStates

        self.model, self.post = st_model, list(st_model)[1:]
        probe = _features(st_model, ["a short text", "another, slightly longer text"])
        self.names = tuple(
            k for k in ("input_ids", "attention_mask", "token_type_ids") if k in probe
        )
        if not path.is_file():
            import warnings

            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    _HiddenStates.make(st_model[0].auto_model, self.names),
                    tuple(probe[k] for k in self.names),
                    str(path),
                    input_names=list(self.names),
                    output_names=["h"],
                    dynamo=False,
                    opset_version=17,
                    dynamic_axes={k: {0: "b", 1: "s"} for k in (*self.names, "h")},
                )
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        import torch

        from retriever.embed.openvino_encoder import _features

        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = None
        for i in range(0, len(texts), batch_size):
            idx = order[i : i + batch_size]
            f = _features(self.model, [texts[j] for j in idx])
            f["token_embeddings"] = torch.from_numpy(
                self.sess.run(None, {k: f[k].numpy() for k in self.names})[0]
            )
            with torch.no_grad():
                for mod in self.post:
                    f = mod(f)
            emb = f["sentence_embedding"].numpy()  # [b, dim]
            if out is None:
                out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def embedding_variants(
    st_model, torch_emb, default_emb, work: Path, device: str, clip: int, threads: int
):
    """name -> (function of texts returning vectors [n, dim], what it varies)."""
    import torch

    from retriever.embed.openvino_encoder import OpenVINOEncoder, openvino_installed

    def st(batch=64, n_threads=None, dtype=None, clip_to=None):
        def enc(ts):
            ts = [t[:clip_to] for t in ts] if clip_to else ts
            if dtype is not None:
                with torch.autocast("cpu", dtype=dtype):
                    v = st_model.encode(ts, batch_size=batch, normalize_embeddings=True)
                return np.asarray(v, dtype=np.float32)
            return st_model.encode(ts, batch_size=batch, normalize_embeddings=True)

        def f(ts):
            old = torch.get_num_threads()
            if n_threads:
                torch.set_num_threads(n_threads)
            try:
                return enc(ts)
            finally:
                torch.set_num_threads(old)

        return f

    v: dict[str, tuple] = {
        "baseline: ST torch fp32, batch 64": (st(), "reference"),
        "ST torch, batch 32": (st(32), "batch size"),
        "ST torch, batch 128": (st(128), "batch size"),
        f"ST torch, clip {clip} chars": (st(clip_to=clip), "tokenize less of long docs"),
    }
    if device == "cuda":
        v["ours: torch fp16 on CUDA"] = (default_emb.encode, "precision")
        return v
    if threads > 1:
        v["ST torch, 1 thread"] = (st(n_threads=1), "threads")
    v["ST torch, bf16 autocast"] = (st(dtype=torch.bfloat16), "precision")
    q8 = copy.deepcopy(st_model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(
            q8[0], {torch.nn.Linear}, dtype=torch.qint8, inplace=True
        )
    v["ST torch, int8 dynamic quantization"] = (
        lambda ts: q8.encode(ts, batch_size=64, normalize_embeddings=True),
        "precision",
    )
    try:
        ort = OnnxRuntimeEncoder(torch_emb._model, work / "model.onnx", threads)
        v["onnxruntime fp32"] = (ort.encode, "backend")
    except ImportError as e:
        bench.log(f"onnxruntime variant skipped ({e}); pip install 'retriever[bench]'")
    if openvino_installed():
        ov32 = OpenVINOEncoder(torch_emb._model, precision="f32")
        ovd = OpenVINOEncoder(torch_emb._model)
        p = ovd.precision
        v["OpenVINO fp32"] = (ov32.encode, "backend")
        v[f"OpenVINO {p} (our default)"] = (ovd.encode, "backend")
        v[f"OpenVINO {p}, clip {clip} chars (= our scorer)"] = (
            lambda ts: ovd.encode([t[:clip] for t in ts]),
            "backend",
        )
        if threads > 1:
            ov1 = OpenVINOEncoder(torch_emb._model, threads=1)
            v[f"OpenVINO {p}, 1 thread"] = (ov1.encode, "threads")
    return v


# -- timing ----------------------------------------------------------------------------------------
class EncodeTimer:
    """Counts the seconds spent inside ``embedder.encode`` (instrumentation for the job's
    overhead)."""

    def __init__(self, embedder):
        self.seconds, self._encode = 0.0, embedder.encode
        embedder.encode = self  # instance attribute: the job's scorer calls through it

    def __call__(self, texts):
        t0 = time.perf_counter()
        try:
            return self._encode(texts)
        finally:
            self.seconds += time.perf_counter() - t0


def min_cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    return float((a * b).sum(1).min())


def print_table(title: str, res: dict[str, dict], ref: np.ndarray | None) -> None:
    print(f"\n{title}")
    print(
        f"| {'variant':<56} | {'docs/s':>7} | {'vs baseline':>11} | {'per-block 25-75%':>16} | "
        f"{'min cos':>8} |"
    )
    print(f"|{'-' * 58}|{'-' * 9}|{'-' * 13}|{'-' * 18}|{'-' * 10}|")
    for name, r in res.items():
        cos = "" if r["out"] is None or ref is None else f"{min_cosine(r['out'], ref):.5f}"
        lo, hi = r["block_ratio_iqr"]
        print(
            f"| {name:<56} | {r['docs_per_s']:>7.1f} | {r['ratio']:>10.2f}x | {lo:>7.2f} - "
            f"{hi:<6.2f} | {cos:>8} |"
        )


# -- peak memory -----------------------------------------------------------------------------------
def rss_child(args) -> None:
    from retriever.score import score_corpus

    t0 = time.perf_counter()
    s = score_corpus(args.index, [args.rss_child], args.out, top_fraction=0.01, device=args.device)
    print(
        json.dumps(
            {
                "docs": s["scored"],
                "peak_rss_mb": bench.peak_rss_mb(),
                "seconds": time.perf_counter() - t0,
            }
        )
    )


def measure_rss(index_dirs, texts, work: Path, copies: int, device: str | None) -> dict:
    shards = write_shards(work / f"rss-x{copies}", texts, copies)
    out = work / f"rss-out-x{copies}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--rss-child", str(shards), "--out", str(out)]
    cmd += sum((["--index", d] for d in index_dirs), [])
    if device:
        cmd += ["--device", device]
    bench.log(f"peak RSS run x{copies} ({copies * len(texts)} docs) in a fresh process")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"RSS child failed:\n{proc.stderr[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- main ------------------------------------------------------------------------------------------
def main() -> None:
    ap = bench.parser(__doc__)
    ap.add_argument("--data", default=str(bench.SHARED), help="shared sample data folder")
    ap.add_argument(
        "--sections",
        default="backend,paths,variants,bucketing,rss",
        help="what to run, comma-separated (default: backend,paths,variants,bucketing,rss)",
    )
    ap.add_argument(
        "--backend-docs",
        type=int,
        default=128,
        help="documents of the default-vs-plain check, run idle then under load (0: skip)",
    )
    ap.add_argument("--docs", type=int, default=256, help="ClimbLab documents timed (default 256)")
    ap.add_argument("--repeats", type=int, default=3, help="passes over the documents (default 3)")
    ap.add_argument("--block", type=int, default=64, help="documents per paired block (default 64)")
    ap.add_argument(
        "--gold-limit", type=int, default=500, help="gold exemplars per task index (default 500)"
    )
    ap.add_argument(
        "--variant-docs", type=int, default=128, help="documents for the variants table (0: skip)"
    )
    ap.add_argument(
        "--variant-block", type=int, default=32, help="documents per paired block of the variants"
    )
    ap.add_argument(
        "--bucket-docs", type=int, default=1024, help="documents for the bucketing check (0: skip)"
    )
    ap.add_argument("--bucket-repeats", type=int, default=2, help="passes of the bucketing check")
    ap.add_argument(
        "--rss-docs", type=int, default=300, help="documents of the 1x peak-RSS run (0: skip)"
    )
    ap.add_argument("--rss-copies", type=int, default=10, help="corpus copies of the large RSS run")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    ap.add_argument("--batch-size", type=int, default=256, help="documents per scoring batch")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument(
        "--work", help="work folder (indexes are reused from it; default: a temp folder)"
    )
    bench.add_bench_args(ap)
    ap.add_argument(
        "--load",
        type=int,
        default=-1,
        metavar="N",
        help="backend section: after the run as found, the same run with N spinning processes "
        "started for it (-1: one per CPU; 0: no loaded run)",
    )
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    ap.add_argument("--index", action="append", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    with bench.busy_load(
        0 if args.rss_child else args.busy
    ):  # --busy N: the whole run under a competing load
        return run(args)


def run(args) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        return rss_child(args)

    from sentence_transformers import SentenceTransformer

    from retriever._deps import has_cuda
    from retriever.embed import SentenceEmbedder, load_embedder
    from retriever.embed.embedder import DEFAULT_MODEL, resolve_model_path
    from retriever.index import faiss_gpu_available, load_indexes
    from retriever.score import SimilarityScorer

    sections = set(args.sections.split(","))
    if sections - {"backend", "paths", "variants", "bucketing", "rss"}:
        raise SystemExit(
            f"unknown --sections {sorted(sections)}; choose from "
            "backend,paths,variants,bucketing,rss"
        )
    bench_report = bench.BenchReport("bench_score", args)
    data = Path(args.data)
    if not (data / "corpus").is_dir():
        raise SystemExit(f"shared data not found at {data}; pass --data")
    device = args.device or ("cuda" if has_cuda() else "cpu")
    threads = torch.get_num_threads()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_score_"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict = bench_report.data
    report.update(
        {
            "device": device,
            "threads": threads,
            "docs": args.docs,
            "repeats": args.repeats,
            "gold_limit": args.gold_limit,
            "cpu_count": os.cpu_count(),
            "load_avg_start": os.getloadavg(),
        }
    )

    # the same engine the job uses (load_embedder's cache key: model, device, batch_size)
    default_emb = load_embedder(DEFAULT_MODEL, device=args.device, batch_size=64)
    if "backend" in sections and args.backend_docs:
        # 0. the default embedder against plain SentenceTransformer.encode, idle and with one
        # spinning process per CPU (started here), paired blocks in this one process
        bt = read_docs(data, args.backend_docs)
        st_plain = SentenceTransformer(
            resolve_model_path(DEFAULT_MODEL), device=device
        )  # plain fp32
        calls = {
            "plain: SentenceTransformer.encode (torch fp32)": lambda ts: st_plain.encode(
                ts,
                batch_size=64,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ),
            f"default: SentenceEmbedder auto -> {default_emb.backend}": default_emb.encode,
        }
        base = next(iter(calls))
        for f in calls.values():  # warm-up: first shapes, lazy initialisation
            f(bt[:16])
        report["backend_check"] = {"calibration": default_emb.calibration, "docs": len(bt)}
        n_load = args.load if args.load >= 0 else len(os.sched_getaffinity(0))
        conditions = [("as found (no load added)", 0)]
        if n_load:
            conditions.append((f"loaded (+{n_load} busy processes)", n_load))
        for label, n_busy in conditions:
            with bench.busy_load(n_busy) as pids:
                la = os.getloadavg()
                bench.log(
                    f"default vs plain, {label} ({len(pids)} spinning processes), load average {la}"
                )
                bres = bench.paired_blocks(
                    calls, bt, args.variant_block, args.repeats, base, bench.log
                )
            print_table(
                f"Default embedder vs plain encode, {label}: {len(bt)} docs x {args.repeats} "
                f"passes in blocks of {args.variant_block}, {threads} threads, {len(pids)} busy "
                f"processes, load average {la[0]:.2f} at start",
                bres,
                bres[base]["out"],
            )
            report["backend_check"]["loaded" if n_busy else "as_found"] = {
                "label": label,
                "busy_processes": len(pids),
                "load_avg_start": la,
                **{n: {k: v for k, v in r.items() if k != "out"} for n, r in bres.items()},
            }
    if sections == {"backend"}:
        report["load_avg_end"] = os.getloadavg()
        bench_report.finish(args.json)
        return
    index_dirs = build_indexes(data, work, args.gold_limit, default_emb)
    indexes = load_indexes(index_dirs)
    gold = {t: gi.index.reconstruct_n(0, gi.ntotal) for t, gi in indexes.items()}  # [m, dim] each
    texts = read_docs(data, args.docs)
    shard_dir = write_shards(work / "corpus", texts, 1)
    st_model = SentenceTransformer(resolve_model_path(DEFAULT_MODEL), device=device)  # plain fp32
    torch_emb = SentenceEmbedder(DEFAULT_MODEL, device=device, backend="torch")
    assert st_model.max_seq_length == torch_emb.max_seq_length == default_emb.max_seq_length
    scorer_torch = SimilarityScorer(indexes, torch_emb, k=args.k, batch_size=args.batch_size)
    scorer_default = SimilarityScorer(indexes, default_emb, k=args.k, batch_size=args.batch_size)
    report.update(
        backend=default_emb.backend,
        max_seq_length=st_model.max_seq_length,
        clip_chars=scorer_default.clip_chars,
        gold_sizes={t: int(g.shape[0]) for t, g in gold.items()},
        faiss_gpu=faiss_gpu_available(),
        index_on_gpu={t: gi.use_gpu for t, gi in indexes.items()},
        fp16=device == "cuda",
    )
    if device == "cuda":
        report["gpu"] = torch.cuda.get_device_name(0)
    bench.log(
        f"{len(texts)} docs, {threads} threads, device {device}, default backend "
        f"{default_emb.backend}, FAISS GPU {report['faiss_gpu']}; work {work}"
    )

    # warm up every engine (first calls allocate, compile and fill caches)
    baseline_scores(st_model, texts[:64], gold, args.k, 64)
    torch_emb.encode(texts[:64])
    scorer_default.score_texts(texts[:64])
    run_job(
        index_dirs,
        write_shards(work / "warm", texts[:32], 1),
        work / "warm-out",
        args.device,
        args.batch_size,
    )

    d = default_emb.backend
    if "paths" in sections:
        # 1. the scoring paths, in paired blocks
        base_name = "baseline: ST encode + numpy dot x4"
        calls = {
            base_name: lambda ts: baseline_scores(st_model, ts, gold, args.k, 64)[0],
            "pure embedding: ours, torch": torch_emb.encode,
            "scorer[torch]: SimilarityScorer, 4 indexes": lambda ts: run_scorer(scorer_torch, ts),
            f"pure embedding: ours, {d} (default)": default_emb.encode,
            f"scorer[{d}]: SimilarityScorer, 4 indexes": lambda ts: run_scorer(scorer_default, ts),
        }
        bench.log(f"timing the scoring paths in blocks of {args.block} docs")
        res = bench.paired_blocks(calls, texts, args.block, args.repeats, base_name, bench.log)
        names = list(calls)
        print_table(
            f"Scoring paths: {len(texts)} ClimbLab docs x {args.repeats} passes in blocks of "
            f"{args.block}, {threads} threads, {device}",
            res,
            res[base_name]["out"],
        )

        # 1b. the whole job (read, score, parquet, store, summary) against the baseline run next to
        # it
        timer = EncodeTimer(default_emb)
        job_s, base_s, encode_s = 0.0, 0.0, 0.0
        bench.log(
            f"timing score_corpus on {len(texts)} docs, {args.repeats} runs alternating with the "
            "baseline"
        )
        for r in range(args.repeats):
            for what in ("base", "job") if r % 2 == 0 else ("job", "base"):
                t0 = time.perf_counter()
                if what == "base":
                    baseline_scores(st_model, texts, gold, args.k, 64)
                    base_s += time.perf_counter() - t0
                else:
                    before = timer.seconds
                    run_job(index_dirs, shard_dir, work / "job-out", args.device, args.batch_size)
                    job_s += time.perf_counter() - t0
                    encode_s += timer.seconds - before
            bench.log(
                f"  run {r + 1}/{args.repeats}: baseline {base_s:.1f}s, job {job_s:.1f}s (encode "
                f"inside {encode_s:.1f}s)"
            )
        n_docs = args.repeats * len(texts)
        job = {
            "docs_per_s": n_docs / job_s,
            "baseline_docs_per_s": n_docs / base_s,
            "ratio": base_s / job_s,
            "encode_share": encode_s / job_s,
            "overhead_over_encode": job_s / encode_s - 1,
        }
        print(
            f"\njob[{d}]: score_corpus (read shard, score 4 tasks, parquet, LanceDB store, "
            f"summary): {job['docs_per_s']:.1f} docs/s vs baseline "
            f"{job['baseline_docs_per_s']:.1f} docs/s next to it = {job['ratio']:.2f}x"
        )

        def over(path, ref):
            return res[path]["seconds"] / res[ref]["seconds"] - 1

        overheads = {
            "scorer[torch] over pure torch embedding (paired blocks)": over(names[2], names[1]),
            "scorer[torch] over the baseline (paired blocks)": over(names[2], names[0]),
            f"scorer[{d}] over pure {d} embedding (paired blocks)": over(names[4], names[3]),
            f"job[{d}]: wall time over its own encode calls (same run)": job[
                "overhead_over_encode"
            ],
        }
        print(
            "Overhead over pure embedding (time / reference - 1; budget < 10%; negative = faster):"
        )
        for k, v in overheads.items():
            print(f"  {k:<60} {v * 100:+6.1f}%")
        for label, sc in (("torch", scorer_torch), (d, scorer_default)):
            c = sc.stats.counts
            share = c["search_ms"] / max(1, c["embed_ms"] + c["search_ms"])
            where = "GPU" if any(gi.use_gpu for gi in indexes.values()) else "CPU"
            print(
                f"  scorer[{label}]: FAISS search ({where}) over the 4 indexes = "
                f"{share * 100:.1f}% of embed + search"
            )
            report[f"search_share_{label}"] = share
        report["paths"] = {n: {k: v for k, v in r.items() if k != "out"} for n, r in res.items()}
        report["job"], report["overheads"] = job, overheads

    # 2. embedding variants, in paired blocks
    if args.variant_docs and "variants" in sections:
        vt = texts[: args.variant_docs]
        var = embedding_variants(
            st_model, torch_emb, default_emb, work, device, scorer_default.clip_chars, threads
        )
        for f, _ in var.values():  # warm-up: first calls allocate and compile
            f(vt[:16])
        bench.log(f"timing {len(var)} embedding variants in blocks of {args.variant_block} docs")
        first = next(iter(var))
        vres = bench.paired_blocks(
            {n: f for n, (f, _) in var.items()},
            vt,
            args.variant_block,
            args.repeats,
            first,
            bench.log,
        )
        ref = vres[first]["out"]
        print_table(
            f"Embedding variants: {len(vt)} docs x {args.repeats} passes in blocks of "
            f"{args.variant_block}, {threads} threads, {device}",
            vres,
            ref,
        )
        report["variants"] = {
            n: {
                "docs_per_s": r["docs_per_s"],
                "ratio": r["ratio"],
                "kind": var[n][1],
                "block_ratio_iqr": r["block_ratio_iqr"],
                "min_cos": min_cosine(r["out"], ref),
            }
            for n, r in vres.items()
        }

    # 2b. length bucketing: the encoder sorts the texts of one call by length (the scorer's
    # sort_buffer)
    if args.bucket_docs and "bucketing" in sections:
        clip = scorer_default.clip_chars
        bt = [t[:clip] for t in read_docs(data, args.bucket_docs)]
        ntok = [
            len(x)
            for x in st_model.tokenizer(bt, truncation=True, max_length=st_model.max_seq_length)[
                "input_ids"
            ]
        ]
        buffers = sorted({b for b in (64, 256, 1024) if b < len(bt)} | {len(bt)})
        plans = {
            b: length_batches(bt, b, 64) for b in buffers
        }  # the forward batches of each buffer
        nb = min(len(p) for p in plans.values())
        # batch i of every buffer runs back to back (paired), so load changes hit all alike
        calls = {
            f"sort buffer {b} docs": (
                lambda ix, b=b: default_emb.encode([bt[j] for j in plans[b][ix[0]]])
            )
            for b in buffers
        }
        bench.log(f"timing length bucketing on {len(bt)} docs ({nb} forward batches per buffer)")
        bres = bench.paired_blocks(
            calls, list(range(nb)), 1, args.bucket_repeats, next(iter(calls)), bench.log
        )
        print(
            f"\nLength bucketing: {len(bt)} docs x {args.bucket_repeats} passes, {d}, forward "
            "batches of 64 paired batch by batch; texts sorted by length per buffer "
            "(SimilarityScorer sort_buffer)"
        )
        report["bucketing"] = {}
        for b, (n, r) in zip(buffers, bres.items(), strict=True):
            real = sum(ntok[j] for batch in plans[b] for j in batch)
            padded = sum(max(ntok[j] for j in batch) * len(batch) for batch in plans[b])
            dps = args.bucket_repeats * len(bt) / r["seconds"]
            lo, hi = r["block_ratio_iqr"]
            print(
                f"  {n:<24} {dps:>6.1f} docs/s  {r['ratio']:.2f}x vs buffer {buffers[0]} (per "
                f"batch {lo:.2f}-{hi:.2f})  padded tokens {(padded - real) / real * 100:5.1f}% of "
                "real ones"
            )
            report["bucketing"][n] = {
                "docs_per_s": dps,
                "ratio": r["ratio"],
                "padding": (padded - real) / real,
            }

    # 3. peak memory, 1x and 10x
    if args.rss_docs and "rss" in sections:
        rt = read_docs(data, args.rss_docs)
        small = measure_rss(index_dirs, rt, work, 1, args.device)
        large = measure_rss(index_dirs, rt, work, args.rss_copies, args.device)
        ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
        print(
            f"\nPeak RSS of score_corpus (fresh process each): x1 {small['docs']} docs "
            f"{small['peak_rss_mb']:.0f} MB; x{args.rss_copies} {large['docs']} docs "
            f"{large['peak_rss_mb']:.0f} MB; ratio {ratio:.3f} ({(ratio - 1) * 100:+.1f}%, budget "
            "< 20%)"
        )
        report["rss"] = {"x1": small, f"x{args.rss_copies}": large, "ratio": ratio}

    if device == "cuda":
        import torch as _t

        print(
            f"\nGPU: {report['gpu']}; FAISS GPU {report['faiss_gpu']} (indexes on GPU: "
            f"{report['index_on_gpu']}); embeddings fp16; CUDA memory peak "
            f"{_t.cuda.max_memory_allocated() / 2**20:.0f} MB"
        )
    report["load_avg_end"] = os.getloadavg()
    print(
        f"\nload average (1/5/15 min) at start {report['load_avg_start']}, end "
        f"{report['load_avg_end']} on {report['cpu_count']} CPUs"
    )
    bench_report.finish(args.json)


if __name__ == "__main__":
    main()
