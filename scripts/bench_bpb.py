#!/usr/bin/env python
"""Benchmark: the batched BPB scorer against the naive per-document loop, same models and documents.

The baseline (``retriever.confirm.bpb.naive_bits_per_byte``) runs one forward per document window at
batch 1, as a straightforward lm-eval-style loop would. Both run in this process on the same loaded
model, in paired blocks of ``--block`` documents (order rotating,
:func:`retriever.bench.paired_blocks`), so the ratio holds while the machine's load changes; the
script checks they agree (max |dBPB|) and prints the speed ratio (with the 25-75% range of
per-block ratios) and tokens/s. On CUDA it also times the bf16 path (the default there) against
fp32.

``--gpt2-small`` adds a model of realistic size beside the tiny panel: GPT-2 small's shape (12
layers, 768 wide, 12 heads, 1,024 context, 50,257-row output layer: 124M parameters), randomly
initialised (no download), reading the tiny panel's byte tokenizer (one token per byte, so its
tokens/s compare with GPT-2's, its bytes/s are ~4x lower). Conditions (load average, CPU flags,
threads, versions) are printed and written with ``--json`` (:mod:`retriever.bench`).

Examples:
    .venv/bin/python scripts/bench_bpb.py     # tiny panel built here, shared corpus
    .venv/bin/python scripts/bench_bpb.py --threads 2 --n-docs 128
    .venv/bin/python scripts/bench_bpb.py --threads 1 --n-docs 16 --max-chars 2000 --gpt2-small
    .venv/bin/python scripts/bench_bpb.py --models configs/panels/small-open.toml --device cuda
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retriever import bench  # noqa: E402


def _docs(path: str, n: int, max_chars: int | None) -> list[str]:
    from retriever.confirm.tiny_panel import read_texts, synthetic_corpora

    if path and Path(path).exists():
        texts = read_texts([path], max_texts=None)[:n]
    else:
        c = synthetic_corpora(n, seed=0)
        texts = (c["task"] + c["generic"])[:n]
    return [t[:max_chars] for t in texts] if max_chars else texts


def main() -> int:
    ap = bench.parser(__doc__)
    ap.add_argument("--models", help="panel TOML (default: build a tiny byte-level panel here)")
    ap.add_argument(
        "--n-models", type=int, default=2, help="models of the panel to time (default 2)"
    )
    ap.add_argument(
        "--docs",
        default=str(bench.SHARED / "corpus" / "climblab_stream_first1000.jsonl"),
        help="jsonl/parquet corpus (default: the shared ClimbLab sample; synthetic if absent)",
    )
    ap.add_argument("--n-docs", type=int, default=64)
    ap.add_argument(
        "--max-chars", type=int, default=4000, help="clip documents (default 4000 chars)"
    )
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument(
        "--block", type=int, default=8, help="documents per paired block (naive vs batched)"
    )
    ap.add_argument(
        "--gpt2-small",
        action="store_true",
        help="also time a randomly initialised GPT-2-small-sized model (124M parameters)",
    )
    bench.add_bench_args(ap)
    args = ap.parse_args()
    bench.offline_defaults()
    with bench.busy_load(args.busy):
        return run(args)


def gpt2_small(folder: Path):
    """A randomly initialised GPT-2-small-sized causal LM saved in ``folder`` (a panel model)."""
    from retriever.confirm.panel import PanelModel
    from retriever.confirm.tiny_panel import save_random_byte_lm

    model = save_random_byte_lm(
        folder, vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12
    )
    n = sum(p.numel() for p in model.parameters())
    return PanelModel(name="gpt2-small-rand", path=str(folder)), n


def run(args) -> int:
    import numpy as np
    import torch

    from retriever.confirm.bpb import LMScorer, naive_bits_per_byte
    from retriever.confirm.panel import load_panel
    from retriever.confirm.tiny_panel import build_tiny_panel

    if args.threads:
        torch.set_num_threads(args.threads)
    report = bench.BenchReport("bench_bpb", args)
    tmp = None
    panel_path = args.models
    if not panel_path:
        tmp = tempfile.TemporaryDirectory()
        build_tiny_panel(tmp.name, n_models=max(2, args.n_models), steps=20, max_texts=100)
        panel_path = str(Path(tmp.name) / "panel.toml")
    models = list(load_panel(panel_path).models[: args.n_models])
    params = {}
    if args.gpt2_small:
        big, params["gpt2-small-rand"] = gpt2_small(
            Path(tmp.name if tmp else tempfile.mkdtemp()) / "gpt2-small"
        )
        models.append(big)
        print(f"gpt2-small-rand: {params['gpt2-small-rand'] / 1e6:.0f}M parameters, random init")
    texts = _docs(args.docs, args.n_docs, args.max_chars)
    n_bytes = sum(len(t.encode()) for t in texts)
    print(
        f"{len(texts)} docs, {n_bytes} bytes; torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}"
    )
    print(
        f"{'model':16} {'device':6} {'dtype':9} {'ctx':>5} {'tokens':>8} {'naive s':>8} "
        f"{'batched s':>9} {'ratio':>6} {'tok/s batched':>13} {'max|dBPB|':>10}"
    )
    ratios, worst = [], 0.0
    report.data.update(docs=len(texts), bytes=n_bytes, threads=torch.get_num_threads(), models={})
    for m in models:
        sc = LMScorer(
            m,
            device=args.device,
            dtype="float32",
            max_batch_tokens=args.batch_tokens,
            max_batch_size=args.batch_size,
        )
        sc.bits_per_byte(texts[:2])  # warm-up (allocator, kernels)
        n_tok: list[int] = []

        def batched(ts, sc=sc, n_tok=n_tok):
            res = sc.bits_per_byte(ts)
            n_tok.append(int(res.n_tokens.sum()))
            return res.bpb

        # paired blocks: naive and batched on the same documents seconds apart, order rotating,
        # so a load change during the run hits both (a whole naive pass, then a whole batched
        # one, gave 0.7x or 1.5x depending on when other jobs came and went)
        res = bench.paired_blocks(
            {"naive": lambda ts, sc=sc: naive_bits_per_byte(sc, ts).bpb, "batched": batched},
            texts,
            args.block,
            1,
            "naive",
        )
        t_slow, t_fast = res["naive"]["seconds"], res["batched"]["seconds"]
        diff = float(np.nanmax(np.abs(res["batched"]["out"] - res["naive"]["out"])))
        worst = max(worst, diff)
        tokens = sum(n_tok)
        ratios.append(t_slow / t_fast)
        report.data["models"][m.name] = {
            "device": sc.device,
            "ctx": sc.max_length,
            "tokens": tokens,
            "naive_s": t_slow,
            "batched_s": t_fast,
            "ratio": t_slow / t_fast,
            "block_ratio_iqr": res["batched"]["block_ratio_iqr"],
            "tokens_per_s_batched": tokens / t_fast,
            "tokens_per_s_naive": tokens / t_slow,
            "max_dbpb": diff,
            "params": params.get(m.name),
        }
        print(
            f"{m.name:16} {sc.device:6} {'float32':9} {sc.max_length:>5} {tokens:>8} "
            f"{t_slow:>8.2f} {t_fast:>9.2f} {t_slow / t_fast:>5.1f}x {tokens / t_fast:>13.0f} "
            f"{diff:>10.2e}  (per-block {res['batched']['block_ratio_iqr'][0]:.1f}-"
            f"{res['batched']['block_ratio_iqr'][1]:.1f}x)"
        )
        if sc.device.startswith("cuda"):
            half = LMScorer(
                m,
                device=args.device,
                dtype="auto",
                max_batch_tokens=args.batch_tokens,
                max_batch_size=args.batch_size,
            )
            half.bits_per_byte(texts[:2])
            torch.cuda.synchronize()
            fast = sc.bits_per_byte(texts)
            torch.cuda.synchronize()
            res_h, t_half = bench.timed(half.bits_per_byte, texts)
            torch.cuda.synchronize()
            dh = float(np.nanmax(np.abs(res_h.bpb - fast.bpb)))
            print(
                f"{m.name:16} {half.device:6} {str(half.dtype).replace('torch.', ''):9} "
                f"{half.max_length:>5} {tokens:>8} {'':>8} {t_half:>9.2f} {t_fast / t_half:>5.1f}x "
                f"{tokens / t_half:>13.0f} {dh:>10.2e}  (ratio vs fp32 batched; dBPB vs fp32)"
            )
            del half
        del sc
    same = worst <= 1e-4
    print(
        f"batched vs naive: mean speed ratio {np.mean(ratios):.1f}x over {len(ratios)} model(s); "
        f"max |dBPB| {worst:.1e} ({'same BPB to 1e-4' if same else 'MISMATCH above 1e-4'})"
    )
    report.finish(args.json)
    if tmp:
        tmp.cleanup()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
