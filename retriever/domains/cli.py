"""``retriever domains``: a domain per scored document (cluster ids or k-means of the
embeddings)."""

from __future__ import annotations

import argparse

from retriever._cli import HelpFormatter, add_config_options, config_from_args, print_json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "domains",
        help="assign corpus domains (ClimbLab cluster ids, or k-means of the stored embeddings)",
        description=(
            "Give every document of a score folder a domain: its cluster_id when the corpus has "
            "one, else the nearest of K k-means centroids of its stored embedding (faiss.Kmeans, "
            "nothing re-embedded). Writes OUT/domains.parquet (id, shard, row, domain, distance) "
            "and OUT/domains.json (size, top terms and samples per domain), for "
            "`build-dataset --order stratified --domains OUT`."
        ),
        formatter_class=HelpFormatter,
    )
    from retriever.domains.assign import SOURCES, DomainConfig

    p.add_argument("--scores", required=True, help="a `retriever score` output folder")
    p.add_argument("-o", "--out", required=True, help="output folder")
    add_config_options(
        p,
        DomainConfig,
        ["source", "k", "niter", "seed", "max_train"],
        source={"choices": SOURCES},
    )
    p.add_argument("--json", action="store_true", help="print domains.json")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from retriever.domains import DomainConfig, assign_domains

    cfg = config_from_args(DomainConfig, args)
    s = assign_domains(args.scores, args.out, cfg)
    if args.json:
        print_json(s)
        return 0
    print(
        f"domains: {len(s['domains'])} ({s['method']}) over {s['n_docs']} documents -> {args.out}"
    )
    for d in s["domains"][:20]:
        print(f"  {d['domain']:<8} {d['size']:>7} ({d['share']:5.1%})  {', '.join(d['top_terms'])}")
    return 0
