"""``retriever serve``: the HTTP query service (nearest gold exemplars and corpus documents)."""

from __future__ import annotations

import argparse
import dataclasses

from retriever._cli import HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    from retriever.query.corpus_search import SEARCH_MODES
    from retriever.serve.service import POSITIVE_INT_FIELDS, ServeConfig

    d = {f.name: f.default for f in dataclasses.fields(ServeConfig)}
    p = sub.add_parser(
        "serve",
        help="HTTP JSON API: nearest gold exemplars / corpus documents (loads the model once)",
        formatter_class=HelpFormatter,
        description="Load the embedder, the task indexes and the corpus store once, then answer "
        "POST /gold, POST /corpus, GET /health, GET /manifests (see docs/serve.md).",
    )
    p.add_argument("--index", action="append", default=[], help="task index folder (repeatable)")
    p.add_argument("--corpus-store", help="score folder (retriever score --out) or LanceDB URI")
    p.add_argument("--model", help="embedding model (default: the indexes' / store's)")
    p.add_argument(
        "--backend", default=d["backend"], help="embedder backend: auto, torch, openvino"
    )
    p.add_argument("--host", default=d["host"], help="address to listen on")
    p.add_argument(
        "--port", type=int, default=d["port"], help="port (0: a free one, printed at start)"
    )
    for name in POSITIVE_INT_FIELDS:
        p.add_argument("--" + name.replace("_", "-"), type=int, default=d[name], help=_HELP[name])
    p.add_argument(
        "--search",
        default=d["search"],
        choices=SEARCH_MODES,
        help="corpus search: memory (store read once into FAISS, ~1 ms a query), store (LanceDB "
        "each query), auto (memory when it fits in --memory-mb)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=d["threads"],
        help="CPU threads per embedding forward (default: 1 on machines with <= 2 CPUs, else "
        "torch's, i.e. OMP_NUM_THREADS or every core; see docs/serve.md)",
    )
    p.add_argument(
        "--max-seq-length",
        type=int,
        default=d["max_seq_length"],
        help="query truncation in tokens (default: the model's, as the store was embedded; "
        "shorter is faster but moves the hits, see docs/serve.md)",
    )
    p.set_defaults(func=_serve)


_HELP = {
    "max_k": "largest k a request may ask",
    "max_texts": "most texts per request",
    "max_text_chars": "longest text accepted (characters)",
    "max_body_bytes": "largest request body (bytes)",
    "nprobes": "IVF partitions searched in the corpus store",
    "refine_factor": "ANN candidates re-ranked exactly, per hit",
    "max_batch": "most texts per embedding forward across concurrent requests",
    "memory_mb": "most memory --search auto may give the corpus store (MB)",
    "lanes": "embedding forwards run at once, each on its own OpenVINO stream of --threads "
    "threads (2 on a quiet 2-core machine: 1.5x the queries of 1 at 8 clients; slower under "
    "load; docs/serve.md)",
}


def _serve(args) -> int:
    from retriever.serve.server import run_server
    from retriever.serve.service import ServeConfig

    config = ServeConfig(
        indexes=tuple(args.index),
        store=args.corpus_store,
        model=args.model,
        backend=args.backend,
        host=args.host,
        port=args.port,
        max_k=args.max_k,
        max_texts=args.max_texts,
        max_text_chars=args.max_text_chars,
        max_body_bytes=args.max_body_bytes,
        nprobes=args.nprobes,
        refine_factor=args.refine_factor,
        max_batch=args.max_batch,
        search=args.search,
        memory_mb=args.memory_mb,
        threads=args.threads,
        lanes=args.lanes,
        max_seq_length=args.max_seq_length,
    )
    return run_server(config)
