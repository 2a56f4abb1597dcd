"""``retriever build-dataset``: parse options, call :class:`retriever.dataset.DatasetBuilder`."""

from __future__ import annotations

import argparse

from retriever._cli import (
    add_config_options,
    add_reader_options,
    add_repeated,
    config_from_args,
    parse_named_paths,
    print_json,
    reader_from_args,
)
from retriever.dataset.config import DATASET_FORMATS, ORDERS, DatasetConfig, parse_budget


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "build-dataset",
        help="sample the filtered pools to a token budget (LMFlow json + parquet)",
        description=(
            "Sample the per-task filtered pools to a token budget, deduplicated across tasks, "
            "highest score first (or score-weighted), into LMFlow text_only json and parquet "
            "parts with a manifest of tokens per task and per source cluster. Rerun the same "
            "command to finish a killed build; OUT/summary.json marks a finished one."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--pools", help="the filter stage's output folder (one sub-folder per task)")
    add_repeated(
        p,
        "--pool",
        "NAME=PATH",
        "an extra pool, e.g. a general-quality pool: general=/data/fineweb_edu (repeatable); "
        "corpus files are read with the reader options below, like every stage reading the "
        "corpus, and a stage's output (a folder beside its manifest.json) as it wrote it",
    )
    p.add_argument(
        "--mixture",
        required=True,
        help="pool weights: 'fc=0.6,reasoning=0.4', 'equal', best.json (mix fit) or mixtures.csv "
        "(mix propose); or domain weights 'domain/k000=0.3,domain/k001=0.7' (mix propose --over "
        "domains): the budget split between the domains of every pool's documents",
    )
    p.add_argument("--mix-id", help="the row of a mixtures .csv to use")
    p.add_argument("--budget", required=True, help="total tokens: 10B, 500M, 2.5k or a number")
    p.add_argument("-o", "--out", required=True, help="output folder")
    d = DatasetConfig()
    add_config_options(
        p,
        DatasetConfig,
        ["order", "seed", "domains", "tokenizer", "use_token_count", "part_tokens"],
        order={
            "choices": list(ORDERS),
            "metavar": "{" + ",".join(ORDERS) + "}",
        },
        use_token_count={"flag": "--token-count"},
        part_tokens={"type": parse_budget},
    )
    p.add_argument(
        "--tiers",
        default=",".join(f"{c:g}:{s:g}" for c, s in d.tiers),
        help="stratified tiers CUT:SHARE,...: the top 10%% of each domain give 70%% of the tokens, "
        "10-50%% give 30%%",
    )
    p.add_argument(
        "--format",
        default=",".join(d.formats),
        help=f"comma-separated: {', '.join(DATASET_FORMATS)}",
    )
    p.add_argument(
        "--score-key",
        action="append",
        default=None,
        metavar="KEY",
        help="metadata key of the score, {pool} = pool name (repeatable; default "
        f"{', '.join(d.score_keys)}; legacy prob/{{pool}}, sim/{{pool}} are read too)",
    )
    add_config_options(p, DatasetConfig, ["scan_cache", "workers"])
    add_reader_options(p)
    add_repeated(
        p,
        "--decontaminate",
        "TASK=FILE",
        "drop pool documents sharing a 13-gram with the evaluation records in FILE "
        "(jsonl; repeatable); 'elmb' = the four local ELMB evaluation sets",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retriever.dataset import DatasetBuilder, corpus_pools, discover_pools, parse_mixture

    pools = discover_pools(args.pools, parse_named_paths(args.pool, "--pool"))
    mixture = parse_mixture(args.mixture, list(pools), args.mix_id)
    config = dataset_config_from_args(args)
    builder = DatasetBuilder(
        pools,
        mixture,
        parse_budget(args.budget),
        config,
        corpus_pools=corpus_pools(pools, config.reader),
    )
    summary = builder.build(args.out)
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary, args.out))
    return 0


def dataset_config_from_args(args: argparse.Namespace) -> DatasetConfig:
    """The :class:`DatasetConfig` of the parsed options (the generated ones, plus the lists and
    pairs this CLI parses itself)."""
    return config_from_args(
        DatasetConfig,
        args,
        tiers=parse_tiers(args.tiers),
        formats=tuple(f.strip() for f in args.format.split(",") if f.strip()),
        score_keys=tuple(args.score_key) if args.score_key else DatasetConfig().score_keys,
        decontaminate=parse_decontaminate(args.decontaminate),
        reader=reader_from_args(args),
    )


def parse_decontaminate(items: list[str], option: str = "--decontaminate") -> dict[str, str]:
    """``["rag=eval/rag.jsonl", "elmb"]`` -> ``{task: path}`` (``elmb``: the local ELMB sets);
    ``option``: the option they came from, named by the error."""

    out: dict[str, str] = {}
    for item in items:
        if item == "elmb":
            from retriever.evaluation.elmb import default_eval_dir, local_eval_sets

            out.update({t: str(p) for t, p in local_eval_sets(default_eval_dir()).items()})
            continue
        out.update(parse_named_paths([item], option, "TASK=FILE or elmb"))
    return out


def format_summary(s: dict, out: str) -> str:
    """One screen: tokens per pool against its budget, duplicates, where the files are."""
    lines = [
        f"training set in {out}: {s['tokens']:,} tokens of {s['budget']:,} budget, {s['docs']:,} "
        "docs"
    ]
    lines.append(f"  {'pool':<24}{'weight':>8}{'tokens':>16}{'budget':>16}{'docs':>10}{'dups':>8}")
    for name, p in s["pools"].items():
        lines.append(
            f"  {name:<24}{p['weight']:>8.3f}{p['tokens']:>16,}{p['budget']:>16,}{p['docs']:>10,}"
            f"{p['counts'].get('dropped/duplicate', 0):>8,}"
            + (
                f"   short by {p['shortfall']:,} (pool exhausted)"
                if p["shortfall"] and not p["counts"].get("dropped/budget")
                else ""
            )
        )
    c = s["counts"]
    rej = sum(v for k, v in c.items() if k.startswith("rejected/"))
    lines.append(
        f"  docs in {c.get('seen', 0):,} = kept {c.get('kept', 0):,} + duplicates "
        f"{c.get('dropped/duplicate', 0):,} + over budget {c.get('dropped/budget', 0):,}"
        + (
            f" + contaminated {c['dropped/contaminated']:,}"
            if c.get("dropped/contaminated")
            else ""
        )
        + f" + rejected {rej:,}"
    )
    m = s["token_counting"]["docs_by_method"]
    lines.append("  tokens counted by: " + ", ".join(f"{k} {v:,}" for k, v in m.items()))
    lines.append(f"  {len(s['parts'])} part(s); manifest: {out}/summary.json")
    return "\n".join(lines)


def parse_tiers(spec: str) -> tuple[tuple[float, float], ...]:
    """``"0.1:0.7,0.5:0.3"`` -> ``((0.1, 0.7), (0.5, 0.3))``."""
    from retriever.errors import ConfigError

    out = []
    for part in spec.split(","):
        try:
            cut, share = part.split(":")
            out.append((float(cut), float(share)))
        except ValueError:
            raise ConfigError(
                f"--tiers {spec!r}: write CUT:SHARE pairs, e.g. 0.1:0.7,0.5:0.3"
            ) from None
    return tuple(out)
