"""Load test of ``retriever serve``: concurrent clients against a >= 100k-row store with its ANN
index.

1. A synthetic store (built once into ``--work``, reused after): real embeddings of ``--base-docs``
   ClimbLab documents of the shared sample (``corpus/climblab_clusters_sample.jsonl``, with their
   ``cluster_id``), or the vectors of a score folder (``--scores DIR``), each copied into
   ``--rows / base`` rows as ``normalize(v + sigma * g / sqrt(dim))`` with ``g`` standard normal
   (``--sigma 0.5``: cosine ~0.89 to its base document, so neighbourhoods look like a real corpus:
   many near-duplicates around each topic, none identical). Task scores: each row's cosine to the
   mean embedding of 64 exemplars of each shared gold task (so ``min_score`` filters keep a real
   fraction). Ingested with :class:`CorpusStore` and indexed (IVF-PQ, sqrt(n) partitions).
2. ``retriever serve --corpus-store STORE --port 0`` in a subprocess (a real uvicorn server).
3. Phases ``CLIENTSxSECONDS`` (default ``1x10,8x30``): each client a thread with one keep-alive
   HTTP connection, posting ``/corpus`` queries for a bounded time. Query texts
   (``--query-set``): ``exemplars`` (default: new exemplars, i.e. whole held-out shared gold
   records of the four tasks), ``long`` (whole ClimbLab documents of ``corpus_large``, not in
   the store) or ``clipped`` (gold records and ClimbLab documents cut at 1,000 characters); each
   text is sent once in a run (no repeats unless the set runs out, counted), and their token
   lengths are reported. Reported per phase: requests, failures, QPS, p50 / p90 / p99 / max
   latency (client side, full HTTP round trip), the server's RSS sampled every second (start /
   middle / end / max), texts per embedding forward, the server's own ms per request (embed:
   queueing + forward; search; the rest: HTTP, JSON, thread pool) and the load average.
   ``--filter`` adds a phase with ``min_score`` on one task.

The clients run on the same machine as the server, so they take CPU from it: latencies are an
upper bound of what a remote client would see.

    .venv/bin/python scripts/bench_serve.py --rows 100000 --phases 1x10,8x30 --json
    runs/bench_serve.json  # add --server-args "--lanes 2" / --query-set long to compare
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from retriever import bench
from retriever.names import SCORE, score_name

bench.offline_defaults()

GOLD = {
    "function-calling": "function_calling/xlam_3k.jsonl",
    "reasoning": "reasoning/gsm8k_train.jsonl",
    "roleplay": "roleplay/character_llm.jsonl",
    "rag": "rag/pubmedqa_pqal.jsonl",
}


# -- the store -------------------------------------------------------------------------------------
def base_vectors(args, work: Path, embedder):
    """(vectors [B, dim], previews, clusters) of the base documents, cached in ``work``."""
    cache = work / f"base_{args.base_docs}.npz"
    if args.scores:
        from retriever.score import read_scores

        t = read_scores(args.scores, columns=["vector", "preview", "cluster_id"])
        v = np.asarray(t.column("vector").combine_chunks().flatten(), dtype=np.float32).reshape(
            t.num_rows, -1
        )
        return (
            v,
            t.column("preview").to_pylist(),
            [c or "" for c in t.column("cluster_id").to_pylist()],
        )
    recs = bench.read_jsonl(
        bench.SHARED / "corpus" / "climblab_clusters_sample.jsonl", args.base_docs
    )
    previews = [r["text"][:300] for r in recs]
    clusters = [str(r.get("cluster_id", "")) for r in recs]
    if cache.is_file():
        return np.load(cache)["v"], previews, clusters
    t0 = time.perf_counter()
    v = embedder.encode([r["text"] for r in recs])
    bench.log(f"embedded {len(recs)} base documents in {time.perf_counter() - t0:.1f}s")
    np.savez(cache, v=v)
    return v, previews, clusters


def task_centroids(embedder, per_task: int = 64) -> dict[str, np.ndarray]:
    out = {}
    for task, rel in GOLD.items():
        texts = [r["text"][:1000] for r in bench.read_jsonl(bench.SHARED / "gold" / rel, per_task)]
        c = embedder.encode(texts).mean(0)
        out[task] = c / np.linalg.norm(c)
    return out


def build_store(args, work: Path) -> str:
    """The synthetic store at ``work/store_<rows>`` (built once; its ``ready.json`` marks it
    done)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retriever.embed import DEFAULT_MODEL, load_embedder
    from retriever.store import CorpusStore

    uri = work / f"store_{args.rows}_{args.sigma}"
    if (uri / "ready.json").is_file():
        bench.log(f"reusing {uri}")
        return str(uri)
    embedder = load_embedder(DEFAULT_MODEL)
    v, previews, clusters = base_vectors(args, work, embedder)
    cents = task_centroids(embedder)
    rng = np.random.default_rng(0)
    n, dim = args.rows, v.shape[1]
    st = CorpusStore(uri, DEFAULT_MODEL, dim)
    t0 = time.perf_counter()
    chunk = 20_000
    for s, start in enumerate(range(0, n, chunk)):
        idx = np.arange(start, min(n, start + chunk))
        base = idx % len(v)
        x = v[base] + args.sigma * rng.standard_normal((len(idx), dim), dtype=np.float32) / np.sqrt(
            dim
        )
        x /= np.linalg.norm(x, axis=1, keepdims=True)  # [chunk, dim] unit rows
        cols = {
            "id": [f"syn{i}" for i in idx],
            "shard": [f"syn{s:03d}"] * len(idx),
            "row": idx - start,
            "cluster_id": [clusters[b] for b in base],
        }
        for task, c in cents.items():
            cols[score_name(SCORE, task)] = pa.array((x @ c).astype(np.float32))
        cols["preview"] = [previews[b] for b in base]
        cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim)
        path = work / f"syn{s:03d}.parquet"
        pq.write_table(pa.table(cols), path)
        st.ingest_shard(f"syn{s:03d}", path)
        path.unlink()
    ingest_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    st.ensure_ann_index(min_rows=1)
    index_s = time.perf_counter() - t0
    (uri / "ready.json").write_text(
        json.dumps(
            {
                "rows": st.count(),
                "ingest_s": ingest_s,
                "index_s": index_s,
                "base_docs": len(v),
                "sigma": args.sigma,
            }
        )
    )
    bench.log(
        f"store {uri}: {st.count()} rows (ingest {ingest_s:.1f}s, IVF-PQ index {index_s:.1f}s)"
    )
    return str(uri)


