"""``ArmsEvaluation``: datasets per arm -> proxies per (arm, seed) -> scores -> intervals.

Proxies are trained and evaluated through two small protocols, so the loop does not depend on one
trainer: :class:`Trainer` (``train(data, out, seed) -> TrainOutcome``) and :class:`Evaluator`
(``evaluate(checkpoint) -> {task: {metric: value}}``), each with a JSON-able ``spec`` that enters
the cache keys. The defaults (:mod:`retriever.arms.proxy`) call ``retriever.proxy.train_proxy``
and ``retriever.evaluation.evaluate_model``.

Layout of ``OUT`` (default ``RUN/evaluate``)::

    datasets/<arm>/            each arm's dataset (the dataset stage's layout)
    proxies/<key>/             one proxy per (dataset fingerprint, proxy spec, seed):
        model/                 its checkpoint (the trainer's folder; resumable)
        train.json             what the trainer returned (written when training finished)
        eval-<fp>.json         its scores under one evaluator spec (tasks, data, limit)
    results.parquet            one row per (arm, seed, task, metric): value, dataset, proxy key
    summary.json               settings, arms (dataset, tokens, cost), the interval table

Adding an arm, or a seed, trains only the missing proxies; changing the evaluation data
re-evaluates the existing proxies without retraining them.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from retriever.arms.config import EvaluateConfig
from retriever.arms.datasets import ArmDataset, ArmSources, build_arm_dataset
from retriever.arms.stats import METRICS, summarize_arms
from retriever.errors import ConfigError, InputError
from retriever.io import AtomicWriter, read_json, write_json_atomic
from retriever.manifest import fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    """What a trainer reports: the checkpoint folder and the cost."""

    checkpoint: Path
    tokens: int
    tokens_per_s: float
    seconds: float
    resumed: bool = False
    info: dict = field(default_factory=dict)  # anything else worth keeping (loss, epochs, ...)


class Trainer(Protocol):
    """Trains one proxy on a dataset folder for a fixed token budget."""

    spec: dict

    def train(self, data: Path, out: Path, seed: int) -> TrainOutcome: ...


class Evaluator(Protocol):
    """Scores one checkpoint: ``{task: {"acc", "acc_norm", "bpb", ...}}`` (missing = NaN)."""

    spec: dict

    def evaluate(self, checkpoint: Path) -> dict[str, dict[str, float]]: ...


@dataclass(kw_only=True)
class ProxyStageResult:
    """What a proxy-training stage reports: its folder and how many proxies it trained."""

    out: Path
    trained: int = 0


@dataclass(kw_only=True)
class ArmsResult(ProxyStageResult):
    """The outcome of :meth:`ArmsEvaluation.run` (also in ``OUT/summary.json``)."""

    summary: dict
    rows: list[dict] = field(default_factory=list)
    evaluated: int = 0
    reused: int = 0


@dataclass
class ProxyRun:
    """One proxy of the loop: its cache key, what training and evaluation reported."""

    key: str
    train: dict
    eval: dict
    trained: bool
    evaluated: bool

    def values(self) -> list[tuple[str, str, float]]:
        """``(task, metric, value)`` for every score (standard errors and counts left out)."""
        out = []
        for task, m in self.eval["scores"].items():
            for metric in sorted(set(METRICS) | set(m)):
                if metric.endswith("_stderr") or metric == "n":
                    continue
                v = m.get(metric)
                out.append((task, metric, math.nan if v is None else float(v)))
        return out


class ProxyLoop:
    """Train and evaluate one proxy per (dataset fingerprint, trainer spec, seed), cached.

    ``OUT/<key>/train.json`` is written when training finished (a killed training resumes inside
    the trainer's ``model/`` folder), ``OUT/<key>/eval-<fp>.json`` per evaluator spec. Used by
    ``retriever evaluate`` (arms) and ``retriever mix run`` (mixtures) alike.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        trainer: Trainer,
        evaluator: Evaluator,
        on_proxy: Callable[[str, int, str], None] | None = None,
    ):
        self.out = Path(out)
        self.trainer = trainer
        self.evaluator = evaluator
        self.on_proxy = on_proxy
        self.eval_fp = fingerprint(evaluator.spec)

    def key(self, data_fingerprint: str, seed: int) -> str:
        """Cache key of one proxy: the data it reads, how it is trained, its seed."""
        return fingerprint({"data": data_fingerprint, "proxy": self.trainer.spec, "seed": seed})

    def run_one(self, label: str, ds: ArmDataset, seed: int) -> ProxyRun:
        key = self.key(ds.fingerprint, seed)
        pdir = self.out / key
        train_json, eval_json = pdir / "train.json", pdir / f"eval-{self.eval_fp}.json"
        trained = evaluated = False
        if train_json.exists():
            tr = read_json(train_json)
        else:
            if self.on_proxy:
                self.on_proxy(label, seed, "training")
            o = self.trainer.train(ds.path, pdir / "model", seed)
            tr = {
                "checkpoint": str(o.checkpoint),
                "tokens": int(o.tokens),
                "tokens_per_s": float(o.tokens_per_s),
                "seconds": float(o.seconds),
                "resumed": bool(o.resumed),
                "label": label,
                "seed": seed,
                **o.info,
                "dataset": ds.fingerprint,
                "proxy": self.trainer.spec,
            }
            write_json_atomic(train_json, tr)
            trained = True
        if eval_json.exists():
            ev = read_json(eval_json)
        else:
            if self.on_proxy:
                self.on_proxy(label, seed, "evaluating")
            te = time.perf_counter()
            scores = self.evaluator.evaluate(Path(tr["checkpoint"]))
            ev = {
                "scores": _clean_scores(scores),
                "seconds": time.perf_counter() - te,
                "evaluator": self.evaluator.spec,
            }
            write_json_atomic(eval_json, ev)
            evaluated = True
        log.info("%s seed %d: %s (%s)", label, seed, "trained" if trained else "cached", key)
        return ProxyRun(key, tr, ev, trained, evaluated)


