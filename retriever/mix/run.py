"""``retriever mix run``: RegMix end to end, one resumable command.

1. **Propose** ``n`` mixtures over the run's task pools and a ``general`` pool (the run's
   ``[dataset] general_pool``, else its corpus: uniform web text) around their token shares
   (:func:`~retriever.mix.propose.propose_mixtures`); with ``over = "domains"``, over the corpus
   domains of those pools' documents instead (``RUN/domains`` of the run's ``[domains]`` step, or
   ``[mix] domains``, else the records' ``cluster_id``), around each domain's token share.
2. **Build** each mixture's proxy dataset with the dataset stage at one token budget (one scan
   cache for all of them).
3. **Train and evaluate** one proxy per mixture and seed through the same
   :class:`~retriever.arms.run.ProxyLoop` as ``retriever evaluate`` (cached per dataset
   fingerprint, proxy settings and seed).
4. **Fit** the regression of the target (mean BPB over the tasks by default) on the weights and
   search the best mixture (:func:`~retriever.mix.fit.fit_mixture`).

Layout of ``OUT`` (default ``RUN/mix``)::

    manifest.json        settings (a rerun with other settings is refused)
    mixtures.csv(.json)  the proposals
    datasets/mix_<i>/    each mixture's dataset      proxies/<key>/  the proxies
    results.csv          mix_id, weight/<pool>..., <metric>/<task>..., score/total
    best_mixture.json    the fit (``build-dataset --mixture`` reads it); written last

A killed run reruns to the same place: finished datasets and proxies are kept.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retriever.arms.run import ProxyStage, ProxyStageResult
from retriever.errors import ConfigError
from retriever.io import AtomicWriter, read_json, write_json_atomic

if TYPE_CHECKING:
    from retriever.corpus.readers import ReaderConfig

log = logging.getLogger(__name__)

TARGET_METRICS = ("bpb", "acc", "acc_norm")


@dataclass(frozen=True)
class MixRunConfig:
    """Settings of ``retriever mix run`` (the run config's ``[mix]`` section).

    Attributes:
        n: mixtures (proxy datasets) to propose; the fit needs at least ``max(6, pools + 2)``.
        seeds: proxies per mixture (their scores are averaged).
        budget: tokens per mixture dataset (default ``[evaluate] budget``, else ``[dataset]``).
        general: the general pool (default the run's ``general_pool``, else its corpus).
        metric: ``bpb`` (minimized), ``acc`` or ``acc_norm`` (maximized), averaged over tasks.
        model: regression model of the fit (``auto``, ``linear``, ``quadratic``, ``gbm``).
        seed: seed of the proposals and of the fit.
        temperature: smoothing of the token shares (``shares ** temperature``).
        min_strength: smallest Dirichlet concentration multiplier (mixtures near a corner).
        max_strength: largest Dirichlet concentration multiplier (mixtures near the shares).
        minimum: weights below become 0; rounding grid.
        max_epochs: repeats of a pool allowed under the budget (caps its weight).
        folds: k of the fit's k-fold held-out check.
        samples: mixtures ranked by the fitted model.
        top_k: best predicted mixtures averaged into the best mixture.
        out: output folder (default ``RUN/mix``).
        over: ``pools`` (weights per pool) or ``domains`` (weights per ``domain/<domain>`` of
            the pools' documents; the fit needs ``n >= domains + 2``).
        domains: a ``retriever domains`` folder (``over = "domains"``; default the run's
            ``RUN/domains`` when it has a ``[domains]`` section, else the records' cluster ids).
    """

    n: int = 8
    seeds: int = 1
    budget: str | int | None = None
    general: str | None = None
    metric: str = "bpb"
    model: str = "auto"
    seed: int = 0
    temperature: float = 0.5
    min_strength: float = 0.1
    max_strength: float = 5.0
    minimum: float = 1e-3
    max_epochs: float = 4.0
    folds: int = 5
    samples: int = 100_000
    top_k: int = 100
    out: str | None = None
    over: str = "pools"
    domains: str | None = None

    def __post_init__(self) -> None:
        if self.over not in ("pools", "domains"):
            raise ConfigError(f"[mix] over must be pools or domains, got {self.over!r}")
        if self.domains is not None and self.over != "domains":
            raise ConfigError('[mix] domains is for over = "domains"')
        if self.metric not in TARGET_METRICS:
            raise ConfigError(f"[mix] metric must be one of {', '.join(TARGET_METRICS)}")
        if not isinstance(self.n, int) or self.n < 2:
            raise ConfigError(f"[mix] n must be an integer >= 2, got {self.n!r}")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"[mix] seeds must be an integer >= 1, got {self.seeds!r}")


@dataclass(kw_only=True)
class MixRunResult(ProxyStageResult):
    """The outcome of :meth:`MixRun.run`: the best mixture and every proxy's result."""

    best: dict
    results: list[dict] = field(default_factory=list)


class MixRun(ProxyStage):
    """Propose, build, train, evaluate, fit (see the module docstring).

    Args:
        config: the ``[mix]`` settings.
        pools: pool name -> folder (task pools and the general pool).
        budget: tokens per mixture dataset.
        trainer, evaluator: the proxy loop (:mod:`retriever.arms.run` protocols).
        out: output folder.
        order, tokenizer, data_seed: the dataset stage's settings (as the run's dataset step).
        reader, corpus_pools: the pools that are corpus files (the general pool) and how they are
            read (``[corpus]``'s reader), as the run's dataset step reads them.
    """

    def __init__(
        self,
        config: MixRunConfig,
        pools: dict[str, str],
        budget: int,
        trainer,
        evaluator,
        out: str | os.PathLike,
        *,
        order: str = "top",
        tokenizer: str | None = None,
        data_seed: int = 0,
        reader: ReaderConfig | None = None,
        corpus_pools: Iterable[str] = (),
        progress: bool | None = False,
        on_proxy=None,
    ):
        if len(pools) < 2:
            raise ConfigError(f"a mixture needs at least two pools, got {list(pools)}")
        super().__init__(out, budget, trainer, evaluator, progress, on_proxy)
        self.config = config
        self.pools = dict(pools)
        self.order = order
        self.tokenizer = tokenizer
        self.data_seed = data_seed
        from retriever.corpus.readers import ReaderConfig

        self.reader = reader or ReaderConfig()
        wanted = set(corpus_pools)  # once: an iterator would be spent by the first pool's test
        self.corpus_pools = [k for k in pools if k in wanted]

    def run(self) -> MixRunResult:
        from retriever.arms.datasets import ArmDataset, dataset_fingerprint
        from retriever.dataset import DatasetBuilder, domain_token_counts, pool_token_counts
        from retriever.dataset.mixture import WEIGHT_PREFIX
        from retriever.dataset.pools import reader_changes
        from retriever.manifest import check_or_write_manifest
        from retriever.mix.fit import fit_mixture, min_runs
        from retriever.mix.propose import propose, write_proposals

        c = self.config
        if c.over == "pools" and c.n < min_runs(len(self.pools)):
            raise ConfigError(
                f"[mix] n = {c.n} mixtures cannot fit {len(self.pools)} pools: use n >= "
                f"{min_runs(len(self.pools))}"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        conf = dict(c.__dict__)
        if c.over == "pools":  # keys added later: a pool mixture's manifest stays as it was
            conf.pop("over")
            conf.pop("domains")
        settings = {
            "config": conf,
            "pools": self.pools,
            "budget": self.budget,
            "order": self.order,
            "tokenizer": self.tokenizer,
            "data_seed": self.data_seed,
            "proxy": self.trainer.spec,
            "evaluator": self.evaluator.spec,
        }
        if self.corpus_pools and (changed := reader_changes(self.reader)):
            # only when set: a run with the default reader keeps its manifest
            settings["reader"] = {"pools": self.corpus_pools, **changed}
        check_or_write_manifest(self.out, settings)
        scan = self.out / "_scan"
        csv_path = self.out / "mixtures.csv"
        if csv_path.exists() and (self.out / "mixtures.csv.json").exists():
            mixes = _read_mixtures(csv_path)
        else:
            if c.over == "domains":
                shares = domain_token_counts(
                    self.pools,
                    c.domains,
                    tokenizer=self.tokenizer,
                    scan_cache=scan,
                    reader=self.reader,
                    corpus_pools=self.corpus_pools,
                )
                if c.n < min_runs(len(shares)):
                    raise ConfigError(
                        f"[mix] n = {c.n} mixtures cannot fit {len(shares)} domains: use n >= "
                        f"{min_runs(len(shares))} (or fewer domains: [domains] k)"
                    )
            else:
                shares = pool_token_counts(
                    self.pools,
                    tokenizer=self.tokenizer,
                    scan_cache=scan,
                    reader=self.reader,
                    corpus_pools=self.corpus_pools,
                )
                if not all(shares.values()):
                    empty = [k for k, v in shares.items() if not v]
                    raise ConfigError(f"pool(s) {empty} hold no document: nothing to mix")
            mixes, _ = propose(shares, c, self.budget)
            write_proposals(
                csv_path, mixes, {"over": c.over, "shares": shares, "budget": self.budget}
            )
        loop = self.proxy_loop()
        res = MixRunResult(out=self.out, best={})
        for i, mix in enumerate(mixes):
            used = {k: w for k, w in mix.items() if w > 0}
            ds_dir = self.out / "datasets" / f"mix_{i}"
            pools = {k: self.pools[k] for k in used} if c.over == "pools" else self.pools
            s = DatasetBuilder(
                pools,
                used,
                self.budget,
                corpus_pools=[k for k in self.corpus_pools if k in pools],
                reader=self.reader,
                order=self.order,
                tokenizer=self.tokenizer,
                seed=self.data_seed,
                scan_cache=scan,
                progress=self.progress,
                domains=c.domains,
            ).build(ds_dir)
            ds = ArmDataset(
                f"mix_{i}",
                ds_dir,
                dataset_fingerprint(ds_dir),
                int(s.get("tokens") or 0),
                int(s.get("docs") or 0),
            )
            vals: dict[str, list[float]] = {}
            for seed in range(c.seeds):
                pr = loop.run_one(f"mix {i}", ds, seed)
                res.trained += pr.trained
                for task, metric, v in pr.values():
                    vals.setdefault(f"{metric}/{task}", []).append(v)
            row: dict[str, Any] = {
                "mix_id": i,
                **{WEIGHT_PREFIX + k: mix.get(k, 0.0) for k in (mixes[0] if mixes else {})},
            }
            for col, vs in vals.items():
                ok = [v for v in vs if math.isfinite(v)]
                row[col] = sum(ok) / len(ok) if ok else math.nan
            per_task = [row[k] for k in row if k.startswith(c.metric + "/")]
            ok = [v for v in per_task if math.isfinite(v)]
            row["score/total"] = sum(ok) / len(ok) if ok else math.nan
            res.results.append(row)
        _write_results(self.out / "results.csv", res.results)
        from retriever.mix import ProxyResults, read_results

        # the fit (and its held-out check) on the target only: the per-task columns stay in
        # results.csv for `retriever mix fit --target`
        full = read_results(self.out / "results.csv")
        target = ProxyResults(
            full.pools, full.ids, full.X, {"score/total": full.targets["score/total"]}
        )
        best = fit_mixture(
            target,
            "score/total",
            model=c.model,
            maximize=c.metric != "bpb",
            folds=c.folds,
            n_samples=c.samples,
            top_k=c.top_k,
            seed=c.seed,
        )
        best["metric"] = c.metric
        best["budget"] = self.budget
        write_json_atomic(self.out / "best_mixture.json", best)
        res.best = best
        return res


def _read_mixtures(path: Path) -> list[dict[str, float]]:
    from retriever.dataset.mixture import read_weight_csv

    return [dict(w) for _, w in read_weight_csv(path)]


def _write_results(path: Path, rows: list[dict]) -> None:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    with AtomicWriter(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow(
                {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            )


def mix_run(
    config: str | os.PathLike,
    overrides: dict[str, Any] | None = None,
    *,
    trainer=None,
    evaluator=None,
    progress: bool | None = False,
    on_proxy=None,
) -> MixRunResult:
    """``retriever mix run CONFIG.toml``: the run's pools (its filter stage's output) plus a
    general pool (corpus files, read with ``[corpus]``'s reader as the run's dataset step reads
    it); proxy and evaluation settings from ``[evaluate]``, mixture settings from
    ``[mix]``."""
    import dataclasses

    from retriever.arms.api import load_evaluate_config
    from retriever.arms.datasets import _link_corpus
    from retriever.dataset import corpus_pools, discover_pools, parse_budget
    from retriever.run.config import load_run_config

    cfg = load_run_config(config)  # [mix] is checked, its paths resolved, here
    try:
        mc = dataclasses.replace(
            cfg.mix, **{k: v for k, v in (overrides or {}).items() if v is not None}
        )
    except TypeError as e:
        raise ConfigError(f"[mix]: {e}") from e
    ec = load_evaluate_config(cfg)
    if mc.over == "domains" and mc.domains is None and cfg.domains is not None:
        mc = dataclasses.replace(mc, domains=str(cfg.out / "domains"))  # the run's [domains] step
    out = Path(mc.out) if mc.out else cfg.out / "mix"
    general = mc.general or cfg.dataset.general_pool
    if general is None:
        general = str(_link_corpus(tuple(cfg.corpus.paths), out / "_pools" / "general"))
    pools = discover_pools(cfg.out / "pools", {"general": general})
    budget_spec = (
        mc.budget
        if mc.budget is not None
        else (ec.budget if ec.budget is not None else cfg.dataset.budget)
    )
    if trainer is None:
        from retriever.arms.proxy import ProxyTrainer

        trainer = ProxyTrainer(ec.proxy, device=ec.device, progress=bool(progress))
    if evaluator is None:
        from retriever.arms.proxy import HarnessEvaluator

        evaluator = HarnessEvaluator(
            ec.eval_tasks(cfg.task_names), dict(ec.eval_data), ec.eval_limit, ec.device
        )
    reader = cfg.corpus.reader_config()
    return MixRun(
        mc,
        pools,
        parse_budget(budget_spec),
        trainer,
        evaluator,
        out,
        order=cfg.dataset.order,
        tokenizer=cfg.dataset.tokenizer,
        data_seed=cfg.run.seed,
        reader=reader,
        # the general pool, when it is corpus files (or links to them), read as [corpus] reads
        # them; a stage's output given as the general pool is read as written
        corpus_pools=corpus_pools({"general": pools["general"]}, reader),
        progress=progress,
        on_proxy=on_proxy,
    ).run()


def read_best(out: str | os.PathLike) -> dict:
    return read_json(Path(out) / "best_mixture.json")
