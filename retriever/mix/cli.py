"""``retriever mix propose|fit``: parse options, call :mod:`retriever.mix`."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from retriever._cli import (
    add_config_options,
    add_reader_options,
    add_repeated,
    config_from_args,
    parse_named_paths,
    print_json,
    reader_from_args,
)


def add_parser(subparsers) -> None:
    from retriever.dataset.config import DatasetConfig
    from retriever.mix.run import MixRunConfig

    p = subparsers.add_parser(
        "mix",
        help="mixture search (RegMix): propose mixtures, fit proxy results",
        description=(
            "RegMix: `propose` writes candidate mixtures over the task pools, or over the corpus "
            "domains of their documents (--over domains), by Dirichlet sampling around their "
            "token shares; train one small proxy model per mixture (build-dataset "
            "--mixture mixtures.csv --mix-id I), add its validation scores as columns, then `fit` "
            "regresses scores on weights, reports held-out rank correlation and proposes the best "
            "mixture."
        ),
    )
    sub = p.add_subparsers(dest="mix_command", metavar="{propose,fit,run}")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    pp = sub.add_parser(
        "propose",
        help="write candidate mixtures (CSV) for proxy runs",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = pp.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--pools", help="the filter stage's output folder: token shares are counted from it"
    )
    src.add_argument("--shares", help="token shares or counts instead: 'fc=3e9,reasoning=1e9'")
    add_config_options(pp, MixRunConfig, ["over"], over={"choices": ["pools", "domains"]})
    pp.add_argument(
        "--domains",
        help="with --over domains: a `retriever domains` folder (default: records' cluster_id)",
    )
    add_repeated(
        pp,
        "--pool",
        "NAME=PATH",
        "an extra pool (e.g. general=PATH), with --pools; corpus files are read with the reader "
        "options below, as build-dataset reads them",
    )
    pp.add_argument("--n", type=int, default=64, help="number of mixtures (proxy runs)")
    pp.add_argument("-o", "--out", default="mixtures.csv", help="output CSV (settings in OUT.json)")
    add_config_options(
        pp, MixRunConfig, ["seed", "temperature", "min_strength", "max_strength", "minimum"]
    )
    pp.add_argument("--budget", help="tokens of the final training set: caps each pool's weight")
    add_config_options(pp, MixRunConfig, ["max_epochs"])
    add_config_options(pp, DatasetConfig, ["tokenizer"])
    pp.add_argument("--scan-cache", help="scan cache folder (share it with build-dataset)")
    add_config_options(pp, DatasetConfig, ["workers"])
    add_reader_options(pp)
    pp.add_argument("--json", action="store_true", help="print the proposals as JSON")
    pp.set_defaults(func=run_propose)

    pf = sub.add_parser(
        "fit",
        help="fit proxy results, report held-out Spearman, propose the best mixture",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    pf.add_argument("results", help="CSV: mix_id, weight/<pool>..., one column per proxy score")
    pf.add_argument(
        "--target", help="score column to optimize (default score/total, else the mean)"
    )
    pf.add_argument("--minimize", action="store_true", help="lower is better (a validation loss)")
    add_config_options(
        pf,
        MixRunConfig,
        ["model", "folds", "samples", "top_k", "seed"],
        model={"choices": ["auto", "linear", "quadratic", "gbm"]},
    )
    pf.add_argument(
        "-o", "--out", default="best_mixture.json", help="output (build-dataset --mixture reads it)"
    )
    pf.add_argument("--json", action="store_true", help="print the result as JSON")
    pf.set_defaults(func=run_fit)

    pr = sub.add_parser(
        "run",
        help="RegMix end to end: propose, build, train and evaluate proxies, fit, propose the best",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "One resumable command over a finished run: proposes [mix] n mixtures over the run's "
            "task pools and a general pool, builds each one's dataset at one budget, trains and "
            "evaluates a proxy per mixture (the [evaluate] proxy and evaluation settings), fits "
            "the regression and writes RUN/mix/best_mixture.json."
        ),
    )
    pr.add_argument("config", help="run config (TOML) with [mix] and [evaluate] sections")
    pr.add_argument("--n", type=int, default=None, help="mixtures (default [mix] n, 8)")
    pr.add_argument("--seeds", type=int, default=None, help="proxies per mixture (default 1)")
    pr.add_argument("--budget", default=None, help="tokens per mixture dataset")
    pr.add_argument("--metric", default=None, choices=["bpb", "acc", "acc_norm"])
    pr.add_argument(
        "--over",
        default=None,
        choices=["pools", "domains"],
        help="mix the pools or the domains of their documents (default [mix] over, pools)",
    )
    pr.add_argument("-o", "--out", default=None, help="output folder (default RUN/mix)")
    pr.add_argument("--json", action="store_true", help="print the fit as JSON")
    pr.set_defaults(func=run_mix)


def _pairs(spec: str) -> dict[str, float]:
    from retriever.dataset import parse_mixture

    return parse_mixture(spec)


def run_propose(args: argparse.Namespace) -> int:
    from retriever.dataset import (
        corpus_pools,
        discover_pools,
        domain_key,
        domain_token_counts,
        parse_budget,
        pool_token_counts,
    )
    from retriever.dataset.mixture import DOMAIN_PREFIX
    from retriever.dataset.pools import reader_changes
    from retriever.errors import ConfigError
    from retriever.mix.propose import propose, write_proposals
    from retriever.mix.run import MixRunConfig

    if args.domains and args.over != "domains":
        raise ConfigError("--domains is for --over domains (a mixture over the corpus domains)")
    shares: Mapping[str, float]
    reader = reader_from_args(args)
    read_as_corpus: list[str] = []
    if args.pools:
        pools = discover_pools(args.pools, parse_named_paths(args.pool, "--pool"))
        read_as_corpus = corpus_pools(pools, reader)
        count = {
            "tokenizer": args.tokenizer,
            "scan_cache": args.scan_cache,
            "workers": args.workers,
            "reader": reader,
            "corpus_pools": read_as_corpus,
        }
        if args.over == "domains":
            shares = domain_token_counts(pools, args.domains, **count)
        else:
            shares = pool_token_counts(pools, **count)
        if not any(shares.values()):
            raise ConfigError(f"every pool in {args.pools} is empty: nothing to mix")
    else:
        shares = _pairs(args.shares)
        if args.over == "domains":  # `--shares k000=3,k001=1`: the domain names, keyed
            shares = {
                k if k.startswith(DOMAIN_PREFIX) else domain_key(k): v for k, v in shares.items()
            }
    budget = parse_budget(args.budget) if args.budget else None
    mixes, upper = propose(shares, config_from_args(MixRunConfig, args), budget, args.n)
    info = {
        "over": args.over,
        **({"domains": args.domains} if args.domains else {}),
        "shares": shares,
        "seed": args.seed,
        "temperature": args.temperature,
        "min_strength": args.min_strength,
        "max_strength": args.max_strength,
        "minimum": args.minimum,
        "budget": budget,
        "max_epochs": args.max_epochs,
        "upper": None if upper is None else dict(zip(shares, upper.tolist(), strict=True)),
        # only when set, as build-dataset's manifest records it
        **(
            {"reader": {"pools": read_as_corpus, **changed}}
            if read_as_corpus and (changed := reader_changes(reader))
            else {}
        ),
    }
    write_proposals(args.out, mixes, info)
    if args.json:
        print_json({"out": args.out, "mixtures": mixes, **info})
    else:
        total = sum(shares.values())
        what = "domains" if args.over == "domains" else "pools"
        print(f"{len(mixes)} mixtures over {len(shares)} {what} -> {args.out}")
        for k, v in shares.items():
            ws = [m[k] for m in mixes]
            print(
                f"  {k:<24} share {v / total:6.3f}   proposed weight {min(ws):.3f}..{max(ws):.3f}"
            )
        print(
            "next: one proxy run per row (build-dataset --mixture CSV --mix-id I), add score "
            "columns, then `retriever mix fit CSV`"
        )
    return 0


def run_fit(args: argparse.Namespace) -> int:
    from retriever.corpus import write_json_atomic
    from retriever.io import disk_guard
    from retriever.mix import fit_mixture, read_results

    res = read_results(args.results)
    out = fit_mixture(
        res,
        args.target,
        model=args.model,
        maximize=not args.minimize,
        folds=args.folds,
        n_samples=args.samples,
        top_k=args.top_k,
        seed=args.seed,
    )
    with disk_guard(args.out):
        write_json_atomic(args.out, out)
    if args.json:
        print_json(out)
        return 0
    print(f"{out['n_runs']} proxy runs, target {out['target']} ({out['goal']})")
    print(
        f"  held-out fit ({args.folds}-fold)  "
        + "  ".join(f"{m:>10}" for m in next(iter(out["fit"].values())))
    )
    for col, per_model in out["fit"].items():
        print(
            f"  {col[:30]:<31}" + "  ".join(f"{v['spearman']:>10.3f}" for v in per_model.values())
        )
    print(f"  model: {out['model']} (Spearman {out['held_out_spearman']:.3f})")
    print(
        "  best mixture: "
        + ", ".join(f"{k}={v:.3f}" for k, v in out["weights"].items())
        + f"  (predicted {out['predicted']:.4g}; best run {out['best_observed']['mix_id']}: "
        f"{out['best_observed']['value']:.4g})"
    )
    if out["skipped_runs"]:
        print(f"  skipped runs without a value: {', '.join(out['skipped_runs'])}")
    print(f"  -> {args.out}  (retriever build-dataset --mixture {args.out} ...)")
    return 0


def run_mix(args: argparse.Namespace) -> int:
    from retriever._cli import show_progress
    from retriever.arms.run import stderr_progress
    from retriever.mix.run import mix_run

    overrides = {
        "n": args.n,
        "seeds": args.seeds,
        "budget": args.budget,
        "metric": args.metric,
        "over": args.over,
        "out": args.out,
    }
    res = mix_run(args.config, overrides, progress=show_progress(), on_proxy=stderr_progress)
    b = res.best
    if args.json:
        print_json(b)
        return 0
    print(
        f"{b['n_runs']} mixtures, {res.trained} proxies trained; target {b['metric']} "
        f"averaged over tasks ({b['goal']}); model {b['model']} "
        f"(held-out Spearman {b['held_out_spearman']:.3f})"
    )
    print(
        "  best mixture: "
        + ", ".join(f"{k}={v:.3f}" for k, v in b["weights"].items())
        + f"  (predicted {b['predicted']:.4g}; best run {b['best_observed']['mix_id']}: "
        f"{b['best_observed']['value']:.4g})"
    )
    print(
        f"  -> {res.out}/best_mixture.json, results.csv  "
        f"(retriever build-dataset --mixture {res.out}/best_mixture.json ...)"
    )
    return 0
