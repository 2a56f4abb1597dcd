"""``retriever proxy train``: parse options into a ProxyConfig and call :func:`train_proxy`."""

from __future__ import annotations

import dataclasses

from retriever._cli import HelpFormatter, add_config_options, config_from_args, print_json


def add_parser(subparsers) -> None:
    from retriever.proxy.config import ProxyConfig

    p = subparsers.add_parser(
        "proxy",
        help="train a proxy LM on a dataset (to measure what a selection teaches)",
        description="Proxy language models: `retriever proxy train DATA --out OUT`.",
        formatter_class=HelpFormatter,
    )
    sub = p.add_subparsers(dest="proxy_command", metavar="VERB")
    t = sub.add_parser(
        "train",
        help="train a causal LM for a fixed token budget (resumable)",
        description=(
            "Train a transformers causal LM on DATA (a build-dataset folder, or corpus files / "
            "folders) for --tokens tokens: from scratch (GPT-2 or Llama of the given size, "
            "byte-level tokenizer offline) or continued pretraining of --init (e.g. "
            "data4elm/Llama-400M-12L). bf16 autocast on CUDA, fp32 on CPU. Seeded data order; "
            "rerun the same command after a kill to resume from the last checkpoint. Writes "
            "OUT/model (from_pretrained-able) and OUT/result.json (tokens, tokens/s, seconds)."
        ),
        formatter_class=HelpFormatter,
    )
    t.add_argument("data", nargs="+", help="dataset folder, corpus files / folders or hf:// ids")
    t.add_argument("-o", "--out", required=True, help="run folder (resumed when it exists)")
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = t.add_argument_group("proxy settings (ProxyConfig fields)")
    add_config_options(
        g,
        ProxyConfig,
        [f.name for f in dataclasses.fields(ProxyConfig)],
        tokens={"type": str},
    )
    t.set_defaults(func=_run_train)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _run_train(args) -> int:
    from retriever.dataset.build import parse_budget
    from retriever.proxy import ProxyConfig, train_proxy

    cfg = config_from_args(ProxyConfig, args, tokens=parse_budget(args.tokens))
    res = train_proxy(
        args.data if len(args.data) > 1 else args.data[0],
        args.out,
        cfg,
        progress=not args.no_progress,
    )
    if args.json:
        print_json(res.to_dict())
    else:
        state = "already finished" if res.cached else ("resumed, " if res.resumed else "") + "done"
        print(
            f"proxy {state}: {res.tokens:,} tokens in {res.seconds:.1f} s "
            f"({res.tokens_per_s:,.0f} tokens/s, {res.device} {res.dtype}), "
            f"final loss {res.final_loss:.4f} -> {res.checkpoint}"
        )
    return 0
