"""``retriever run CONFIG.toml``: gold index -> scoring -> confirmation -> distillation -> filtering
-> training set -> report, per task, redoing only the steps whose inputs or settings changed.

Layout of the run folder (``[run] out``)::

    indexes/<task>/     gold index (+ head/: the learned head)
    scores/             similarity scores, store, summary.json
    panel/              LM panel + scores.csv
    confirm/            BPB cache, correlations, labels/<task>.parquet
    filters/<task>/     filter.bin (+ .json)
    pools/              filtered documents per task, manifest.json
    dataset/            training set (LMFlow json + parquet), summary.json
    report.html         the report
    run.json            step fingerprints and results

Optional steps, run when their section is present: ``[prefilter]`` -> ``prefilter/`` (keyword
counts before scoring; ``mode = "drop"`` makes the score step embed only what it kept),
``[band]`` -> ``band/`` (perplexity band over the scored documents, BPB cache kept), ``[rate]`` ->
``rate/`` (LLM ratings of each task's candidates; the answer cache is never removed),
``[domains]`` -> ``domains/`` (ClimbLab cluster ids or k-means over the stored vectors; the
dataset step then fills ``order = "stratified"`` tiers within these domains).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retriever.config import GoldSource, TaskSpec, find_task_spec
from retriever.corpus.readers import CorpusReader, ReaderConfig
from retriever.corpus.sharding import is_hub_id, list_shards
from retriever.dataset.pools import reader_changes
from retriever.errors import ConfigError, InputError
from retriever.manifest import file_fingerprint, fingerprint, paths_fingerprint
from retriever.progress import progress_enabled
from retriever.run.config import (
    STUDENTS_DIR,
    DatasetSection,
    RunConfig,
    TaskConfig,
    multilabel_models,
    step_settings,
)
from retriever.run.steps import RunStep, StepOutcome, StepRunner

if TYPE_CHECKING:
    from retriever.batch_filter import FilterConfig
    from retriever.prefilter import PrefilterConfig

log = logging.getLogger(__name__)


def inputs_fingerprint(paths: list[str] | tuple[str, ...], what: str = "corpus input") -> str:
    """Fingerprint of files / folders / Hub ids (local shards hashed, Hub ids by name).

    Raises:
        InputError: a local path does not exist (named as ``what``: "gold source", "corpus input").
    """
    from retriever.gold.loader import HOLDOUT_PREFIX

    held = sorted(p for p in paths if p.startswith(HOLDOUT_PREFIX))
    paths = [p for p in paths if not p.startswith(HOLDOUT_PREFIX)]
    local = [p for p in paths if not is_hub_id(p) or Path(p).exists()]
    for p in local:
        if not Path(p).exists():
            raise InputError(
                f"{what} {p} does not exist (a file, a folder or hf://org/name); "
                "fix the path in the run config"
            )
    hub = sorted(set(paths) - set(local))
    parts: list[Any] = [paths_fingerprint(list_shards(local)) if local else None, hub]
    if held:  # `holdout:<task>` gold: the shared data's gold files it is cut from
        from retriever.holdout import default_data_dir

        parts.append([held, paths_fingerprint(list_shards([str(default_data_dir() / "gold")]))])
    return fingerprint(parts)


class RunJob:
    """Builds the steps of a run from its config and runs them (see module docstring)."""

    def __init__(self, cfg: RunConfig, progress: bool | None = None):
        self.cfg = cfg
        self.out = cfg.out
        self.progress = progress_enabled(progress)

    # -- paths ------------------------------------------------------------------------------------
    def index_dir(self, task: str) -> Path:
        return self.out / "indexes" / task

    def filter_model(self, task: str) -> Path:
        return self.out / STUDENTS_DIR / task / "filter.bin"

    def multilabel_model(self) -> Path:
        return self.out / STUDENTS_DIR / "multilabel" / "filter.bin"

    # -- the corpus, read the same way by every stage ----------------------------------------------
    def reader_config(self) -> ReaderConfig:
        """``[corpus]``'s reader options (fields, detokenizer): every stage that reads the corpus
        gets these (see :meth:`filter_config`, :meth:`prefilter_config`, :meth:`score_reader`)."""
        return self.cfg.corpus.reader_config()

    def corpus_reader(self) -> CorpusReader:
        return self.reader_config().reader()

    def score_reader(self) -> ReaderConfig:
        """What the score stage reads with: the corpus's options, or the prefilter's jsonl."""
        return ReaderConfig() if self.prefilter_drops() else self.reader_config()

    def filter_config(self) -> FilterConfig:
        """The filter stage's config: ``[filter]`` as loaded (the run's tasks and students, the
        corpus's reader options), less where it runs."""
        return self.cfg.filter.config()

    def prefilter_config(self) -> PrefilterConfig:
        """``[prefilter]`` (the run's tasks, the corpus's reader options)."""
        return self._optional("prefilter")

    def _optional(self, section: str) -> Any:
        """An optional step's config (its section); an error when the section is absent."""
        c = getattr(self.cfg, section)
        if c is None:
            raise ConfigError(f"this run has no [{section}] section")
        return c

    def _reader_settings(self) -> dict[str, Any]:
        """The reader options set away from their defaults: in the fingerprint of each step that
        reads the corpus, so another field or detokenizer reruns it."""
        default = ReaderConfig().to_dict()
        return {k: v for k, v in self.reader_config().to_dict().items() if v != default[k]}

    # -- specs ------------------------------------------------------------------------------------
    def task_spec(self, t: TaskConfig) -> TaskSpec:
        if t.gold:
            spec = TaskSpec(task=t.name, sources=tuple(GoldSource(path=g) for g in t.gold))
        else:
            spec = find_task_spec(t.spec or t.name, self.cfg.run.specs_dir)
            spec = dataclasses.replace(spec, task=t.name)
        if t.gold_limit is not None:
            spec = dataclasses.replace(
                spec,
                sources=tuple(dataclasses.replace(s, limit=t.gold_limit) for s in spec.sources),
            )
        if self.cfg.run.model:
            spec = dataclasses.replace(spec, model=self.cfg.run.model)
        return spec

    def steps(self) -> list[RunStep]:
        cfg, tasks = self.cfg, self.cfg.task_names
        steps: list[RunStep] = []
        for t in cfg.tasks:
            spec = self.task_spec(t)
            steps.append(
                RunStep(
                    f"index/{t.name}",
                    {
                        "sources": [dataclasses.asdict(s) for s in spec.sources],
                        "model": spec.model,
                        "factory": spec.factory,
                        "gold": inputs_fingerprint(
                            [
                                s.path
                                for s in spec.sources
                                if Path(s.path).exists() or not s.optional
                            ],
                            what=f"gold source of task {t.name!r}:",
                        ),
                    },
                    functools.partial(self._index, spec),
                    outputs=[self.index_dir(t.name)],
                )
            )
        corpus_fp = inputs_fingerprint(cfg.corpus.paths)
        score_after = [f"index/{t}" for t in tasks]
        if cfg.prefilter is not None:
            steps.append(
                RunStep(
                    "prefilter",
                    {
                        "prefilter": step_settings(cfg.prefilter),
                        "corpus": corpus_fp,
                        **({"reader": r} if (r := self._reader_settings()) else {}),
                    },
                    self._prefilter,
                    outputs=[self.out / "prefilter"],
                )
            )
            if self.prefilter_drops():
                score_after.append("prefilter")  # the score step embeds what it kept
        sc = cfg.score
        index_steps = [f"index/{t}" for t in tasks]
        if cfg.index.head:
            from retriever.index.head import HEAD_FORMAT

            steps.append(
                RunStep(
                    "head",
                    {
                        **dataclasses.asdict(cfg.index),
                        "corpus": corpus_fp,
                        "corpus_fields": dataclasses.asdict(cfg.corpus),
                        "k": sc.k,
                        "seed": cfg.run.seed,
                        "format": HEAD_FORMAT,
                    },
                    self._head,
                    outputs=[self.index_dir(t) / "head" for t in tasks],
                    after=index_steps,
                )
            )
        steps.append(
            RunStep(
                "score",
                {
                    "corpus": corpus_fp,
                    "corpus_fields": dataclasses.asdict(cfg.corpus),
                    "k": sc.k,
                    "store": sc.store,
                    # only when set: runs made before sampling existed stay valid
                    **(
                        {"sample": sc.sample, "seed": cfg.run.seed} if sc.sample is not None else {}
                    ),
                },
                self._score,
                outputs=[self.out / "scores"],
                after=score_after + (["head"] if cfg.index.head else []),
            )
        )
        steps.append(
            RunStep(
                "candidates",
                {"top_fraction": sc.top_fraction, "threshold": sc.threshold},
                self._candidates,
                outputs=[self.out / "scores" / "summary.json"],
                after=["score"],
            )
        )
        if cfg.band is not None:
            steps.append(
                RunStep(
                    "band",
                    step_settings(cfg.band),
                    self._band,
                    outputs=[self.out / "band"],
                    keep=[self.out / "band" / "bpb"],  # keyed by model settings and document
                    after=["score"],
                )
            )
        if cfg.rate is not None:
            cache = self.out / "rate" / "cache.sqlite"
            steps.append(
                RunStep(
                    "rate",
                    step_settings(cfg.rate, flat=("endpoint",)),
                    self._rate,
                    outputs=[self.out / "rate"],
                    # every answer, keyed by prompt version, model and document: never thrown away
                    keep=[
                        cache,
                        cache.with_name("cache.sqlite-wal"),
                        cache.with_name("cache.sqlite-shm"),
                    ],
                    after=["candidates"],
                )
            )
        c = cfg.confirm
        panel_settings = {
            "panel": c.panel,
            "scorecard_kind": c.scorecard_kind,
            "limit": c.scorecard_limit,
            "seed": cfg.run.seed,
            "scorecard_gold": {t.name: list(t.scorecard_gold) for t in cfg.tasks},
        }
        if c.panel == "tiny":
            tiny = c.tiny_panel()
            panel_settings.update(
                models=tiny.models, steps=tiny.steps, texts=tiny.texts, corpus=corpus_fp
            )
        else:
            panel_settings["panel_file"] = (
                file_fingerprint(c.panel) if Path(c.panel).is_file() else c.panel
            )
        steps.append(
            RunStep(
                "panel",
                panel_settings,
                self._panel,
                outputs=[self.out / "panel"],
                after=[f"index/{t}" for t in tasks],
            )
        )
        # the BPB cache (keyed by document, model and weights) survives a rerun, so changing a
        # decision threshold costs seconds; models retrained since are dropped from it in _confirm
        steps.append(
            RunStep(
                "confirm",
                c.step_settings(),
                self._confirm,
                outputs=[self.out / "confirm"],
                keep=[self.out / "confirm" / "bpb"],
                after=["candidates", "panel"],
            )
        )
        rated = ["rate"] if cfg.rate is not None else []  # the students read its labels too
        for name in tasks:
            steps.append(
                RunStep(
                    f"distill/{name}",
                    step_settings(cfg.distill.config()),
                    functools.partial(self._distill, name),
                    outputs=[self.filter_model(name).parent],
                    after=["confirm", *rated] + [f"index/{x}" for x in tasks],
                )
            )
        students = [f"distill/{t}" for t in tasks]
        if cfg.distill.multilabel:
            # one student for all tasks: the filter tokenizes each document once (per-task students
            # above stay for the report's checks, and cost seconds)
            steps.append(
                RunStep(
                    "distill/multilabel",
                    {**step_settings(cfg.distill.config()), "tasks": tasks},
                    self._distill_multilabel,
                    outputs=[self.multilabel_model().parent],
                    after=["confirm"],
                )
            )
            students = ["distill/multilabel"]
        reader = self._reader_settings()
        # the run's own paths (its students) and where the filter runs are not settings of it
        run_set: tuple[str, ...] = ("tasks", "indexes", "executor", "workers")
        if cfg.distill.multilabel and cfg.filter.models == multilabel_models(self.out, tasks):
            run_set += ("models",)
        steps.append(
            RunStep(
                "filter",
                {
                    "filter": step_settings(cfg.filter, run_set),
                    "corpus": corpus_fp,
                    **({"reader": reader} if reader else {}),
                    **({"student": "multilabel"} if cfg.distill.multilabel else {}),
                },
                self._filter,
                outputs=[self.out / "pools"],
                after=students,
            )
        )
        if cfg.domains is not None:
            steps.append(
                RunStep(
                    "domains",
                    step_settings(cfg.domains),
                    self._domains,
                    outputs=[self.out / "domains"],
                    after=["score"],
                )
            )
        steps.append(
            RunStep(
                "dataset",
                dataset_settings(cfg.dataset),
                self._dataset,
                outputs=[self.out / "dataset"],
                after=["filter"] + (["domains"] if cfg.domains is not None else []),
            )
        )
        steps.append(
            RunStep(
                "report",
                {},
                self._report,
                outputs=[self.out / "report.html"],
                after=[s.name for s in steps],
            )
        )
        return steps

    # -- the one call -----------------------------------------------------------------------------
    def run(self) -> list[StepOutcome]:
        from retriever.lock import OutputLock

        # every input is checked before anything is written, the lock file and folder included
        # (the steps only name paths under the run folder, they read none of it)
        steps = self.steps()
        if StepRunner(self.out).plan(steps).get("panel", "skipped") != "skipped":
            self.check_scorecard_gold()
        with OutputLock(self.out):  # two `retriever run` on one folder: the second is refused
            return self._run_locked(steps)

    def check_scorecard_gold(self) -> None:
        """List every task's ``scorecard_gold`` (local paths exist, Hub datasets can be listed)
        now: the panel step reads them only after the corpus is scored.

        Raises:
            InputError: one of them cannot be found or listed (the message names the task).
        """
        for t in self.cfg.tasks:
            for g in t.scorecard_gold:
                try:
                    list_shards([g])
                except InputError as e:
                    raise InputError(
                        f"[tasks.{t.name}] scorecard_gold {g!r}: {e} (checked before any work: "
                        "the panel step reads it after the corpus is scored)"
                    ) from e

    def _run_locked(self, steps: list[RunStep]) -> list[StepOutcome]:
        runner = StepRunner(self.out)
        n = len(steps)

        def announce(step: RunStep, action: str) -> None:
            i = [s.name for s in steps].index(step.name) + 1
            verb = {
                "skipped": "unchanged, skipped",
                "ran": "running",
                "resumed": "resuming",
                "reran": "settings or inputs changed, rerunning",
            }[action]
            print(f"[{i}/{n}] {step.name}: {verb}", file=sys.stderr, flush=True)

        return runner.run(steps, on_step=announce)

    # -- steps ------------------------------------------------------------------------------------
    def _index(self, spec: TaskSpec) -> dict[str, Any]:
        from retriever.index import build_index

        gi = build_index(spec, out=self.index_dir(spec.task), indexes_dir=self.cfg.run.specs_dir)
        return {"exemplars": gi.ntotal, "counts": gi.manifest["counts"]}

    def _head(self) -> dict[str, Any]:
        from retriever.embed import load_embedder
        from retriever.index import GoldIndex
        from retriever.index.head import HeadConfig
        from retriever.index.hybrid import read_negatives, train_heads

        ix = self.cfg.index
        dirs = [str(self.index_dir(t)) for t in self.cfg.task_names]
        negatives = read_negatives(
            list(self.cfg.corpus.paths),
            ix.max_negatives,
            self.cfg.run.seed,
            reader=self.corpus_reader(),
            max_read=20 * ix.max_negatives,  # a Hub corpus is not read through for a sample
        )
        emb = load_embedder(GoldIndex.load(dirs[0]).model, device=self.cfg.score.device)
        heads = train_heads(
            dirs,
            negatives,
            emb,
            HeadConfig(c=ix.c, seed=self.cfg.run.seed),
            k=self.cfg.score.k,
            sources=list(self.cfg.corpus.paths),
        )
        return {
            t: {"cv_roc_auc": h.models["head"].info["cv_roc_auc"], "negatives": len(negatives)}
            for t, h in heads.items()
        }

    def label_dirs(self) -> list[Path]:
        """What the students (per-task and multi-label) read: the confirm labels, and the ratings'
        when ``[rate]`` is on (their rows are trained on only with a training set that has the
        ``rating`` source)."""
        dirs = [self.out / "confirm" / "labels"]
        if self.cfg.rate is not None:
            dirs.append(self.out / "rate" / "labels")
        return dirs

    def prefilter_drops(self) -> bool:
        return self.cfg.prefilter is not None and self.cfg.prefilter.mode == "drop"

    def _prefilter(self) -> dict[str, Any]:
        from retriever.prefilter import prefilter_corpus

        cfg = self.prefilter_config()
        s = prefilter_corpus(
            list(self.cfg.corpus.paths), self.out / "prefilter", cfg, progress=self.progress
        )
        return {k: s[k] for k in ("docs_in", "kept", "kept_share", "matched_share", "docs_per_s")}

    def _band(self) -> dict[str, Any]:
        from retriever.band import band_docs

        s = band_docs(
            self.out / "scores",
            self.out / "band",
            self._optional("band"),
            progress=self.progress,
        )
        keys = ("docs_in", "in_band", "cut_low_bpb", "cut_high_bpb", "spearman_bpb_vs_similarity")
        return {**{k: s[k] for k in keys}, "cost": s["cost"]}

    def _rate(self) -> dict[str, Any]:
        from retriever.rate import rate_docs

        s = rate_docs(
            self.out / "scores",
            self.out / "rate",
            self._optional("rate"),
            indexes_dir=self.cfg.run.indexes_dir,
            progress=self.progress,
        )
        keep = ("requests", "asked", "cached", "complete", "requests_per_s", "docs_per_s")
        tasks = {
            t: {k: d[k] for k in ("rated", "rejected", "labels", "mean_score")}
            for t, d in s["tasks"].items()
        }
        return {**{k: s[k] for k in keep}, "tasks": tasks}

    def _score(self) -> dict[str, Any]:
        from retriever.score import score_corpus

        c, sc = self.cfg.corpus, self.cfg.score
        paths = list(c.paths)
        if self.prefilter_drops():  # the kept documents, in the prefilter's jsonl layout
            paths = [str(self.out / "prefilter" / "kept")]
        s = score_corpus(
            [str(self.index_dir(t)) for t in self.cfg.task_names],
            paths,
            self.out / "scores",
            store="default" if sc.store else None,
            progress=self.progress,
            k=sc.k,
            batch_size=sc.batch_size,
            device=sc.device,
            sample=sc.sample,
            seed=self.cfg.run.seed,
            reader=self.score_reader(),
        )
        if s["shards"]["failed"]:
            raise ConfigError(
                f"{len(s['shards']['failed'])} corpus shard(s) could not be read "
                f"({s['shards']['failed'][:3]}); see {self.out}/scores/failed/, fix, and rerun"
            )
        return {k: s[k] for k in ("docs_in", "scored", "rejected", "docs_per_second", "sample")}

    def _candidates(self) -> dict[str, Any]:
        from retriever.score import summarize

        s = summarize(
            self.out / "scores", self.cfg.score.top_fraction, dict(self.cfg.score.threshold)
        )
        return {
            t: {"candidates": d["candidates"], "threshold": d["threshold"]}
            for t, d in s["tasks"].items()
        }

    def _panel(self) -> dict[str, Any]:
        from retriever.confirm.panel import load_panel
        from retriever.confirm.scorecard import GoldSample, read_gold, scorecard, update_scores_file
        from retriever.gold import GoldLoader

        c, seed = self.cfg.confirm, self.cfg.run.seed
        pdir = self.out / "panel"
        held: dict[str, list[str]] = {}
        if c.panel == "tiny":
            from retriever.confirm.tiny_panel import read_texts, train_tiny_panel

            tiny = c.tiny_panel()
            rng = np.random.default_rng(seed)
            corpora: dict[str, list[str]] = {}
            for t in self.cfg.tasks:
                texts = GoldLoader(self.task_spec(t).sources).load().texts
                order = rng.permutation(len(texts))
                n_held = min(c.scorecard_limit, len(texts) // 4)
                held[t.name] = [texts[i] for i in order[:n_held]]
                corpora[t.name] = [texts[i] for i in order[n_held : n_held + tiny.texts]]
            corpora["generic"] = read_texts(
                list(self.cfg.corpus.paths), tiny.texts, seed, reader=self.corpus_reader()
            )
            # each model sees its own random mix of the tasks and generic text, so skills differ per
            # task
            names = list(corpora)
            mixes = [
                dict(zip(names, w, strict=True))
                for w in rng.dirichlet([0.6] * len(names), tiny.models)
            ]
            panel_file = train_tiny_panel(
                pdir, corpora, steps=tiny.steps, seed=seed, mixes=mixes, progress=self.progress
            )
        else:
            pdir.mkdir(parents=True, exist_ok=True)
            panel_file = Path(c.panel)
        panel = load_panel(panel_file)
        scores_csv = pdir / "scores.csv"
        report = {}
        sc = c.scorecard()
        for t in self.cfg.tasks:
            if t.name in held and not t.scorecard_gold:
                gold = GoldSample(texts=held[t.name])
            else:
                files = list(t.scorecard_gold) or [s.path for s in self.task_spec(t).sources]
                gold = read_gold(files, limit=sc.limit, seed=seed, kind=sc.kind)
            res = scorecard(panel, t.name, gold, device=c.bpb.device)
            update_scores_file(scores_csv, res.scores)
            report[t.name] = {m: d.get("acc_norm", d.get("bpb")) for m, d in res.details.items()}
        return {"panel": str(panel_file), "scores": str(scores_csv), "scorecard": report}

    def _confirm(self) -> dict[str, Any]:
        from retriever.confirm.docs import open_docs
        from retriever.confirm.panel import load_panel
        from retriever.confirm.stage import ConfirmStage

        c = self.cfg.confirm
        panel_file = self.out / "panel" / "panel.toml" if c.panel == "tiny" else Path(c.panel)
        panel = load_panel(panel_file, scores=self.out / "panel" / "scores.csv")
        drop_stale_bpb(self.out / "confirm" / "bpb", panel)
        s = ConfirmStage(panel, self.out / "confirm", c.config(), progress=self.progress).run(
            open_docs([str(self.out / "scores")])
        )
        return {t: d.get("labels", d) for t, d in s["tasks"].items()}

    def _distill(self, task: str) -> dict[str, Any]:
        from retriever.distill import FastTextDistiller

        rep = FastTextDistiller(self.cfg.distill.config()).run(
            self.label_dirs(),
            task,
            self.filter_model(task),
            indexes={t: self.index_dir(t) for t in self.cfg.task_names},
        )
        for w in rep.warnings:
            log.warning("student %s: %s", task, w)
        return {
            "n_train": rep.n_train,
            "n_test": rep.n_test,
            **_student_summary(rep.metrics, rep.manifest["training_set"], rep.warnings),
            "model_bytes": rep.manifest["model_bytes"],
        }

    def _distill_multilabel(self) -> dict[str, Any]:
        from retriever.distill.multilabel import MultiLabelDistiller

        rep = MultiLabelDistiller(self.cfg.distill.config()).run(
            self.label_dirs(),
            self.cfg.task_names,
            self.multilabel_model(),
            indexes={t: self.index_dir(t) for t in self.cfg.task_names},
        )
        per_task: dict[str, dict[str, Any]] = {}
        for t, m in rep.metrics.items():
            for w in rep.warnings.get(t, []):
                log.warning("student %s (multi-label): %s", t, w)
            per_task[t] = _student_summary(
                m, rep.manifest["training_set"][t], rep.warnings.get(t, [])
            )
        return {
            "n_train": rep.n_train,
            "roc_auc": {t: m.get("roc_auc") for t, m in rep.metrics.items()},
            "f1": {t: m.get("f1") for t, m in rep.metrics.items()},
            "tasks": per_task,
            "model_bytes": rep.manifest["model_bytes"],
        }

    def _filter(self) -> dict[str, Any]:
        from retriever.batch_filter import BatchFilter

        c, f = self.cfg.corpus, self.cfg.filter
        rep = BatchFilter(self.filter_config()).run(
            list(c.paths),
            self.out / "pools",
            executor=f.executor,
            workers=f.workers,
            progress=self.progress,
        )
        if rep.run.failed:
            raise ConfigError(
                f"{len(rep.run.failed)} shard(s) failed in the filter; see {self.out}/pools and "
                "rerun"
            )
        return rep.totals

    def _dataset(self) -> dict[str, Any]:
        from retriever.dataset import (
            DatasetBuilder,
            corpus_pools,
            discover_pools,
            parse_budget,
            parse_mixture,
        )

        d = self.cfg.dataset
        extra = {"general": d.general_pool} if d.general_pool else None
        pools = discover_pools(self.out / "pools", extra)
        mixture = (
            d.mixture if isinstance(d.mixture, dict) else parse_mixture(str(d.mixture), list(pools))
        )
        dc = d.config()
        s = DatasetBuilder(
            pools,
            mixture,
            parse_budget(d.budget),
            dc,
            # the general pool when it is corpus files, read with [corpus]'s reader (a stage's
            # output given as the general pool is read as written)
            corpus_pools=corpus_pools({k: pools[k] for k in extra or ()}, dc.reader),
            progress=self.progress,
        ).build(self.out / "dataset")
        return {"tokens": s.get("tokens"), "documents": s.get("docs"), "pools": s.get("pools")}

    def _domains(self) -> dict[str, Any]:
        from retriever.domains import assign_domains

        s = assign_domains(self.out / "scores", self.out / "domains", self._optional("domains"))
        return {
            "method": s["method"],
            "documents": s["n_docs"],
            "domains": len(s["domains"]),
            "largest": [(d.get("domain"), d.get("size")) for d in s["domains"][:3]],
        }

    def _report(self) -> dict[str, Any]:
        from retriever.report import write_report

        return {"report": str(write_report(self.out))}


def dataset_settings(d: DatasetSection) -> dict[str, Any]:
    """What the dataset step's fingerprint records of ``[dataset]``: the section's original keys
    (always, so older run folders keep their fingerprint) and any other option set away from its
    default; not what the run sets (``seed``, ``domains``: fingerprinted as steps of their own),
    except the reader options changed from their defaults when a general pool (corpus files) is
    read with them."""
    recorded = {k: v for k, v in dataclasses.asdict(d).items() if k in d.RECORDED}
    reader = reader_changes(d.reader) if d.general_pool else {}
    return {
        **recorded,
        **step_settings(d, (*d.RECORDED, "seed", "domains")),
        **({"reader": reader} if reader else {}),
    }


def drop_stale_bpb(bpb_dir: Path, panel) -> list[str]:
    """Remove the cached BPB of panel models whose weights changed since (a tiny panel retrained).

    The run owns this cache; the confirm stage itself refuses a stale cache rather than mixing it.
    """
    import shutil

    from retriever.confirm.matrix import weights_fingerprint
    from retriever.io import read_json

    dropped = []
    for m in panel.models:
        man = bpb_dir / m.name / "manifest.json"
        if man.exists() and read_json(man)["settings"].get("weights") != weights_fingerprint(
            m.path
        ):
            shutil.rmtree(bpb_dir / m.name)
            dropped.append(m.name)
    if dropped:
        (bpb_dir / "matrix.parquet").unlink(missing_ok=True)
        log.info("BPB cache of retrained model(s) %s dropped", dropped)
    return dropped


def _student_summary(metrics: dict, training_set: dict, warnings: list[str]) -> dict[str, Any]:
    """One student's (or one task's of a multi-label student) entry in ``run.json``: held-out
    metrics, its AUC beside the similarity stage's, rows per source, warnings."""
    cmp_ = metrics.get("heldout_vs_similarity") or {}
    return {
        **{k: metrics.get(k) for k in ("precision", "recall", "f1", "roc_auc") if k in metrics},
        "heldout_student_auc": cmp_.get("student_auc"),
        "heldout_similarity_auc": cmp_.get("similarity_auc"),
        "training_set": {
            s: d["rows"]
            for s, d in training_set["per_source"].items()
            if isinstance(d, dict) and "rows" in d
        },
        "warnings": list(warnings),
    }


def format_run_summary(cfg: RunConfig, outcomes: list[StepOutcome]) -> str:
    """One screen: what each step did, and per task what was kept."""
    lines = [f"run {cfg.out}  ({cfg.path})"]
    width = max((len(o.name) for o in outcomes), default=0) + 2
    for o in outcomes:
        lines.append(f"  {o.name:<{width}}{o.action:<9}{o.seconds:>8.1f} s")
    res = {o.name: o.result or {} for o in outcomes}
    tw = max([len("task"), *map(len, cfg.task_names)]) + 2
    lines.append(
        f"{'task':<{tw}}{'candidates':>11}{'positive':>10}{'negative':>10}{'filter F1':>10}"
        f"{'AUC':>7}"
        f"{'held-out AUC student / similarity':>35}"
    )
    cand = res.get("candidates", {})
    conf = res.get("confirm", {})
    warns = []
    for t in cfg.task_names:
        lab = conf.get(t, {}) if isinstance(conf.get(t), dict) else {}
        dist = res.get(f"distill/{t}") or (res.get("distill/multilabel") or {}).get(
            "tasks", {}
        ).get(t, {})
        f1, auc = dist.get("f1"), dist.get("roc_auc")
        sa, ma = dist.get("heldout_student_auc"), dist.get("heldout_similarity_auc")
        held = "-" if sa is None or ma is None else f"{sa:.3f} / {ma:.3f}"
        lines.append(
            f"{t:<{tw}}{cand.get(t, {}).get('candidates', '-'):>11}{lab.get('positive', '-'):>10}"
            f"{lab.get('negative', '-'):>10}{'-' if f1 is None else f'{f1:.3f}':>10}"
            f"{'-' if auc is None else f'{auc:.3f}':>7}{held:>35}"
        )
        warns += [f"  WARNING student {t}: {w}" for w in dist.get("warnings") or []]
    lines += warns
    ds = res.get("dataset", {})
    if ds:
        lines.append(
            f"training set: {cfg.out / 'dataset'}  ({ds.get('documents', '?')} documents, "
            f"{ds.get('tokens', '?')} tokens)"
        )
    lines.append(f"report: {cfg.out / 'report.html'}")
    lines.append(f"logs: {cfg.out / 'logs' / 'run.log'}")
    return "\n".join(lines)
