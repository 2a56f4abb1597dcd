"""How far the cheap signals agree with similarity and with the confirm stage's labels.

For a finished run folder (``scores/`` and ``confirm/labels/``, e.g. ``retriever run
configs/offline.toml``), per task and per signal:

- *vs similarity*: Spearman of the signal with ``score_<task>`` over the documents that have both,
  and the same within length quintiles (mean of the five within-quintile Spearmans): similarity
  falls with a document's length and match counts rise with it, so the plain figure mixes in
  length;
- *vs confirm*: Spearman with the confirm stage's ``correlation`` over the task's candidates (the
  documents it measured), and the AUC of the signal for ``positive`` against ``negative``
  candidates (uncertain ones and the random non-candidates left out: those are negatives by
  construction, which any similarity-like signal separates trivially);
- *top sets*: the share of the similarity top ``--top`` fraction, and of the confirmed positives,
  inside the signal's kept set (prefilter: ``kw_<task> >= 1``; band: between the 10% and 90% BPB
  quantiles; rating: ``int_score >= 3``), with Wilson intervals.

Spearman and AUC come with percentile bootstrap 95% intervals over documents
(:func:`retriever.metrics.bootstrap_interval`). Similarity itself is the first row (its own
agreement with confirm), so each signal can be read against it.

The signals are computed here with the stages themselves, into ``--work`` (reused by a rerun):

- **prefilter**: ``prefilter_corpus`` (default patterns, features mode) over every scored document;
- **band**: ``band_docs`` over the confirm candidates plus ``--band-sample`` other documents (-1:
  every document, so the cuts are the corpus's quantiles), under
  ``--band-model`` (default: a tiny byte-level GPT-2 trained here for ``--ref-steps`` steps on the
  WikiText articles of the corpus, as a prose reference);
- **rating**: ``rate_docs`` against ``retriever.rate.local_server`` in a subprocess serving
  ``--rate-model`` (default: a tiny *random* byte-level GPT-2: no instruct model is available
  offline, so its answers are noise and its ratings carry no signal; the rows say how many answers
  parsed at all), over ``--rate-docs`` labelled documents for every task.

    .venv/bin/python scripts/eval_signals.py --run ../runs/offline [--work /tmp/signals] \
        [--json signals.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from retriever.metrics import wilson
from retriever.names import KEYWORDS, SCORE, score_name

REPO = Path(__file__).resolve().parents[1]


def fmt(t, pct: bool = False) -> str:
    v, lo, hi = t
    if not math.isfinite(v):
        return "n/a".rjust(22)
    if pct:
        return f"{v:6.1%} [{lo:5.1%}, {hi:5.1%}]"
    return f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]".rjust(22)


# -- inputs -------------------------------------------------------------------------------------
def load_run(run: Path, tasks: list[str] | None):
    import pyarrow.parquet as pq

    from retriever.score import read_scores

    label_dir = run / "confirm" / "labels"
    if not label_dir.is_dir():
        raise SystemExit(f"{run} has no confirm/labels: run the run config's confirm step first")
    tasks = tasks or sorted(p.stem for p in label_dir.glob("*.parquet"))
    cols = ["id", "n_chars"] + [score_name(SCORE, t) for t in tasks]
    sc = read_scores(run / "scores", columns=cols).to_pydict()
    labels = {}
    for t in tasks:
        lab = pq.read_table(
            label_dir / f"{t}.parquet", columns=["id", "label", "correlation", "source"]
        )
        labels[t] = lab.to_pydict()
    return tasks, sc, labels


def write_docs(run: Path, path: Path, ids: set[str] | None = None) -> int:
    """The scored documents (all, or ``ids``) as jsonl ``{"id", "text"}``: the stages' input."""
    from retriever.score import iter_scored_docs

    if path.exists():
        return sum(1 for _ in path.open())
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        for d in iter_scored_docs(run / "scores", ids=ids):
            fh.write(json.dumps({"id": d.id, "text": d.text}) + "\n")
            n += 1
    tmp.rename(path)
    return n


