"""What `retriever rate` costs on its own side: requests/s and docs/s against a local server.

A tiny randomly initialised byte-level GPT-2 (2 layers, 64 wide: its answers are noise, so every
answer is "unparseable"; the point is the client's throughput, not the ratings) is served by
``python -m retriever.rate.local_server`` in a subprocess; ``retriever rate`` rates the first N
ClimbLab documents of the shared data with the function-calling rubric, at several concurrencies
and an optional simulated latency per request (``--delay``, as a remote endpoint's network and
queue time). A rerun of the same folder measures the cache path (no request at all).
``--fixed`` serves a fixed answer ("Score: 3") instead of the model: the server then costs ~0,
so the figures are the client's own (HTTP, threads, cache writes, parquet outputs).

Numbers here say what the client adds; a real LLM's generation time dominates a real run
(requests/s = concurrency / latency at most).

    .venv/bin/python scripts/bench_rate.py [--docs 48] [--concurrency 1,4,8] [--delay 0,0.2]
    .venv/bin/python scripts/bench_rate.py --fixed --docs 200 --concurrency 1,4,16 --delay 0,0.05

The conditions (load average before and after, CPU flags, threads, library versions) are printed
and written with ``--json PATH`` (:mod:`retriever.bench`); ``--busy N`` adds a competing load.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from retriever import bench

CORPUS = bench.SHARED / "corpus" / "climblab_stream_first1000.jsonl"


def tiny_model(folder: Path) -> None:
    from retriever.confirm.tiny_panel import save_random_byte_lm

    save_random_byte_lm(folder, n_positions=4096, n_embd=64, n_layer=2, n_head=2)


def main() -> int:
    ap = bench.parser(__doc__)
    ap.add_argument("--docs", type=int, default=48, help="documents rated per setting")
    ap.add_argument("--concurrency", default="1,4,8")
    ap.add_argument("--delay", default="0,0.2", help="simulated seconds of latency per request")
    ap.add_argument("--max-chars", type=int, default=1500)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument(
        "--fixed",
        action="store_true",
        help="a server answering 'Score: 3' without a model: the client's own throughput",
    )
    args, report = bench.start(ap, "bench_rate")
    from retriever.rate import EndpointConfig, RateConfig, rate_docs
    from retriever.rate.local_server import serve_in_subprocess

    rows = []
    with bench.busy_load(args.busy), tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lines = CORPUS.read_text().splitlines()[: args.docs]
        (tmp / "corpus").mkdir()
        (tmp / "corpus" / "docs.jsonl").write_text("\n".join(lines) + "\n")
        if not args.fixed:
            tiny_model(tmp / "model")
        for delay in [float(x) for x in args.delay.split(",")]:
            model = ["--fixed", "tiny=Score: 3"] if args.fixed else ["--model", f"tiny={tmp}/model"]
            with serve_in_subprocess(*model, "--delay", str(delay)) as url:
                for conc in [int(x) for x in args.concurrency.split(",")]:
                    out = tmp / f"out-{delay}-{conc}"
                    cfg = RateConfig(
                        tasks=("function-calling",), api_key_env="", concurrency=conc,
                        max_chars=args.max_chars,
                        endpoint=EndpointConfig(
                            base_url=url, model="tiny", max_tokens=args.max_tokens
                        ),
                    )  # fmt: skip
                    s = rate_docs(tmp / "corpus", out, cfg, indexes_dir=bench.REPO / "indexes")
                    again, cached_s = bench.timed(
                        rate_docs, tmp / "corpus", out, cfg, indexes_dir=bench.REPO / "indexes"
                    )
                    rows.append(
                        {
                            "delay_s": delay,
                            "concurrency": conc,
                            "docs": args.docs,
                            "requests": s["requests"],
                            "requests_per_s": s["requests_per_s"],
                            "docs_per_s": s["docs_per_s"],
                            "prompt_tokens_per_request": round(s["prompt_tokens"] / s["requests"]),
                            "rerun_requests": again["requests"],
                            "rerun_docs_per_s": round(args.docs / cached_s, 1),
                        }
                    )
    report.data["rows"] = rows
    print("delay_s  concurrency  requests/s  docs/s  prompt tok/req  rerun: requests  docs/s")
    for r in rows:
        print(
            f"{r['delay_s']:7.2f}  {r['concurrency']:11d}  {r['requests_per_s']:10.2f}  "
            f"{r['docs_per_s']:6.2f}  {r['prompt_tokens_per_request']:14d}  "
            f"{r['rerun_requests']:15d}  {r['rerun_docs_per_s']:6.1f}"
        )
    report.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
