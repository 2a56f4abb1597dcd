"""The TOML config of ``retriever run``: one section per stage.

Sections map onto each stage's own settings object (``[distill]`` -> ``DistillConfig``, ``[filter]``
-> ``FilterConfig``, ...), so an option is defined once, where the stage checks it; an unknown key
is a :class:`ConfigError` naming the section. See ``configs/offline.toml`` (runs on local files)
and ``configs/elmb.toml`` (the four ELMB tasks from the Hub).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from retriever.config import check_field_types, read_toml
from retriever.confirm.decide import DecisionRules
from retriever.confirm.docs import CandidateRule
from retriever.corpus.readers import ReaderConfig
from retriever.errors import ConfigError

SECTIONS = (
    "run",
    "tasks",
    "corpus",
    "index",
    "score",
    "confirm",
    "distill",
    "filter",
    "dataset",
    "report",
    "evaluate",
    "mix",
    "plan",
    # optional steps: present (even empty) = on
    "prefilter",
    "rate",
    "band",
    "domains",
)


@dataclass(frozen=True)
class TaskConfig:
    """A task of the run: gold for the index (``gold``, else the spec's sources) and for the
    scorecard."""

    name: str
    gold: tuple[str, ...] = ()
    spec: str | None = None
    gold_limit: int | None = None
    scorecard_gold: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSection:
    out: str = "runs/default"
    indexes_dir: str = "indexes"
    model: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class CorpusSection(ReaderConfig):
    """``[corpus]``: the shards (``paths``) and the reader options every stage reading them uses
    (a :class:`~retriever.corpus.readers.ReaderConfig`)."""

    paths: tuple[str, ...] = ()

    def reader_config(self) -> ReaderConfig:
        """The reader options alone, as each stage takes them."""
        return ReaderConfig(**{f.name: getattr(self, f.name) for f in fields(ReaderConfig)})


@dataclass(frozen=True)
class IndexSection:
    """``head``: after the task indexes, train each one's learned head (``retriever index head``:
    gold positives; ``max_negatives`` corpus documents, a seeded sample, plus the other tasks'
    gold as negatives), so ``score_<task>`` is the head's probability. On by default: it wins the
    cross-source evaluation on every task (docs/retrieval.md). ``c``: its inverse L2 strength."""

    head: bool = True
    max_negatives: int = 5000
    c: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.head, bool):
            raise ConfigError(f"[index] head must be true or false, got {self.head!r}")
        if isinstance(self.max_negatives, bool) or self.max_negatives < 10:
            raise ConfigError(f"[index] max_negatives must be >= 10, got {self.max_negatives!r}")
        if self.c <= 0:
            raise ConfigError(f"[index] c must be > 0, got {self.c!r}")


@dataclass(frozen=True)
class ScoreSection:
    """``sample``: embed a seeded random sample only: a fraction (0.01, ``"1%"``) or a document
    count (2000000, ``"2M"``), see :mod:`retriever.score.sample`; unset: every document."""

    k: int = 10
    batch_size: int = 256
    top_fraction: float | None = 0.1
    threshold: dict[str, float] = field(default_factory=dict)
    device: str | None = None
    store: bool = True
    sample: Any = None


@dataclass(frozen=True)
class ConfirmSection:
    """``panel``: a panel TOML path, or ``"tiny"`` to train a tiny byte-level panel offline.

    ``max_candidates``: at most this many candidates per task get BPB under the panel (the top ones
    by similarity), so the stage costs at most ``models x max_candidates`` document forwards.
    """

    panel: str = "tiny"
    tiny_models: int = 6
    tiny_steps: int = 120
    tiny_texts: int = 300
    scorecard_kind: str = "auto"
    scorecard_limit: int = 200
    # the stages' own defaults (one place): candidates, then the decision rule
    negatives_per_positive: float = CandidateRule.negatives_per_positive
    max_random_negatives: int = CandidateRule.max_random_negatives
    max_candidates: int | None = CandidateRule.max_candidates
    estimator: str = DecisionRules.estimator
    positive_min: float = DecisionRules.positive_min
    negative_max: float = DecisionRules.negative_max
    positive_top_fraction: float | None = DecisionRules.positive_top_fraction
    min_models: int = 3
    metric: str | None = None
    center_models: bool = True
    device: str | None = None


@dataclass(frozen=True)
class DatasetSection:
    budget: str = "10B"
    mixture: Any = "equal"
    order: str = "top"
    tiers: tuple = ((0.1, 0.7), (0.5, 0.3))  # order = "stratified": (cut, share) per tier
    tokenizer: str | None = None
    general_pool: str | None = None


@dataclass(frozen=True)
class PlanSection:
    """``retriever plan`` and the plan ``retriever run`` prints first (see retriever/plan/).

    ``cores`` / ``gpus``: the node the plan's wall times are given for. ``max_core_hours``,
    ``max_gpu_hours``, ``max_hours_here``: a run whose plan exceeds one is refused unless ``--yes``.
    ``rates``: rate name -> value overriding the defaults (see ``retriever.plan.Rates``), or
    ``rates_file``: a JSON file of them. ``calibrate``: measure rates on ``calibrate_docs``
    documents before ``retriever run`` too (``retriever plan`` always does, unless
    ``--no-calibrate``). ``exact_limit``: a local corpus of at most this many documents is read in
    full for exact counts. ``docs``, ``mean_chars``, ``shards``: the corpus size to plan with when
    the corpus cannot be listed here (a Hub corpus, offline); a listed corpus always wins.
    """

    cores: int = 64
    gpus: int = 8
    max_core_hours: float | None = None
    max_gpu_hours: float | None = None
    max_hours_here: float | None = None
    rates: dict[str, float] = field(default_factory=dict)
    rates_file: str | None = None
    calibrate: bool = False
    calibrate_docs: int = 200
    exact_limit: int = 100_000
    docs: int | None = None
    mean_chars: float | None = None
    shards: int | None = None

    def __post_init__(self) -> None:
        for k in ("cores", "gpus", "calibrate_docs", "exact_limit"):
            v = getattr(self, k)
            if (
                isinstance(v, bool)
                or not isinstance(v, int)
                or v < (0 if k == "exact_limit" else 1)
            ):
                raise ConfigError(f"[plan] {k} must be a positive integer, got {v!r}")
        for k in (
            "max_core_hours",
            "max_gpu_hours",
            "max_hours_here",
            "docs",
            "mean_chars",
            "shards",
        ):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
                raise ConfigError(f"[plan] {k} must be a positive number, got {v!r}")


@dataclass(frozen=True)
class RunConfig:
    path: str
    run: RunSection
    tasks: tuple[TaskConfig, ...]
    corpus: CorpusSection
    score: ScoreSection
    confirm: ConfirmSection
    distill: dict[str, Any]
    filter: dict[str, Any]
    dataset: DatasetSection
    index: IndexSection = field(default_factory=IndexSection)
    # read by `retriever evaluate` / `retriever mix run` (retriever.arms), not by `retriever run`
    evaluate: dict[str, Any] = field(default_factory=dict)
    mix: dict[str, Any] = field(default_factory=dict)
    plan: PlanSection = field(default_factory=PlanSection)
    # optional steps (None: the section is absent, the step is not run): PrefilterConfig,
    # RateConfig and BandConfig arguments (tasks default to the run's)
    prefilter: dict[str, Any] | None = None
    rate: dict[str, Any] | None = None
    band: dict[str, Any] | None = None
    # DomainConfig arguments: k-means (or ClimbLab cluster ids) over the scored documents; the
    # dataset step then uses the domains (order = "stratified" fills tiers within domains)
    domains: dict[str, Any] | None = None

    @property
    def out(self) -> Path:
        return Path(self.run.out)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]


def check_keys(data: dict[str, Any], known: list[str] | set[str], where: str) -> None:
    """Raise :class:`ConfigError` for a key not in ``known``, naming the nearest valid one."""
    import difflib

    unknown = sorted(set(data) - set(known))
    if not unknown:
        return
    hints = []
    for k in unknown:
        near = difflib.get_close_matches(k, list(known), n=1)
        hints.append(f"{k!r} (did you mean {near[0]!r}?)" if near else repr(k))
    raise ConfigError(
        f"{where}: unknown key(s) {', '.join(hints)}; known: {', '.join(sorted(known))}"
    )


def _make(cls, data: Any, where: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] must be a table")
    check_keys(data, [f.name for f in fields(cls) if f.init], f"[{where}]")
    check_field_types(cls, data, f"[{where}]")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**kw)
    except TypeError as e:
        raise ConfigError(f"[{where}]: {e}") from e


def _rel(base: Path, p: str) -> str:
    """Paths in the config are relative to the config file; Hub ids and absolute paths stay."""
    if os.path.isabs(p) or p.startswith("hf://"):
        return p
    cand = base / p
    if cand.exists() or p.startswith("."):
        return os.path.normpath(cand)
    return p


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read and check a run config.

    Raises:
        ConfigError: missing file, bad TOML, unknown sections or keys, no tasks or corpus.
    """
    p, raw = read_toml(path, "config", "see configs/offline.toml and configs/elmb.toml")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{p}: unknown section(s) {unknown}; sections are {list(SECTIONS)}")
    base = p.parent
    run = _make(RunSection, raw.get("run"), "run")
    run = RunSection(
        **{
            **run.__dict__,
            "out": _rel(base, run.out) if run.out.startswith(".") else run.out,
            "indexes_dir": _rel(base, run.indexes_dir),
        }
    )
    tasks_raw = raw.get("tasks") or {}
    if not isinstance(tasks_raw, dict) or not tasks_raw:
        raise ConfigError(f"{p}: [tasks.NAME] tables are required (one per task)")
    tasks = []
    for name, t in tasks_raw.items():
        tc = _make(TaskConfig, {**(t or {}), "name": name}, f"tasks.{name}")
        tasks.append(
            TaskConfig(
                name=name,
                gold=tuple(_rel(base, g) for g in tc.gold),
                spec=_rel(base, tc.spec) if tc.spec else None,
                gold_limit=tc.gold_limit,
                scorecard_gold=tuple(_rel(base, g) for g in tc.scorecard_gold),
            )
        )
    corpus = _make(CorpusSection, raw.get("corpus"), "corpus")
    if not corpus.paths:
        raise ConfigError(f"{p}: [corpus] paths = [...] is required")
    corpus = CorpusSection(
        **{
            **corpus.__dict__,
            "paths": tuple(_rel(base, c) for c in corpus.paths),
            # a local tokenizer folder is relative to the config, like the paths
            "detokenizer": _rel(base, corpus.detokenizer) if corpus.detokenizer else None,
        }
    )
    dataset = _make(DatasetSection, raw.get("dataset"), "dataset")
    for sec in ("distill", "filter", "evaluate", "mix", "prefilter", "rate", "band", "domains"):
        if not isinstance(raw.get(sec, {}), dict):
            raise ConfigError(f"[{sec}] must be a table")
    confirm = _make(ConfirmSection, raw.get("confirm"), "confirm")
    if confirm.panel != "tiny":
        confirm = ConfirmSection(**{**confirm.__dict__, "panel": _rel(base, confirm.panel)})
    cfg = RunConfig(
        str(p),
        run,
        tuple(tasks),
        corpus,
        _make(ScoreSection, raw.get("score"), "score"),
        confirm,
        dict(raw.get("distill", {})),
        dict(raw.get("filter", {})),
        dataset,
        _make(IndexSection, raw.get("index"), "index"),
        dict(raw.get("evaluate", {})),
        dict(raw.get("mix", {})),
        _plan_section(base, raw.get("plan")),
        prefilter=dict(raw["prefilter"]) if "prefilter" in raw else None,
        rate=_paths(base, raw["rate"], ("cache",)) if "rate" in raw else None,
        band=_paths(base, raw["band"], ("model", "tokenizer")) if "band" in raw else None,
        domains=dict(raw["domains"]) if "domains" in raw else None,
    )
    _check_stage_sections(cfg)
    return cfg