def train_reference(out: Path, texts: list[str], steps: int) -> Path:
    """A tiny byte-level GPT-2 trained on ``texts`` (a prose reference for the band)."""
    from retriever.confirm.tiny_panel import train_tiny_panel

    if not (out / "ref-0" / "config.json").exists():
        train_tiny_panel(
            out, {"wiki": texts}, steps=steps, n_models=1, mixes=[{"wiki": 1.0}], name="ref"
        )
    return out / "ref-0"


def random_lm(out: Path) -> Path:
    from retriever.confirm.tiny_panel import save_random_byte_lm

    if not (out / "config.json").exists():
        save_random_byte_lm(out, n_positions=4096, n_embd=64, n_layer=2, n_head=2)
    return out


def stratified_spearman(x: np.ndarray, y: np.ndarray, length: np.ndarray, k: int = 5) -> float:
    """Mean Spearman of ``x`` and ``y`` within ``k`` quantile bins of ``length`` (weighted by
    bin size; bins where it is undefined are left out)."""
    from retriever.metrics import spearman

    if len(length) < 3:
        return math.nan
    edges = np.quantile(length, np.linspace(0, 1, k + 1)[1:-1])
    b = np.searchsorted(edges, length, side="right")
    vals, w = [], []
    for i in range(k):
        m = b == i
        v = spearman(x[m], y[m])
        if math.isfinite(v):
            vals.append(v)
            w.append(int(m.sum()))
    return float(np.average(vals, weights=w)) if vals else math.nan


