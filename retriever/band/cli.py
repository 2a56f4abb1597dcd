"""``retriever band``: BPB under one reference model, documents kept between two quantiles."""

from __future__ import annotations

import argparse

from retriever._cli import HelpFormatter, print_json
from retriever.names import SCORE, score_name


def add_parser(subparsers) -> None:
    from retriever.band.stage import BandConfig

    d = BandConfig.__dataclass_fields__
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
    p.add_argument("--out", required=True, help="output folder (BPB cache inside)")
    p.add_argument("--model", required=True, help="reference causal LM: Hub id or local folder")
    p.add_argument("--name", default=None, help="cache name of the model (default: its folder)")
    p.add_argument("--tokenizer", default=None, help="tokenizer id or folder (default: the model)")
    p.add_argument("--max-length", type=int, default=None, help="tokens per window")
    p.add_argument("--low", type=float, default=d["low"].default, help="lower quantile kept")
    p.add_argument("--high", type=float, default=d["high"].default, help="upper quantile kept")
    p.add_argument("--max-docs", type=int, default=None, help="BPB for a seeded sample of N docs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--max-batch-tokens", type=int, default=d["max_batch_tokens"].default)
    p.add_argument("--text-field", default="text")
    p.add_argument("--id-field", default="id")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from retriever._cli import show_progress
    from retriever.band.stage import BandConfig, band_docs

    cfg = BandConfig(
        model=args.model,
        name=args.name,
        tokenizer=args.tokenizer,
        max_length=args.max_length,
        low=args.low,
        high=args.high,
        max_docs=args.max_docs,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        max_batch_tokens=args.max_batch_tokens,
        text_field=args.text_field,
        id_field=args.id_field,
    )
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