def _paths(base: Path, section: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``section`` with its path values made relative to the config (Hub ids stay)."""
    return {k: _rel(base, v) if k in keys and isinstance(v, str) else v for k, v in section.items()}


def _plan_section(base: Path, data: Any) -> PlanSection:
    ps = _make(PlanSection, data, "plan")
    if ps.rates_file:
        ps = PlanSection(**{**ps.__dict__, "rates_file": _rel(base, ps.rates_file)})
    if not isinstance(ps.rates, dict):
        raise ConfigError("[plan] rates must be a table of rate = value")
    from retriever.plan.rates import Rates

    Rates().with_values(dict(ps.rates), "[plan] rates")  # unknown names fail here
    return ps


def _check_stage_sections(cfg: RunConfig) -> None:
    """Build the stages' own config objects once, so a typo fails before any work starts."""
    from retriever.batch_filter import FilterConfig
    from retriever.confirm.decide import DecisionRules
    from retriever.confirm.docs import CandidateRule
    from retriever.distill import DistillConfig

    c = cfg.confirm
    try:
        DecisionRules(
            estimator=c.estimator,
            positive_min=c.positive_min,
            negative_max=c.negative_max,
            positive_top_fraction=c.positive_top_fraction,
        )
        CandidateRule(
            negatives_per_positive=c.negatives_per_positive,
            max_random_negatives=c.max_random_negatives,
            max_candidates=c.max_candidates,
        )
    except ConfigError as e:
        raise ConfigError(f"[confirm]: {e}") from e
    if c.panel != "tiny" and not c.panel.endswith(".toml"):
        raise ConfigError(f'[confirm] panel must be "tiny" or a panel .toml file, got {c.panel!r}')
    from retriever.score.sample import parse_sample

    try:
        parse_sample(cfg.score.sample)
    except ConfigError as e:
        raise ConfigError(f"[score]: {e}") from e
    _make(DistillConfig, distill_kwargs(cfg), "distill")
    multilabel(cfg)
    _make(FilterConfig, {**filter_kwargs(cfg), "tasks": cfg.task_names}, "filter")
    if cfg.prefilter is not None:
        prefilter_config(cfg)
    if cfg.rate is not None:
        rate_config(cfg)
    if cfg.band is not None:
        band_config(cfg)
    if cfg.domains is not None:
        domains_config(cfg)


def prefilter_config(cfg: RunConfig):
    """``[prefilter]`` as the stage's ``PrefilterConfig`` (see :func:`prefilter_kwargs`)."""
    from retriever.prefilter import PrefilterConfig

    return _make(PrefilterConfig, prefilter_kwargs(cfg), "prefilter")


def rate_config(cfg: RunConfig):
    """``[rate]`` as the stage's ``RateConfig`` (tasks: the run's unless given)."""
    from retriever.rate import RateConfig

    return _make(RateConfig, rate_kwargs(cfg), "rate")


def domains_config(cfg: RunConfig):
    """``[domains]`` as the stage's ``DomainConfig``."""
    from retriever.domains import DomainConfig

    return _make(DomainConfig, dict(cfg.domains or {}), "domains")


def band_config(cfg: RunConfig):
    """``[band]`` as the stage's ``BandConfig``."""
    from retriever.band import BandConfig

    return _make(BandConfig, dict(cfg.band or {}), "band")


def prefilter_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """``[prefilter]`` as ``PrefilterConfig`` arguments: the run's tasks and corpus fields unless
    given; a task's patterns from the section, else from its spec (``patterns``), else defaults."""
    from retriever.config import load_task_spec

    kw = {"tasks": cfg.task_names, "reader": cfg.corpus.reader_config(), **(cfg.prefilter or {})}
    patterns = dict(kw.get("patterns") or {})
    for t in cfg.tasks:
        spec = Path(t.spec) if t.spec else Path(cfg.run.indexes_dir) / f"{t.name}.toml"
        if t.name not in patterns and spec.is_file():
            pats = load_task_spec(spec).patterns
            if pats:
                patterns[t.name] = pats
    kw["patterns"] = patterns
    return kw


def rate_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """``[rate]`` as ``RateConfig`` arguments (tasks: the run's unless given)."""
    return {"tasks": cfg.task_names, **(cfg.rate or {})}


EXECUTOR_KEYS = ("executor", "workers", "tasks_per_run")
RUN_DISTILL_KEYS = ("multilabel",)  # run-level [distill] keys, not DistillConfig options


def distill_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """``[distill]`` as ``DistillConfig`` arguments (``multilabel`` left out: see
    :func:`multilabel`)."""
    return {k: v for k, v in cfg.distill.items() if k not in RUN_DISTILL_KEYS}


def multilabel(cfg: RunConfig) -> bool:
    """``[distill] multilabel = true``: one one-vs-all student for every task, so the filter reads,
    tokenizes and hashes each document once for all tasks (see retriever/distill/multilabel.py)."""
    v = cfg.distill.get("multilabel", False)
    if not isinstance(v, bool):
        raise ConfigError(f"[distill] multilabel must be true or false, got {v!r}")
    return v


def filter_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """``[filter]`` as ``FilterConfig`` arguments (executor keys left out: see
    :func:`executor_kwargs`)."""
    kw = {k: v for k, v in cfg.filter.items() if k not in EXECUTOR_KEYS}
    if "format" in kw:  # the TOML key users expect; FilterConfig calls it fmt
        kw["fmt"] = kw.pop("format")
    return kw


def executor_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """``[filter]`` executor keys: ``executor`` (local | slurm | ray), ``workers``."""
    return {"executor": cfg.filter.get("executor", "local"), "workers": cfg.filter.get("workers")}