# -- server and clients ----------------------------------------------------------------------------
def start_server(store: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    cmd = [
        sys.executable,
        "-m",
        "retriever",
        "serve",
        "--corpus-store",
        store,
        "--port",
        "0",
        *extra,
    ]
    proc = subprocess.Popen(cmd, cwd=bench.REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while True:
        line = proc.stderr.readline()
        if "listening on" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
            return proc, line.split("listening on ")[1].split()[0]
        if (not line and proc.poll() is not None) or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start: {line}")


class Client:
    def __init__(self, url: str):
        host, port = url.split("//")[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())


QUERY_SETS = ("exemplars", "long", "clipped")


def query_texts(n: int, kind: str = "exemplars", max_chars: int = 20_000) -> list[str]:
    """``n`` distinct query texts (fewer when the sources run out), shuffled.

    ``exemplars``: new exemplars, i.e. shared gold records of the four tasks after the 64 used
    for the centroids, whole; ``long``: whole ClimbLab documents of ``corpus_large`` (not in the
    store), cut at ``max_chars`` (the server's limit); ``clipped``: the earlier set, gold records
    and ClimbLab documents cut at 1,000 characters, in equal shares.
    """
    texts: list[str] = []
    if kind == "long":
        texts = [
            r["text"][:max_chars]
            for r in bench.read_jsonl(
                bench.SHARED / "corpus_large" / "climblab_clusters_extra.jsonl", n
            )
        ]
    elif kind == "exemplars":
        per = -(-n // len(GOLD))
        for rel in GOLD.values():
            texts += [
                r["text"][:max_chars]
                for r in bench.read_jsonl(bench.SHARED / "gold" / rel, per, skip=64)
            ]
    else:
        per = max(1, n // (len(GOLD) + 1))
        for rel in GOLD.values():
            texts += [
                r["text"][:1000]
                for r in bench.read_jsonl(bench.SHARED / "gold" / rel, per, skip=64)
            ]
        texts += [
            r["text"][:1000]
            for r in bench.read_jsonl(
                bench.SHARED / "corpus" / "climblab_stream_first1000.jsonl", per
            )
        ]
    texts = list(dict.fromkeys(t for t in texts if t.strip()))[:n]  # distinct
    rng = np.random.default_rng(1)
    rng.shuffle(texts)
    return texts


def token_counts(texts: list[str]) -> np.ndarray:
    """Token counts of the query texts (the default model's tokenizer, untruncated)."""
    from transformers import AutoTokenizer

    from retriever.embed import DEFAULT_MODEL
    from retriever.embed.embedder import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL))
    tok.model_max_length = 10**9  # counting only: no "longer than the maximum" warning
    return np.array([len(ids) for ids in tok(texts, add_special_tokens=True)["input_ids"]])


def token_lengths(texts: list[str], n: np.ndarray, max_seq_length: int) -> dict:
    """What the query set looks like in tokens (``n``: :func:`token_counts`)."""
    return {
        "texts": len(texts),
        "chars_p50": float(np.median([len(t) for t in texts])),
        "tokens_p10_p50_p90": [float(np.percentile(n, q)) for q in (10, 50, 90)],
        "tokens_read_mean": float(np.minimum(n, max_seq_length).mean()),
        "share_over_max_seq_length": float((n > max_seq_length).mean()),
        "max_seq_length": max_seq_length,
    }


class TextFeed:
    """Hands out the query texts in order, each once across all clients (then from the start
    again, counted in ``wrapped``), so no text is embedded twice in a run unless it wraps."""

    def __init__(self, texts: list[str]):
        self.texts, self.i, self.wrapped = texts, 0, 0
        self.lock = threading.Lock()

    def next(self) -> str:
        with self.lock:
            t = self.texts[self.i % len(self.texts)]
            self.i += 1
            self.wrapped += self.i > len(self.texts)
            return t


def run_phase(
    url: str,
    pid: int,
    feed: TextFeed,
    clients: int,
    seconds: float,
    k: int,
    min_score: dict | None,
) -> dict:
    lat: list[list[float]] = [[] for _ in range(clients)]
    fails: list[str] = []
    stop = time.monotonic() + seconds
    rss: list[float] = []
    _, h0 = Client(url).call("GET", "/health")

    def client(c: int) -> None:
        cl = Client(url)
        while time.monotonic() < stop:
            body = {"text": feed.next(), "k": k}
            if min_score:
                body["min_score"] = min_score
            t0 = time.perf_counter()
            try:
                status, r = cl.call("POST", "/corpus", body)
            except Exception as e:  # a dropped connection is a failed request
                fails.append(f"{type(e).__name__}: {e}")
                cl = Client(url)
                continue
            lat[c].append(time.perf_counter() - t0)
            if status != 200 or len(r["results"][0]) != k:
                fails.append(f"{status}: {str(r)[:200]}")

    def sampler() -> None:
        while time.monotonic() < stop:
            rss.append(bench.rss_mb(pid))
            time.sleep(1.0)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    sam = threading.Thread(target=sampler)
    t0 = time.perf_counter()
    sam.start()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    sam.join()
    _, h1 = Client(url).call("GET", "/health")
    all_lat = [x * 1000 for c in lat for x in c]
    reqs = h1["requests"] - h0["requests"]
    fw = h1["embed_forwards"] - h0["embed_forwards"]
    s0, s1 = h0.get("seconds", {}), h1.get("seconds", {})
    per_req = {  # server-side ms per request: embed (queue + forward), search, forward time
        k: 1000 * (s1[k] - s0[k]) / max(reqs, 1) for k in ("embed", "search", "forwards") if k in s1
    }
    for k, v in s1.get("embedder", {}).items():
        per_req[f"embedder_{k}"] = 1000 * (v - s0.get("embedder", {}).get(k, 0.0)) / max(reqs, 1)
    if all_lat and "embed" in per_req:
        per_req["http_and_rest"] = float(np.mean(all_lat)) - per_req["embed"] - per_req["search"]
    return {
        "clients": clients,
        "seconds": round(wall, 1),
        "k": k,
        "filter": min_score,
        "requests": len(all_lat),
        "failed": len(fails),
        "fail_examples": fails[:3],
        "qps": len(all_lat) / wall,
        "latency_ms": bench.percentiles(all_lat),
        "rss_mb": {
            "start": rss[0] if rss else None,
            "middle": rss[len(rss) // 2] if rss else None,
            "end": rss[-1] if rss else None,
            "max": max(rss) if rss else None,
            "samples": [round(x, 1) for x in rss],
        },
        "forwards_per_request": fw / max(reqs, 1),
        "texts_per_forward": (h1["embedded_texts"] - h0["embedded_texts"]) / max(fw, 1),
        "server_ms_per_request": per_req,
        "load_avg": list(os.getloadavg()),
    }


def cli_walls(url: str, store: str, text: str, args) -> dict:
    """Wall seconds of whole ``retriever query`` processes: asking the server (``--server``),
    and (``--cli-local``) loading the model and the store itself (``--corpus-store``)."""
    base = [sys.executable, "-m", "retriever", "query", "-k", str(args.k), "--json"]
    out = {}
    cmds = {"server": [*base, "--server", url, text]}
    if args.cli_local:
        cmds["local"] = [*base, "--corpus-store", store, text]
    for name, cmd in cmds.items():
        walls = []
        for _ in range(args.cli_runs if name == "server" else 1):
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=bench.REPO, check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
        out[name] = {"runs": len(walls), "median_s": float(np.median(walls))}
        bench.log(f"retriever query ({name}): {out[name]['median_s']:.2f} s wall")
    return out


def main() -> None:
    ap = bench.parser(__doc__)
    ap.add_argument("--rows", type=int, default=100_000, help="store rows (default 100,000)")
    ap.add_argument(
        "--base-docs", type=int, default=512, help="real ClimbLab documents embedded as bases"
    )
    ap.add_argument("--scores", help="take the base vectors from this score folder instead")
    ap.add_argument("--sigma", type=float, default=0.5, help="noise norm added to each base vector")
    ap.add_argument("--phases", default="1x10,8x30", help="CLIENTSxSECONDS, comma separated")
    ap.add_argument(
        "--filter",
        metavar="TASK=X",
        help="also a phase (last clients count) with min_score TASK >= X",
    )
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument(
        "--queries",
        type=int,
        default=6000,
        help="distinct query texts, each sent once (a run needing more starts them again)",
    )
    ap.add_argument(
        "--query-set",
        choices=QUERY_SETS,
        default="exemplars",
        help="exemplars: whole held-out gold records (new exemplars: what users ask); long: "
        "whole ClimbLab documents; clipped: gold and ClimbLab cut at 1,000 characters",
    )
    ap.add_argument(
        "--work",
        default=str(bench.REPO / "runs" / "bench_serve"),
        help="where the store is built / reused",
    )
    ap.add_argument("--server-args", default="", help="extra `retriever serve` options, one string")
    ap.add_argument(
        "--cli-runs",
        type=int,
        default=3,
        help="time this many `retriever query --server` processes (0: none)",
    )
    ap.add_argument(
        "--cli-local",
        action="store_true",
        help="also time one `retriever query --corpus-store` process (loads the model)",
    )
    args, report = bench.start(ap, "bench_serve")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    store = build_store(args, work)
    report.data["store"] = json.loads((Path(store) / "ready.json").read_text())
    texts = query_texts(args.queries, args.query_set)
    counts = token_counts(texts)  # before the server: an idle keep-alive connection is closed
    with bench.busy_load(args.busy):
        proc, url = start_server(store, args.server_args.split())
        try:
            cl = Client(url)
            _, health = cl.call("GET", "/health")
            report.data["server"] = {
                "load_s": health["load_s"],
                "backend": health["backend"],
                "rss_mb_loaded": bench.rss_mb(proc.pid),
                "ann_index": health["store"]["ann_index"],
                "search": {
                    k: v
                    for k, v in health["store"].items()
                    if k in ("search", "index", "nprobe", "load_s")
                },
            }
            report.data["queries"] = {
                "set": args.query_set,
                **token_lengths(texts, counts, health.get("max_seq_length", 256)),
            }
            bench.log(f"queries: {report.data['queries']}")
            report.data["server"]["lanes"] = health.get("lanes")
            report.data["server"]["max_seq_length"] = health.get("max_seq_length")
            feed = TextFeed(texts)
            for _ in range(20):  # warm-up: first forwards of each shape, page cache
                cl.call("POST", "/corpus", {"text": feed.next(), "k": args.k})
            report.data["server"]["rss_mb_warm"] = bench.rss_mb(proc.pid)
            phases = [tuple(int(x) for x in p.split("x")) for p in args.phases.split(",")]
            runs = []
            for clients, secs in phases:
                runs.append(run_phase(url, proc.pid, feed, clients, secs, args.k, None))
                bench.log(_line(runs[-1]))
            if args.filter:
                task, _, x = args.filter.partition("=")
                runs.append(
                    run_phase(
                        url, proc.pid, feed, phases[-1][0], phases[-1][1], args.k, {task: float(x)}
                    )
                )
                bench.log(_line(runs[-1]))
            report.data["phases"] = runs
            report.data["texts_sent"] = feed.i
            report.data["texts_wrapped"] = feed.wrapped
            report.data["server"]["rss_mb_end"] = bench.rss_mb(proc.pid)
            if args.cli_runs:
                report.data["cli"] = cli_walls(url, store, texts[0], args)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(
        f"\nstore: {report.data['store']['rows']:,} rows (IVF-PQ), k={args.k}, server load "
        f"{report.data['server']['load_s']:.1f}s, backend {report.data['server']['backend']}, "
        f"search {report.data['server']['search']}, busy={args.busy}"
    )
    for name, c in report.data.get("cli", {}).items():
        print(f"`retriever query` via {name}: {c['median_s']:.2f} s wall (median of {c['runs']})")
    q, srv = report.data["queries"], report.data["server"]
    print(
        f"queries: {q['set']}, {q['texts']} distinct ({report.data['texts_sent']} sent, "
        f"{report.data['texts_wrapped']} repeated), tokens p10/p50/p90 "
        f"{'/'.join(f'{x:.0f}' for x in q['tokens_p10_p50_p90'])}, "
        f"{q['share_over_max_seq_length']:.0%} over {q['max_seq_length']} (read: mean "
        f"{q['tokens_read_mean']:.0f}); lanes {srv['lanes']}; server RSS MB loaded "
        f"{srv['rss_mb_loaded']:.0f}, warm {srv['rss_mb_warm']:.0f}, end {srv['rss_mb_end']:.0f}"
    )
    print(
        "| clients x s | filter | requests | failed | QPS | p50 ms | p90 ms | p99 ms | max ms | "
        "RSS MB start/middle/end | texts/forward | server ms/req embed, search, rest | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in report.data["phases"]:
        lat, m, t = r["latency_ms"], r["rss_mb"], r["server_ms_per_request"]
        print(
            f"| {r['clients']} x {r['seconds']:.0f} | {r['filter'] or '-'} | {r['requests']} | "
            f"{r['failed']} | {r['qps']:.1f} | {lat['p50']:.1f} | {lat['p90']:.1f} | "
            f"{lat['p99']:.1f} | {lat['max']:.1f} | {m['start']:.0f} / {m['middle']:.0f} / "
            f"{m['end']:.0f} | {r['texts_per_forward']:.2f} | {t.get('embed', 0):.1f}, "
            f"{t.get('search', 0):.1f}, {t.get('http_and_rest', 0):.1f} | "
            f"{r['load_avg'][0]:.1f} |"
        )
    report.finish(args.json)


def _line(r: dict) -> str:
    lat = r["latency_ms"]
    return (
        f"{r['clients']} clients x {r['seconds']}s: {r['requests']} requests, {r['failed']} "
        f"failed, {r['qps']:.1f} QPS, p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms"
    )


if __name__ == "__main__":
    main()