class ProxyStage:
    """Base of the stages that train and evaluate proxies (arms, mixtures).

    Args:
        out: output folder (proxies are cached under ``out/proxies``).
        budget: tokens of every proxy's dataset.
        trainer, evaluator: the proxy loop (see the protocols above).
        progress: bars of the dataset stage; per-proxy lines always go to the log.
        on_proxy: called as ``(label, seed, what)`` when a proxy starts training or evaluation.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        budget: int,
        trainer: Trainer,
        evaluator: Evaluator,
        progress: bool | None = False,
        on_proxy: Callable[[str, int, str], None] | None = None,
    ):
        self.out = Path(out)
        self.budget = int(budget)
        self.trainer = trainer
        self.evaluator = evaluator
        self.progress = progress
        self.on_proxy = on_proxy

    def proxy_loop(self) -> ProxyLoop:
        return ProxyLoop(self.out / "proxies", self.trainer, self.evaluator, self.on_proxy)


class ArmsEvaluation(ProxyStage):
    """Train and evaluate proxies for every arm and seed; summarize with intervals.

    Args:
        config: the arms, seeds, budget and evaluation settings.
        sources: what the built-in arms are made from (:meth:`ArmSources.from_run`).
        out: output folder.
        budget: tokens of every arm's dataset.
        trainer, evaluator: the proxy loop (see the protocols above).
        progress: bars of the dataset stage; per-proxy lines always go to the log.
    """

    def __init__(
        self,
        config: EvaluateConfig,
        sources: ArmSources,
        out: str | os.PathLike,
        budget: int,
        trainer: Trainer,
        evaluator: Evaluator,
        *,
        progress: bool | None = False,
        on_proxy: Callable[[str, int, str], None] | None = None,
    ):
        if config.reference not in config.arms:
            log.info("reference arm %r is not run: no differences", config.reference)
        super().__init__(out, budget, trainer, evaluator, progress, on_proxy)
        self.config = config
        self.sources = sources

    def run(self) -> ArmsResult:
        cfg = self.config
        t0 = time.perf_counter()
        res = ArmsResult(out=self.out, summary={})
        datasets: dict[str, ArmDataset] = {}
        for arm in cfg.arms:
            datasets[arm] = build_arm_dataset(
                arm,
                self.sources,
                self.budget,
                self.out / "datasets",
                user_datasets=dict(cfg.datasets),
                progress=self.progress,
            )
            short = datasets[arm].tokens < 0.9 * self.budget
            log.info(
                "arm %s: %d documents, %d tokens%s",
                arm,
                datasets[arm].documents,
                datasets[arm].tokens,
                " (short of the budget)" if short else "",
            )
        loop = self.proxy_loop()
        cost: dict[str, dict] = {
            a: {"train_seconds": 0.0, "eval_seconds": 0.0, "tokens": 0, "tokens_per_s": []}
            for a in cfg.arms
        }
        for arm in cfg.arms:
            ds = datasets[arm]
            for seed in cfg.seed_list:
                pr = loop.run_one(arm, ds, seed)
                res.trained += pr.trained
                res.evaluated += pr.evaluated
                res.reused += not pr.trained
                c = cost[arm]
                c["train_seconds"] += float(pr.train["seconds"])
                c["eval_seconds"] += float(pr.eval.get("seconds", 0.0))
                c["tokens"] += int(pr.train["tokens"])
                c["tokens_per_s"].append(float(pr.train["tokens_per_s"]))
                for task, metric, v in pr.values():
                    res.rows.append(
                        {
                            "arm": arm,
                            "seed": seed,
                            "task": task,
                            "metric": metric,
                            "value": v,
                            "dataset": ds.fingerprint,
                            "proxy": pr.key,
                        }
                    )
        table = summarize_arms(
            res.rows, cfg.reference if cfg.reference in cfg.arms else None, cfg.confidence
        )
        for c in cost.values():
            tps = c.pop("tokens_per_s")
            c["tokens_per_s"] = sum(tps) / len(tps) if tps else None
            c["minutes"] = (c["train_seconds"] + c["eval_seconds"]) / 60.0
        res.summary = {
            "settings": {
                "arms": list(cfg.arms),
                "seeds": cfg.seed_list,
                "budget": self.budget,
                "reference": cfg.reference,
                "confidence": cfg.confidence,
                "proxy": self.trainer.spec,
                "evaluator": self.evaluator.spec,
            },
            "arms": {a: {**datasets[a].as_dict(), "cost": cost[a]} for a in cfg.arms},
            "table": table,
            "counts": {
                "trained": res.trained,
                "evaluated": res.evaluated,
                "reused": res.reused,
                "rows": len(res.rows),
            },
            "seconds": time.perf_counter() - t0,
        }
        self._write(res)
        return res

    def _write(self, res: ArmsResult) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [
                ("arm", pa.string()),
                ("seed", pa.int64()),
                ("task", pa.string()),
                ("metric", pa.string()),
                ("value", pa.float64()),
                ("dataset", pa.string()),
                ("proxy", pa.string()),
            ]
        )
        with AtomicWriter(self.out / "results.parquet") as tmp:
            pq.write_table(pa.Table.from_pylist(res.rows, schema=schema), tmp)
        write_json_atomic(self.out / "summary.json", res.summary)


def _clean_scores(scores: dict) -> dict[str, dict[str, float | None]]:
    if not isinstance(scores, dict):
        raise InputError(
            f"the evaluator returned {type(scores).__name__}, not {{task: {{metric: value}}}}"
        )
    out = {}
    for task, m in scores.items():
        out[str(task)] = {
            str(k): (None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
            for k, v in dict(m).items()
            if isinstance(v, (int, float)) or v is None
        }
    return out


def format_table(summary: dict, metrics: tuple[str, ...] = METRICS) -> str:
    """The interval table for a terminal: one line per (task, arm)."""
    rows = summary.get("table", [])
    ref = summary.get("settings", {}).get("reference")
    by = {(r["task"], r["arm"], r["metric"]): r for r in rows}
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    arms = list(summary.get("settings", {}).get("arms") or dict.fromkeys(r["arm"] for r in rows))
    conf = summary.get("settings", {}).get("confidence", 0.95)
    head = f"{'task':<18}{'arm':<14}" + "".join(f"{m:>26}" for m in metrics)
    if ref:
        head += "".join(f"{'d' + m + ' vs ' + ref:>30}" for m in metrics)
    lines = [
        f"mean [{conf:.0%} interval] over {len(summary['settings']['seeds'])} seed(s); "
        "differences paired by seed (* = interval excludes 0)",
        head,
    ]
    for t in tasks:
        for a in arms:
            cells = []
            for m in metrics:
                r = by.get((t, a, m))
                cells.append(f"{_iv(r, 'mean', 'lo', 'hi') if r else '-':>26}")
            if ref:
                for m in metrics:
                    r = by.get((t, a, m))
                    if r is None or "diff" not in r:
                        cells.append(f"{'-':>30}")
                    else:
                        star = "*" if r.get("better") is not None else " "
                        cells.append(
                            f"{_iv(r, 'diff', 'diff_lo', 'diff_hi', sign=True) + star:>30}"
                        )
            lines.append(f"{t[:17]:<18}{a[:13]:<14}" + "".join(cells))
    lines.append(
        "cost: "
        + "; ".join(
            f"{a} {c['cost']['minutes']:.1f} min"
            + (
                f" ({c['cost']['tokens_per_s']:,.0f} tokens/s)"
                if c["cost"].get("tokens_per_s")
                else ""
            )
            for a, c in summary.get("arms", {}).items()
        )
    )
    return "\n".join(lines)


def _iv(r: dict, m: str, lo: str, hi: str, sign: bool = False) -> str:
    v, a, b = r.get(m), r.get(lo), r.get(hi)
    if v is None or not math.isfinite(v):
        return "-"
    f = "+.4f" if sign else ".4f"
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return f"{v:{f}}"
    return f"{v:{f}} [{a:{f}}, {b:{f}}]"


def resolve_budget(config: EvaluateConfig, run_budget: str | int | None) -> int:
    """The arms' token budget: ``config.budget``, else the run's dataset budget."""
    from retriever.dataset import parse_budget

    value = config.budget if config.budget is not None else run_budget
    if value is None:
        raise ConfigError('no token budget: set [evaluate] budget = "200k" (or --budget)')
    return parse_budget(value)


def stderr_progress(arm: str, seed: int, what: str) -> None:
    print(f"evaluate: arm {arm} seed {seed}: {what}", file=sys.stderr, flush=True)
