"""``retriever band``: BPB under one reference model, documents kept between two quantiles."""

from __future__ import annotations

import argparse

from retriever._cli import (
    HelpFormatter,
    add_config_options,
    add_reader_options,
    config_from_args,
    print_json,
    reader_from_args,
)
from retriever.names import SCORE, score_name


def add_parser(subparsers) -> None:
    from retriever.band.stage import BandConfig
    from retriever.confirm.bpb import DTYPES

    p = subparsers.add_parser(
        "band",
        help="perplexity band: BPB under a reference LM, keep documents between two quantiles",
        description=(
            "Compute every document's bits per byte under one small reference causal LM (the "
            "confirm stage's batched, cached BPB), then keep the documents between the --low and "
            "--high quantiles: the low end is boilerplate, the high end noise. Writes "
            "OUT/band.parquet (id, bpb, in_band, side, score_<task>) and OUT/summary.json (the "
            "cuts, counts, histogram, Spearman of BPB with each task's similarity). A rerun with "
            "other quantiles computes nothing."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--docs", nargs="+", required=True, help="a score folder, or corpus paths")
    p.add_argument("-o", "--out", required=True, help="output folder (BPB cache inside)")
    add_config_options(
        p,
        BandConfig,
        ["model", "name", "tokenizer", "max_length", "low", "high", "max_docs", "seed"]
        + ["device", "dtype", "max_batch_tokens", "max_batch_size", "block_docs"],
        model={"required": True},
        dtype={"choices": list(DTYPES)},
    )
    add_reader_options(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from retriever._cli import show_progress
    from retriever.band.stage import BandConfig, band_docs

    cfg = config_from_args(BandConfig, args, reader=reader_from_args(args))
    s = band_docs(args.docs, args.out, cfg, progress=show_progress())
    if args.json:
        print_json(s)
        return 0
    rej = sum(s["rejected"].values())
    print(
        f"band {s['model_name']}: {s['docs_in']} docs in = {s['in_band']} in band + "
        f"{s['below_band']} below + {s['above_band']} above + {rej} rejected"
    )
    print(
        f"  cuts: quantile {s['low']} = {s['cut_low_bpb']:.4f} BPB, quantile {s['high']} = "
        f"{s['cut_high_bpb']:.4f} BPB (mean {s['bpb_mean']:.4f})"
    )
    for t, r in s["spearman_bpb_vs_similarity"].items():
        print(f"  Spearman(BPB, {score_name(SCORE, t)}) = {r:+.3f}")
    c = s["cost"]
    if c["computed_docs"]:
        print(
            f"  BPB: {c['computed_docs']} docs computed ({c['cached_docs']} cached), "
            f"{c['tokens_per_s']} tokens/s, {c['docs_per_s']} docs/s on {c['device']}"
        )
    print(f"  -> {args.out}/band.parquet, {args.out}/summary.json")
    return 0