# -- agreement ----------------------------------------------------------------------------------
def agreement(sig: dict[str, float], kept: set[str], t: str, sc, labels, args) -> dict:
    """The rows of one signal for task ``t`` (``sig``: id -> value, on the documents it covers)."""
    from retriever.metrics import bootstrap_interval, roc_auc, spearman

    ids = sc["id"]
    sim = np.asarray(sc[score_name(SCORE, t)], dtype=np.float64)
    sim_of = dict(zip(ids, sim, strict=True))
    len_of = dict(zip(ids, sc["n_chars"], strict=True))
    have = [i for i in ids if i in sig]
    x = np.array([sig[i] for i in have], dtype=np.float64)
    y = np.array([sim_of[i] for i in have])
    n_chars = np.array([len_of[i] for i in have], dtype=np.float64)
    boot = {"n_boot": args.boot, "seed": args.seed}
    row: dict = {"n": len(have)}
    row["vs_similarity"] = bootstrap_interval(spearman, x, y, **boot)
    row["vs_similarity_by_length"] = bootstrap_interval(stratified_spearman, x, y, n_chars, **boot)
    lab = labels[t]
    cand = [
        (i, c, lb)
        for i, c, lb, src in zip(
            lab["id"], lab["correlation"], lab["label"], lab["source"], strict=True
        )
        if src != "random" and i in sig
    ]
    c_x = np.array([sig[i] for i, _, _ in cand], dtype=np.float64)
    c_r = np.array([c for _, c, _ in cand], dtype=np.float64)
    row["n_candidates"] = len(cand)
    row["vs_correlation"] = bootstrap_interval(spearman, c_x, c_r, **boot)
    pn = [(sig[i], lb == "positive") for i, _, lb in cand if lb in ("positive", "negative")]
    px = np.array([v for v, _ in pn], dtype=np.float64)
    py = np.array([p for _, p in pn], dtype=bool)
    row["n_pos_neg"] = [int(py.sum()), int((~py).sum())]
    row["auc_confirm"] = bootstrap_interval(lambda a, b: roc_auc(b, a), px, py, **boot)
    # top sets: the similarity top fraction (of the covered documents) and the positives
    k = max(1, int(round(args.top * len(have))))
    top = [have[j] for j in np.argsort(-y, kind="stable")[:k]]
    row["sim_top_kept"] = wilson(sum(i in kept for i in top), len(top))
    pos = [i for i, _, lb in cand if lb == "positive"]
    row["positives_kept"] = wilson(sum(i in kept for i in pos), len(pos))
    row["kept_share"] = wilson(sum(i in kept for i in have), len(have))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--run", required=True, help="a finished run folder (scores/, confirm/)")
    ap.add_argument("--work", default="/tmp/eval_signals", help="the signals' outputs (reused)")
    ap.add_argument("--tasks", nargs="*", default=None)
    ap.add_argument("--top", type=float, default=0.1, help="similarity top fraction")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--band-model", default=None, help="band reference (default: trained here)")
    ap.add_argument("--ref-steps", type=int, default=300)
    ap.add_argument(
        "--band-sample", type=int, default=300, help="non-candidates in the band (-1: all)"
    )
    ap.add_argument("--rate-model", default=None, help="local model served for ratings")
    ap.add_argument("--rate-docs", type=int, default=32, help="labelled documents rated")
    ap.add_argument("--no-band", action="store_true")
    ap.add_argument("--no-rate", action="store_true")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    from retriever.bench import conditions

    run, work = Path(args.run), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    before = os.getloadavg()
    t_start = time.perf_counter()
    tasks, sc, labels = load_run(run, args.tasks)
    out: dict = {"run": str(run), "tasks": tasks, "n_docs": len(sc["id"]), "signals": {}}
    cost: dict = {}
    signals: dict[str, tuple[dict, dict]] = {}  # name -> ({task: {id: value}}, {task: kept})

    # similarity itself: kept = its own top fraction (so its rows are the baseline)
    sim_sig, sim_kept = {}, {}
    for t in tasks:
        s = np.asarray(sc[score_name(SCORE, t)], dtype=np.float64)
        sim_sig[t] = dict(zip(sc["id"], s.tolist(), strict=True))
        k = max(1, int(round(args.top * len(s))))
        sim_kept[t] = {sc["id"][j] for j in np.argsort(-s, kind="stable")[:k]}
    signals["similarity"] = (sim_sig, sim_kept)

    # prefilter over every document
    from retriever.prefilter import PrefilterConfig, prefilter_corpus, read_matches

    n = write_docs(run, work / "all" / "docs.jsonl")
    t0 = time.perf_counter()
    ps = prefilter_corpus(
        [str(work / "all")], work / "prefilter", PrefilterConfig(tasks=tuple(tasks)), progress=False
    )
    cost["prefilter"] = {
        "docs": n,
        "docs_per_s": ps["docs_per_s"],
        "wall_s": time.perf_counter() - t0,
    }
    m = read_matches(work / "prefilter").to_pydict()
    pf_sig = {
        t: dict(zip(m["id"], map(float, m[score_name(KEYWORDS, t)]), strict=True)) for t in tasks
    }
    pf_kept = {t: {i for i, v in pf_sig[t].items() if v >= 1} for t in tasks}
    signals["prefilter"] = (pf_sig, pf_kept)

    if not args.no_band:
        from retriever.band import BandConfig, band_docs, read_band

        rng = np.random.default_rng(args.seed)
        cand = {i for t in tasks for i, s in zip(labels[t]["id"], labels[t]["source"], strict=True)
                if s != "random"}  # fmt: skip
        others = sorted(set(sc["id"]) - cand)
        size = len(others) if args.band_sample < 0 else min(args.band_sample, len(others))
        pick = set(rng.choice(others, size=size, replace=False))
        nb = write_docs(run, work / "band_docs" / "docs.jsonl", cand | pick)
        model = args.band_model
        if model is None:
            wiki = [
                json.loads(line)["text"]
                for line in (work / "all" / "docs.jsonl").open()
                if "wikitext" in json.loads(line)["id"]
            ]
            model = str(train_reference(work / "ref", wiki, args.ref_steps))
        t0 = time.perf_counter()
        bs = band_docs([str(work / "band_docs")], work / "band", BandConfig(model=model))
        cost["band"] = {"docs": nb, "wall_s": time.perf_counter() - t0, **bs.get("cost", {})}
        b = read_band(work / "band").select(["id", "bpb", "in_band"]).to_pydict()
        bpb = dict(zip(b["id"], b["bpb"], strict=True))
        inb = {i for i, k in zip(b["id"], b["in_band"], strict=True) if k}
        signals["band BPB"] = ({t: bpb for t in tasks}, {t: inb for t in tasks})
        out["band"] = {"model": model, "cuts": [bs.get("cut_low_bpb"), bs.get("cut_high_bpb")]}

    if not args.no_rate:
        from retriever.rate import EndpointConfig, RateConfig, rate_docs, read_ratings
        from retriever.rate.local_server import serve_in_subprocess

        rng = np.random.default_rng(args.seed + 1)
        labelled = sorted({i for t in tasks for i in labels[t]["id"]})
        pick = set(rng.choice(labelled, size=min(args.rate_docs, len(labelled)), replace=False))
        nr = write_docs(run, work / "rate_docs" / "docs.jsonl", pick)
        folder = Path(args.rate_model) if args.rate_model else random_lm(work / "random_lm")
        with serve_in_subprocess("--model", f"ref={folder}") as url:
            cfg = RateConfig(
                tasks=tuple(tasks), api_key_env="", concurrency=4, max_chars=1500,
                endpoint=EndpointConfig(base_url=url, model="ref", max_tokens=16),
            )  # fmt: skip
            t0 = time.perf_counter()
            rs = rate_docs(work / "rate_docs", work / "rate", cfg, indexes_dir=REPO / "indexes")
            cost["rating"] = {
                "docs": nr,
                "requests": rs.get("requests"),
                "requests_per_s": rs.get("requests_per_s"),
                "wall_s": time.perf_counter() - t0,
            }
        r_sig, r_kept, parsed = {}, {}, {}
        for t in tasks:
            r = read_ratings(work / "rate", t).select(["id", "score", "int_score", "error"])
            r = r.to_pydict()
            ok = [j for j, e in enumerate(r["error"]) if e is None]
            parsed[t] = [len(ok), len(r["id"])]
            r_sig[t] = {r["id"][j]: float(r["score"][j]) for j in ok}
            r_kept[t] = {r["id"][j] for j in ok if r["int_score"][j] >= 3}
        signals["rating"] = (r_sig, r_kept)
        out["rating"] = {"model": str(folder), "parsed_of_rated": parsed}

    for name, (sig, kept) in signals.items():
        out["signals"][name] = {t: agreement(sig[t], kept[t], t, sc, labels, args) for t in tasks}
    out["cost"] = cost
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    out["load_average"] = {"before": list(before), "after": list(os.getloadavg())}
    out["conditions"] = conditions()

    print(f"run {run}: {out['n_docs']} documents; bootstrap {args.boot}x, 95% intervals")
    print(
        f"{'signal':<11}{'task':<17}{'n':>5}{'vs similarity':>23}{'same, by length':>23}{'cand':>5}"
        f"{'vs correlation':>23}{'AUC pos/neg':>23}  {'sim top kept':<24}positives kept"
    )
    for name, per in out["signals"].items():
        for t, r in per.items():
            print(
                f"{name:<11}{t:<17}{r['n']:>5}{fmt(r['vs_similarity'])}"
                f"{fmt(r['vs_similarity_by_length'])}{r['n_candidates']:>5}"
                f"{fmt(r['vs_correlation'])}{fmt(r['auc_confirm'])}  "
                f"{fmt(r['sim_top_kept'], True):<24}{fmt(r['positives_kept'], True)}"
            )
    if "rating" in out:
        print(f"rating answers parsed (of rated): {out['rating']['parsed_of_rated']}")
    print(f"cost: {json.dumps(cost, default=str)}")
    print(f"load average before {before}, after {out['load_average']['after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
