"""The shipped filter, measured on the cross-source held-out set (retriever/holdout.py).

Per task, everything learns from the split's ``gold`` role and ``train`` corpus only, and is tested
on every task's ``heldout`` records (sources no stage has seen: the ELMB sets, unseen characters,
unseen PubMedQA topics; capped per task) mixed into the ``test`` corpus (ClimbLab documents no stage
has seen; capped). Side by side, per task, ROC-AUC (the task's held-out records against everything
else in the test mix) and P@N (N = the task's held-out count), each with a bootstrap 95% interval:

* ``similarity``: the similarity stage (max cosine to an index of the gold role; retriever.index +
  retriever.score, as in the pipeline);
* ``baseline``: a gold-vs-corpus fastText, the DCLM recipe (lr 0.5, 15 epochs, word bigrams, plain
  whitespace tokens): gold positives, train corpus + other tasks' gold negatives, each row once;
* one student per training-set variant (retriever.distill.trainset.VARIANTS), trained by the
  distill stage's own code (sources, replication weights, class balance, bucket sizing). The
  ``confirmed`` / ``hard-negative`` rows come from a confirm run's labels (``--labels DIR``, e.g.
  a finished offline run's ``confirm/labels``); any row whose text is in a held-out role of any
  task is dropped first (the offline config indexes the ELMB sets). Without ``--labels`` only the
  variants without confirmed rows run.

    .venv/bin/python scripts/eval_filter.py --labels runs/offline/confirm/labels --work /tmp/ef
    [--variants gold-only,gold+confirmed] [--json] [--markdown docs/table.md]

A variant may carry per-source weights after a colon (the distill stage's ``weights``:
replicated lines): ``gold+confirmed:confirmed=0.3&gold=2``.

Embeddings are cached under ``--work/vectors`` (rerunning skips the embedding); ``--vector-cache
DIR`` also reads another cache of the same texts and model (npz parts, never written to).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from retriever.distill import DistillConfig, FastTextDistiller, predict_positive
from retriever.distill.labels import LabelSet, load_labels
from retriever.distill.trainset import (
    HARD_NEGATIVE,
    OTHER_GOLD,
    RANDOM,
    VARIANTS,
    StudentSet,
    build_student_set,
    gold_rows,
    text_key,
)
from retriever.holdout import TASKS, load_split
from retriever.io import read_json
from retriever.metrics import rankdata
from retriever.score.evaluate import precision_at

NEEDS_LABELS = {v for v, s in VARIANTS.items() if "confirmed" in s or HARD_NEGATIVE in s}
# the rating variants need `retriever rate` labels, which this ablation does not make
ABLATION = [v for v, s in VARIANTS.items() if "rating" not in s]


def auc_fast(y: np.ndarray, s: np.ndarray) -> float:
    """ROC-AUC (Mann-Whitney, ties half) of scores ``s`` for labels ``y``."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def bootstrap(y: np.ndarray, s: np.ndarray, n_boot: int, seed: int) -> dict:
    """AUC and P@N with percentile 95% intervals, resampling positives and negatives apart."""
    y = np.asarray(y, dtype=bool)
    s = np.asarray(s, dtype=np.float64)
    pos, neg = np.nonzero(y)[0], np.nonzero(~y)[0]
    rng = np.random.default_rng(seed)
    aucs, pns = [], []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        yy, ss = y[idx], s[idx]
        aucs.append(auc_fast(yy, ss))
        pns.append(precision_at(yy, ss, len(pos)))
    return {
        "auc": auc_fast(y, s),
        "auc_ci": [float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))],
        "p_at_n": precision_at(y, s, len(pos)),
        "p_at_n_ci": [float(np.percentile(pns, 2.5)), float(np.percentile(pns, 97.5))],
        "n_positive": len(pos),
        "n": len(y),
    }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    ap.add_argument("--labels", default=None, help="confirm labels folder (<task>.parquet)")
    ap.add_argument("--test-corpus", type=int, default=1500, help="test corpus documents")
    ap.add_argument("--heldout-cap", type=int, default=200, help="held-out records per task")
    ap.add_argument("--variants", default=",".join(ABLATION), help="comma-separated variants")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--epoch", type=int, default=DistillConfig().epoch)
    ap.add_argument("--work", default=None, help="cache folder (default: a temp folder)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--gold-limit",
        type=int,
        default=None,
        help="use the first N gold records per task (index and students alike)",
    )
    ap.add_argument(
        "--vector-cache",
        action="append",
        default=[],
        help="read-only folder of cached embeddings (npz parts; repeatable)",
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the DCLM baseline student")
    ap.add_argument("--tasks", default=",".join(TASKS), help="tasks whose students to train")
    ap.add_argument("--balance", action="store_true", help="students replicate the lighter class")
    ap.add_argument(
        "--normalization",
        default=DistillConfig().normalization,
        choices=["newlines", "words", "both"],
        help="the students' text normalization",
    )
    ap.add_argument(
        "--minn",
        type=int,
        default=DistillConfig().minn,
        help="the students' shortest character n-gram (0: no subwords)",
    )
    ap.add_argument(
        "--maxn", type=int, default=DistillConfig().maxn, help="the students' longest one"
    )
    ap.add_argument("--dim", type=int, default=DistillConfig().dim, help="the students' dim")
    ap.add_argument(
        "--multilabel",
        action="store_true",
        help="also one multi-label student per variant over every task (as [distill] multilabel)",
    )
    ap.add_argument(
        "--multilabel-only",
        action="store_true",
        help="only the multi-label students (no per-task ones; implies --multilabel)",
    )
    ap.add_argument(
        "--no-similarity", action="store_true", help="students only (no embedding: a quick look)"
    )
    ap.add_argument(
        "--shipped",
        action="append",
        default=[],
        metavar="RUN",
        help="also score the filter models a finished `retriever run` shipped (RUN/filters/: "
        "per-task or multi-label), as the filter stage scores them (repeatable)",
    )
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--markdown", default=None, help="also write the table as markdown here")
    args = ap.parse_args()
    args.multilabel = args.multilabel or args.multilabel_only
    t_start = time.perf_counter()
    work = Path(args.work or tempfile.mkdtemp(prefix="eval_filter_"))
    work.mkdir(parents=True, exist_ok=True)
    split = load_split(args.data, test_corpus_limit=args.test_corpus, seed=args.seed)
    rng = np.random.default_rng(args.seed)

    # -- the test mix: held-out records of every task (capped) + the test corpus ------------------
    held: dict[str, list] = {}
    for t in TASKS:
        recs = split.records(t, "heldout")
        if len(recs) > args.heldout_cap:
            recs = [recs[i] for i in sorted(rng.choice(len(recs), args.heldout_cap, replace=False))]
        held[t] = recs
    test_ids, test_texts, test_label = [], [], []
    for t in TASKS:
        for r in held[t]:
            test_ids.append(f"heldout/{t}/{r.id}")
            test_texts.append(r.text)
            test_label.append(t)
    for r in split.corpus("test"):
        test_ids.append(f"corpus/{r.id}")
        test_texts.append(r.text)
        test_label.append("corpus")
    label = np.array(test_label)
    log(
        f"test mix: {len(label)} documents ({ {t: len(held[t]) for t in TASKS} } held out, "
        f"{int((label == 'corpus').sum())} test corpus)"
    )

    # every text of a held-out role, to keep it out of anything trained on
    banned = {
        text_key(r.text)
        for t in TASKS
        for role in ("heldout", "eval", "planted")
        for r in split.records(t, role)
    }

    results: dict[str, dict] = {t: {} for t in TASKS}
    # the gold role (its first --gold-limit records): the index and every student learn from it
    gold = {t: split.records(t, "gold")[: args.gold_limit] for t in TASKS}
    # -- similarity stage --------------------------------------------------------------------------
    if not args.no_similarity:
        cache = VectorCache(work / "vectors", args.vector_cache)
        sims = similarity_scores(gold, test_texts, cache)
        for t in TASKS:
            results[t]["similarity"] = bootstrap(label == t, sims[t], args.boot, args.seed)

    # -- students -------------------------------------------------------------------------------
    train_corpus = split.corpus("train")
    variants = [v for v in args.variants.split(",") if v]
    if not args.labels:
        skipped = [v for v in variants if parse_variant(v)[0] in NEEDS_LABELS]
        if skipped:
            log(f"no --labels: skipping {skipped} (they need a confirm run's rows)")
        variants = [v for v in variants if parse_variant(v)[0] not in NEEDS_LABELS]
    label_info: dict[str, dict] = {}
    timings: dict[str, dict] = {}
    sets_by_variant: dict[str, dict[str, StudentSet]] = {}
    cfg_by_variant: dict[str, DistillConfig] = {}
    for t in [x for x in args.tasks.split(",") if x]:
        g = gold_rows(t, [r.id for r in gold[t]], [r.text for r in gold[t]], "gold")
        others = [r for o in TASKS if o != t for r in gold[o]]
        og = gold_rows(
            t, [f"{r.task}/{r.id}" for r in others], [r.text for r in others], OTHER_GOLD
        )
        labels = None
        candidate_keys: set[str] = set()
        if args.labels:
            labels, info = confirm_rows(args.labels, t, banned)
            label_info[t] = info
            candidate_keys = {
                text_key(x)
                for x, s in zip(labels.texts, labels.row_source, strict=True)
                if s != RANDOM
            }
        # random negatives: the train corpus (the task's candidates left out when labels are given)
        corpus = [r for r in train_corpus if text_key(r.text) not in candidate_keys]
        rand = gold_rows(t, [r.id for r in corpus], [r.text for r in corpus], OTHER_GOLD)
        rand.row_source = [RANDOM] * len(rand)
        rand.reasons = ["negative: train corpus document"] * len(rand)
        for v in ([] if args.no_baseline else ["baseline"]) + variants:
            t0 = time.perf_counter()
            if v == "baseline":
                cfg = DistillConfig(
                    lr=0.5,
                    epoch=15,
                    word_ngrams=2,
                    training_set="gold-only",
                    balance=False,
                    normalization="newlines",
                    minn=0,
                    maxn=0,  # the DCLM recipe: whitespace tokens and word bigrams only
                    seed=args.seed,
                )
            else:
                name, weights = parse_variant(v)
                cfg = DistillConfig(
                    epoch=args.epoch,
                    training_set=name,
                    weights=weights,
                    seed=args.seed,
                    balance=args.balance,
                    normalization=args.normalization,
                    minn=args.minn,
                    maxn=args.maxn,
                    dim=args.dim,
                )
            ss = build_student_set(t, _merge(labels, rand), g, og, cfg.student_set())
            if v != "baseline":
                sets_by_variant.setdefault(v, {})[t] = ss
                cfg_by_variant[v] = cfg
                if args.multilabel_only:
                    continue
            p, nbytes = train_and_score(cfg, ss, test_texts, work)
            results[t][v] = bootstrap(label == t, p, args.boot, args.seed)
            results[t][v]["rows"] = {
                s: d["rows"]
                for s, d in ss.summary["per_source"].items()
                if isinstance(d, dict) and "rows" in d
            }
            timings.setdefault(t, {})[v] = {
                "seconds": round(time.perf_counter() - t0, 2),
                "lines": ss.summary["lines"],
                "model_bytes": nbytes,
            }
            r = results[t][v]
            log(
                f"{t:<17} {v:<22} AUC {r['auc']:.4f} P@N {r['p_at_n']:.3f}  "
                f"({timings[t][v]['seconds']} s)"
            )

    # -- multi-label students: one one-vs-all model per variant over every task's set ----------
    ml_columns = []
    if args.multilabel:
        for v, sets in sets_by_variant.items():
            if len(sets) < 2:
                continue
            t0 = time.perf_counter()
            probs = train_and_score_multilabel(cfg_by_variant[v], sets, test_texts, work)
            name = f"{v} (multi-label)"
            ml_columns.append(name)
            for t, p in probs.items():
                results[t][name] = bootstrap(label == t, p, args.boot, args.seed)
                r = results[t][name]
                log(f"{t:<17} {name:<22} AUC {r['auc']:.4f} P@N {r['p_at_n']:.3f}")
            timings.setdefault("multi-label", {})[v] = round(time.perf_counter() - t0, 2)

    # -- the models a run shipped, scored by the filter stage's own scorer ------------------------
    shipped_columns = []
    for run in args.shipped:
        for kind, models in shipped_models(Path(run)).items():
            name = f"{kind} ({Path(run).name})"
            shipped_columns.append(name)
            for t, p in shipped_scores(models, test_texts).items():
                results[t][name] = bootstrap(label == t, p, args.boot, args.seed)
                results[t][name]["model"] = models[t]
                r = results[t][name]
                log(f"{t:<17} {name:<22} AUC {r['auc']:.4f} P@N {r['p_at_n']:.3f}")

    out = {
        "gold_per_task": {t: len(gold[t]) for t in TASKS},
        "test_mix": {
            "documents": len(label),
            "heldout": {t: len(held[t]) for t in TASKS},
            "test_corpus": int((label == "corpus").sum()),
        },
        "labels": args.labels,
        "labels_rows": label_info,
        "results": results,
        "timings": timings,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    table = markdown(results, ["similarity", "baseline", *variants, *ml_columns, *shipped_columns])
    out["students"] = {
        "balance": args.balance,
        "epoch": args.epoch,
        "normalization": args.normalization,
        "minn": args.minn,
        "maxn": args.maxn,
        "dim": args.dim,
    }
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(table)
        print(f"\n{out['test_mix']}; {out['seconds']} s")


def parse_variant(variant: str) -> tuple[str, dict[str, float]]:
    """``gold+confirmed:confirmed=0.3&gold=2`` -> ``("gold+confirmed", {"confirmed": 0.3,
    "gold": 2.0})``."""
    name, _, spec = variant.partition(":")
    weights = {}
    for pair in filter(None, spec.split("&")):
        src, _, w = pair.partition("=")
        try:
            weights[src] = float(w)
        except ValueError:
            sys.exit(f"error: bad weight {pair!r} in variant {variant!r} (use SOURCE=NUMBER)")
    return name, weights


def _rows(ls, keep=None) -> list:
    """Rows ``keep`` (default: all) of the LabelSet ``ls``, as ``LabelSet.from_rows`` takes them."""
    n = len(ls)
    src, why = ls.row_source or [None] * n, ls.reasons or [""] * n
    return [
        (ls.ids[i], ls.texts[i], ls.labels[i], ls.similarity[i], ls.correlation[i], src[i], why[i])
        for i in (range(n) if keep is None else keep)
    ]


def _merge(labels, rand):
    """The confirm rows (minus their random sample) + the train-corpus random negatives."""
    if labels is None:
        return rand
    keep = [i for i, s in enumerate(labels.row_source) if s != RANDOM]
    return LabelSet.from_rows(labels.task, _rows(labels, keep) + _rows(rand), labels.sources)


def confirm_rows(labels_dir: str, task: str, banned: set[str]):
    """A confirm run's rows of ``task``, without any text of a held-out role."""
    ls = load_labels(labels_dir, task)
    keep = [i for i, x in enumerate(ls.texts) if text_key(x) not in banned]
    info = {"rows": len(ls), "dropped_heldout_text": len(ls) - len(keep)}
    sub = LabelSet.from_rows(task, _rows(ls, keep), ls.sources)
    info["by_source"] = {s: sub.row_source.count(s) for s in sorted(set(sub.row_source))}
    return sub, info


def train_and_score(cfg: DistillConfig, ss: StudentSet, texts: list[str], work: Path):
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        model, _ = FastTextDistiller(cfg).fit(ss, np.arange(len(ss)), Path(tmp))
        p = predict_positive(model, texts, cfg.max_chars, cfg.normalization)
        path = Path(tmp) / "m.bin"
        model.save_model(str(path))
        return p, path.stat().st_size


def train_and_score_multilabel(
    cfg: DistillConfig, sets: dict[str, StudentSet], texts: list[str], work: Path
) -> dict[str, np.ndarray]:
    """The run's multi-label student (one ova model, lines merged by text) on every row of the
    tasks' sets; P(task) of each test text per task."""
    from retriever.distill.multilabel import MultiLabelDistiller, predict_tasks, training_lines

    tasks = list(sets)
    lines = training_lines(sets, {t: np.arange(len(ss)) for t, ss in sets.items()}, set())
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        model, _ = MultiLabelDistiller(cfg).fit_lines(lines, Path(tmp) / "train.txt")
        p = predict_tasks(model, texts, tasks, cfg.max_chars, cfg.normalization)
    return {t: p[:, j] for j, t in enumerate(tasks)}


def shipped_models(run: Path) -> dict[str, dict[str, str]]:
    """The filter models of a finished run: ``{"shipped": {task: path}, ...}``.

    ``shipped`` is what the run's filter step scored with (its ``student`` setting in run.json:
    the multi-label model, or each task's own); the other kind, when the run trained it too, is
    returned as ``per-task`` or ``multi-label`` beside it.
    """
    steps = read_json(run / "run.json")["steps"] if (run / "run.json").is_file() else {}
    if (steps.get("filter") or {}).get("status") != "done":
        sys.exit(f"error: {run} has no finished filter step (run.json): finish the run first")
    multi = run / "filters" / "multilabel" / "filter.bin"
    own = {t: run / "filters" / t / "filter.bin" for t in TASKS}
    kinds: dict[str, dict[str, str]] = {}
    if multi.is_file():
        kinds["multi-label"] = {t: str(multi) for t in TASKS}
    if all(p.is_file() for p in own.values()):
        kinds["per-task"] = {t: str(p) for t, p in own.items()}
    student = steps["filter"]["settings"].get("student")
    used = "multi-label" if student == "multilabel" else "per-task"
    if used not in kinds:
        sys.exit(f"error: {run}'s filter used {used} models that are not in {run / 'filters'}")
    return {"shipped": kinds.pop(used), **kinds}


def shipped_scores(models: dict[str, str], texts: list[str]) -> dict[str, np.ndarray]:
    """P(task) of each text under the shipped models, by the filter stage's scorer."""
    from retriever.batch_filter.scorer import FastTextScorer

    pb = FastTextScorer(models).score_texts(texts)
    return {t: np.nan_to_num(pb.probs[:, j], nan=0.0) for j, t in enumerate(models)}


def _vkey(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class VectorCache:
    """Embeddings by text, read from npz parts (``keys`` [n, 16] bytes, ``vectors`` [n, dim]).

    ``read_dirs`` are only read (e.g. another evaluation's cache of the same split and model);
    vectors embedded here are appended to ``write_dir``. Texts are clipped to
    ``max_seq_length x 12`` characters first, as the similarity scorer clips them (the model
    truncates there anyway), and keyed by a BLAKE2b-128 of the clipped text.
    """

    def __init__(self, write_dir: Path, read_dirs: list[str]):
        self.write_dir = write_dir
        write_dir.mkdir(parents=True, exist_ok=True)
        self.mem: dict[bytes, np.ndarray] = {}
        for d in [*read_dirs, str(write_dir)]:
            for part in sorted(Path(d).glob("part-*.npz")):
                with np.load(part, allow_pickle=False) as z:
                    for k, v in zip(z["keys"], z["vectors"], strict=True):
                        self.mem[bytes(k)] = v
        self.emb = None
        self.clip = 256 * 12
        self.embedded = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = [t[: self.clip] for t in texts]
        keys = [_vkey(t) for t in texts]
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in self.mem}
        if todo:
            from retriever.embed import load_embedder

            if self.emb is None:
                self.emb = load_embedder()
                self.clip = (getattr(self.emb, "max_seq_length", 0) or 256) * 12
            items = list(todo.items())
            done = 0
            for i in range(0, len(items), 256):
                part = items[i : i + 256]
                xv = np.asarray(self.emb.encode([t for _, t in part]), dtype=np.float32)
                n = len(list(self.write_dir.glob("part-*.npz")))
                path = self.write_dir / f"part-{n:05d}.npz"
                tmp = path.with_name(path.name + ".tmp.npz")
                np.savez(
                    tmp,
                    keys=np.frombuffer(b"".join(k for k, _ in part), dtype=np.uint8).reshape(
                        len(part), 16
                    ),
                    vectors=xv,
                )
                os.replace(tmp, path)
                for (k, _), v in zip(part, xv, strict=True):
                    self.mem[k] = v
                self.embedded += len(part)
                done += len(part)
                log(f"  embedded {done} of {len(todo)} new texts")
        return np.stack([self.mem[k] for k in keys]).astype(np.float32)


def similarity_scores(gold: dict, texts: list[str], cache: VectorCache) -> dict[str, np.ndarray]:
    """Max cosine of every test document to a FAISS index of each task's gold role."""
    from retriever.index.gold_index import GoldIndex, new_faiss_index

    xq = cache.encode(texts)
    out = {}
    for t, recs in gold.items():
        xb = cache.encode([r.text for r in recs])
        index = new_faiss_index(xb.shape[1], "Flat")
        index.add(xb)
        gi = GoldIndex(
            t,
            index,
            [r.id for r in recs],
            [r.text for r in recs],
            [r.source for r in recs],
            {"task": t, "dim": xb.shape[1], "model": "-"},
            use_gpu=False,
        )
        out[t] = gi.search(xq, 1)[0][:, 0].astype(np.float64)
    return out


def markdown(results: dict, columns: list[str]) -> str:
    head = "| task | " + " | ".join(columns) + " |"
    lines = [head, "|---|" + "---|" * len(columns)]
    for t, r in results.items():
        cells = []
        for c in columns:
            if c not in r:
                cells.append("-")
                continue
            x = r[c]
            cells.append(
                f"{x['auc']:.4f} [{x['auc_ci'][0]:.3f}, {x['auc_ci'][1]:.3f}] / "
                f"{x['p_at_n']:.3f} [{x['p_at_n_ci'][0]:.2f}, {x['p_at_n_ci'][1]:.2f}]"
            )
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Cells: ROC-AUC [95% bootstrap interval] / P@N [interval], N = the task's "
        "held-out records in the test mix."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
