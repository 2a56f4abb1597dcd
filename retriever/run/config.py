"""The TOML config of ``retriever run``: one section per stage.

A stage's section *is* the stage's own frozen config (``[confirm]`` a ``ConfirmSettings``,
``[distill]`` a ``DistillConfig``, ``[filter]`` a ``FilterConfig``, ``[rate]`` a ``RateConfig``,
``[evaluate]`` an ``EvaluateConfig``, ``[mix]`` a ``MixRunConfig``, ...), read by one parser
(:func:`parse_section`; a part of a config, e.g. ``[confirm.rules]``, is its sub-table), so an
option is defined once, where the stage checks it, and the run hands the stage that object as it
is. An unknown key is a :class:`ConfigError` naming the section and the nearest valid key; what
the run sets itself (the tasks, the reader options of ``[corpus]``) is refused in a stage's
section with a line saying where it is set. See
``configs/offline.toml`` (runs on local files) and ``configs/elmb.toml`` (the four ELMB tasks from
the Hub).
"""

from __future__ import annotations

import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retriever.arms.config import EvaluateConfig
from retriever.batch_filter.config import FilterConfig
from retriever.config import changed_fields, check_field_types, read_toml
from retriever.confirm.scorecard import ScorecardConfig
from retriever.confirm.stage import ConfirmSettings
from retriever.confirm.tiny_panel import TinyPanelConfig
from retriever.corpus.readers import ReaderConfig
from retriever.dataset.config import DatasetConfig
from retriever.distill.train import DistillConfig
from retriever.errors import ConfigError
from retriever.index.head import MAX_NEGATIVES, HeadConfig
from retriever.mix.run import MixRunConfig
from retriever.proxy.config import ProxyConfig
from retriever.score.job import ScoreJob

if TYPE_CHECKING:
    from retriever.band import BandConfig
    from retriever.domains import DomainConfig
    from retriever.prefilter import PrefilterConfig
    from retriever.rate import RateConfig

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
    """``[run]``: ``out`` the run folder; ``indexes_dir`` where task specs (``<task>.toml``) are
    looked up (absent: the specs shipped with retriever, its repository's ``indexes/``). Like
    every path of a run config, a relative one is relative to the config file's folder."""

    out: str = "runs/default"
    indexes_dir: str | None = None
    model: str | None = None
    seed: int = 0

    @property
    def specs_dir(self) -> Path:
        """``indexes_dir``, or the shipped specs when it is not set."""
        return Path(self.indexes_dir) if self.indexes_dir is not None else SPECS_DIR


@dataclass(frozen=True)
class CorpusSection(ReaderConfig):
    """``[corpus]``: the shards (``paths``) and the reader options every stage reading them uses
    (a :class:`~retriever.corpus.readers.ReaderConfig`)."""

    paths: tuple[str, ...] = ()

    def reader_config(self) -> ReaderConfig:
        """The reader options alone, as each stage takes them."""
        return base_config(self, ReaderConfig)


def base_config(section: Any, cls: type) -> Any:
    """The ``cls`` part of a section that extends a stage's config with run-level keys (e.g.
    :class:`FilterSection` -> its :class:`~retriever.batch_filter.FilterConfig`)."""
    return cls(**{f.name: getattr(section, f.name) for f in fields(cls) if f.init})


# the task specs shipped with retriever (the repository's indexes/), whatever the cwd
SPECS_DIR = Path(__file__).resolve().parents[2] / "indexes"
STUDENTS_DIR = "filters"  # RUN/filters/<task>/filter.bin: the students the filter runs
EXECUTORS = ("local", "slurm", "ray")


@dataclass(frozen=True)
class DistillSection(DistillConfig):
    """``[distill]``: the students' :class:`~retriever.distill.DistillConfig` (any of its options),
    plus ``multilabel``: one one-vs-all student for every task, so the filter reads, tokenizes and
    hashes each document once for all tasks (see retriever/distill/multilabel.py)."""

    multilabel: bool = False

    def config(self) -> DistillConfig:
        """What each student is trained with."""
        return base_config(self, DistillConfig)


@dataclass(frozen=True)
class FilterSection(FilterConfig):
    """``[filter]``: the filter stage's :class:`~retriever.batch_filter.FilterConfig`, with the
    run's tasks, ``[corpus]``'s reader options and the run's students (``RUN/filters``; the
    multi-label one with ``[distill] multilabel``) filled in, plus where it runs: ``executor``
    (local | slurm | ray: one datatrove task per shard) and ``workers`` (tasks at once; local
    default: the cores)."""

    executor: str = "local"
    workers: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor {self.executor!r}: use one of {', '.join(EXECUTORS)}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")

    def config(self) -> FilterConfig:
        """The stage's config, as :class:`~retriever.batch_filter.BatchFilter` takes it."""
        return base_config(self, FilterConfig)


@dataclass(frozen=True)
class IndexSection:
    """``head``: after the task indexes, train each one's learned head (``retriever index head``:
    gold positives; ``max_negatives`` corpus documents, a seeded sample, plus the other tasks'
    gold as negatives), so ``score_<task>`` is the head's probability. On by default: it wins the
    cross-source evaluation on every task (docs/retrieval.md). ``c``: its inverse L2 strength."""

    head: bool = True
    max_negatives: int = MAX_NEGATIVES
    c: float = HeadConfig.c

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
    count (2000000, ``"2M"``), see :class:`~retriever.score.job.DocSampler`; unset: every
    document."""

    k: int = ScoreJob.k
    batch_size: int = ScoreJob.batch_size
    top_fraction: float | None = 0.1
    threshold: dict[str, float] = field(default_factory=dict)
    device: str | None = ScoreJob.device
    store: bool = True
    sample: Any = None


# [confirm]'s keys from before the section was the stage's nested config, each with the part of
# ConfirmSettings that holds it now: still read (a config in the wild), and recorded under these
# names in the confirm step's fingerprint, so older run folders keep theirs
CONFIRM_FLAT_KEYS = {
    "negatives_per_positive": "candidates",
    "max_random_negatives": "candidates",
    "max_candidates": "candidates",
    "estimator": "rules",
    "positive_min": "rules",
    "negative_max": "rules",
    "positive_top_fraction": "rules",
    "device": "bpb",
}
CONFIRM_PARTS = ("candidates", "rules", "bpb")


@dataclass(frozen=True)
class ConfirmSection(ConfirmSettings):
    """``[confirm]``: the confirm stage's :class:`~retriever.confirm.stage.ConfirmSettings` (its
    parts in ``[confirm.candidates]``, ``[confirm.rules]``, ``[confirm.bpb]``; the run's tasks, and
    ``[run] seed`` for the negatives' sample, filled in), plus the panel it decides with.

    ``panel``: a panel TOML path, or ``"tiny"`` to train a tiny byte-level panel offline
    (``tiny_models`` models of ``tiny_steps`` steps on ``tiny_texts`` texts per source: a
    :class:`~retriever.confirm.tiny_panel.TinyPanelConfig`, see :meth:`tiny_panel`);
    ``scorecard_kind`` / ``scorecard_limit``: how the panel's task scores are measured. The keys
    written flat before the section was nested (``max_candidates``, ``estimator``, ``device``, ...:
    :data:`CONFIRM_FLAT_KEYS`) are still read into their part.
    """

    panel: str = "tiny"
    # the tiny panel's options, flat under these names (the step fingerprints record them so)
    tiny_models: int = TinyPanelConfig.models
    tiny_steps: int = TinyPanelConfig.steps
    tiny_texts: int = TinyPanelConfig.texts
    scorecard_kind: str = ScorecardConfig.kind
    scorecard_limit: int = ScorecardConfig.limit

    # the panel's keys; every other field is the stage's
    PANEL_KEYS = (
        "panel",
        "tiny_models",
        "tiny_steps",
        "tiny_texts",
        "scorecard_kind",
        "scorecard_limit",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.panel != "tiny" and not self.panel.endswith(".toml"):
            raise ConfigError(
                f'[confirm] panel must be "tiny" or a panel .toml file, got {self.panel!r}'
            )
        self.tiny_panel()  # their checks, at load
        self.scorecard()

    def tiny_panel(self) -> TinyPanelConfig:
        """The tiny panel ``panel = "tiny"`` trains."""
        return TinyPanelConfig(self.tiny_models, self.tiny_steps, self.tiny_texts)

    def scorecard(self) -> ScorecardConfig:
        """How the panel's task scores are measured."""
        return ScorecardConfig(self.scorecard_kind, self.scorecard_limit)

    def config(self) -> ConfirmSettings:
        """The stage's config, as :class:`~retriever.confirm.stage.ConfirmStage` takes it."""
        return base_config(self, ConfirmSettings)

    def step_settings(self) -> dict[str, Any]:
        """What the confirm step's fingerprint records, one form whatever the spelling: the
        panel's keys, ``min_models``, ``metric``, ``center_models`` and :data:`CONFIRM_FLAT_KEYS`
        under their flat names whatever their value (``max_candidates`` only when set: it came
        later); any other option under its part's name (``bpb.dtype``) when set away from its
        default. The tasks and the seed are the run's, recorded apart."""
        top = (*self.PANEL_KEYS, "min_models", "metric", "center_models")
        out = {k: getattr(self, k) for k in top}
        out.update({k: getattr(getattr(self, p), k) for k, p in CONFIRM_FLAT_KEYS.items()})
        if out["max_candidates"] is None:
            del out["max_candidates"]
        out.update(changed_fields(self, exclude=(*top, *CONFIRM_PARTS, "tasks")))
        for p in CONFIRM_PARTS:
            mine = changed_fields(getattr(self, p), exclude=(*CONFIRM_FLAT_KEYS, "seed"))
            out.update({f"{p}.{k}": v for k, v in mine.items()})
        return out


def nest_flat_keys(data: dict[str, Any], where: str, flat: dict[str, str]) -> dict[str, Any]:
    """Section ``[where]`` with each key of ``flat`` (an option written flat before the section
    was nested, -> the part that holds it now) moved into its part's table.

    Raises:
        ConfigError: a part that is not a table, or one option written flat and in its part.
    """
    data = dict(data)
    for k, p in flat.items():
        if not isinstance(data.get(p, {}), dict):
            raise ConfigError(f"[{where}.{p}] must be a table")
        if k not in data:
            continue
        if k in data.get(p, {}):
            raise ConfigError(
                f"[{where}] {k} and [{where}.{p}] {k} are one option written twice; keep "
                f"[{where}.{p}] {k}"
            )
        data[p] = {**data.get(p, {}), k: data.pop(k)}
    return data


def _check_confirm_part_keys(data: dict[str, Any], fixed: dict[str, Any]) -> None:
    """A key of ``[confirm]`` that is an option of one of its parts (or nearest to one): an error
    naming the part's table."""
    import difflib

    hints = typing.get_type_hints(ConfirmSettings)
    names = [f.name for f in fields(ConfirmSection) if f.init]
    of_part = {f.name: p for p in CONFIRM_PARTS for f in fields(hints[p])}
    for k in sorted(set(data) - set(names)):
        if k in of_part and f"{of_part[k]}.{k}" in fixed:
            src = _SET_BY_RUN.get(f"confirm.{of_part[k]}.{k}") or _SET_BY_RUN[k]
            raise ConfigError(f"[confirm] {k}: not set here, it comes from {src}")
        if k in of_part:
            raise ConfigError(f"[confirm] {k}: an option of [confirm.{of_part[k]}]; write it there")
        near = difflib.get_close_matches(k, [*names, *of_part], n=1)
        if near and near[0] in of_part:
            raise ConfigError(
                f"[confirm]: unknown key {k!r} (did you mean [confirm.{of_part[near[0]]}] "
                f"{near[0]}?)"
            )


def _confirm_section(base: Path, data: Any, tasks: tuple[str, ...], seed: int) -> ConfirmSection:
    """``[confirm]`` as a :class:`ConfirmSection`: the flat keys of :data:`CONFIRM_FLAT_KEYS`
    moved into their part's table (one option written both ways is an error), the panel path
    relative to the config.

    Raises:
        ConfigError: an option written flat and in its part's table, a part's option written
            flat that never was, or what :func:`parse_section` refuses.
    """
    fixed = {
        "tasks": tasks,
        "candidates.seed": seed,
        # the candidates are the score folder's (the run's candidates step)
        "candidates.top_fraction": None,
        "candidates.threshold": {},
    }
    if isinstance(data, dict):
        data = nest_flat_keys(data, "confirm", CONFIRM_FLAT_KEYS)
        _check_confirm_part_keys(data, fixed)
    c = parse_section(ConfirmSection, data, "confirm", fixed=fixed)
    return c if c.panel == "tiny" else replace(c, panel=config_path(base, c.panel))


@dataclass(frozen=True)
class DatasetSection(DatasetConfig):
    """``[dataset]``: the dataset stage's :class:`~retriever.dataset.DatasetConfig` (``seed``
    from ``[run]``, ``domains`` = ``RUN/domains`` when the run has a ``[domains]`` step), plus
    what it samples: ``budget`` (tokens: 10B, 500M, ...), ``mixture`` (``"equal"``, a table of
    pool weights, or a mixture file) and ``general_pool`` (an extra pool named ``general``)."""

    budget: str = "10B"
    mixture: Any = "equal"
    general_pool: str | None = None

    # recorded in the dataset step's fingerprint whatever their value (the section's keys before
    # it was the stage's config, so older run folders keep theirs); the others when changed
    RECORDED = ("budget", "mixture", "order", "tiers", "tokenizer", "general_pool")

    def config(self) -> DatasetConfig:
        """The stage's config, as :class:`~retriever.dataset.DatasetBuilder` takes it."""
        return base_config(self, DatasetConfig)


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
    distill: DistillSection
    filter: FilterSection
    dataset: DatasetSection
    index: IndexSection = field(default_factory=IndexSection)
    # read by `retriever evaluate` / `retriever mix run`, not by `retriever run` (checked here all
    # the same, so `retriever run --plan` refuses a typo in them)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    mix: MixRunConfig = field(default_factory=MixRunConfig)
    plan: PlanSection = field(default_factory=PlanSection)
    # optional steps (None: the section is absent, the step is not run), each the stage's config
    # (tasks: the run's unless given; reader options: [corpus]'s)
    prefilter: PrefilterConfig | None = None
    rate: RateConfig | None = None
    band: BandConfig | None = None
    # k-means (or ClimbLab cluster ids) over the scored documents; the dataset step then uses the
    # domains (order = "stratified" fills tiers within domains)
    domains: DomainConfig | None = None

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


READER_KEYS = tuple(f.name for f in fields(ReaderConfig))
# what the run sets itself in a stage's section, and where a user sets it instead
_SET_BY_RUN = {
    "seed": "[run] seed",
    "domains": "the run's [domains] step (RUN/domains)",
    "tasks": "the run's [tasks.NAME] tables",
    "indexes": "the run (its students, RUN/filters)",
    "reader": "[corpus] (one set of reader options for every stage)",
    "confirm.candidates.top_fraction": "[score] top_fraction (the run's candidates step)",
    "confirm.candidates.threshold": "[score] threshold (the run's candidates step)",
    "evaluate.proxy.seed": "[evaluate] seeds = N (each arm trains proxies of seeds 0 .. N-1)",
}


def parse_section(
    cls: type,
    data: Any,
    where: str,
    fixed: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
) -> Any:
    """``[where]`` as the frozen dataclass ``cls``: its keys are ``cls``'s fields (an unknown one
    is a :class:`ConfigError` naming the nearest valid key), its values type-checked, arrays made
    tuples; a field that is itself a dataclass (a part of the stage's config) is its sub-table
    ``[where.field]``, read the same way. ``fixed``: fields the run sets (the run's tasks,
    ``[corpus]``'s reader), refused in the table; ``defaults``: fields the run fills unless the
    table gives them; in both, ``"part.field"`` names a field of a part.

    Raises:
        ConfigError: not a table, an unknown or run-set key, a wrong type, a value the stage's own
            checks refuse (the message names the section).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] must be a table")
    fixed, fixed_in = _split_parts(fixed)
    defaults, defaults_in = _split_parts(defaults)
    names = [f.name for f in fields(cls) if f.init]
    for k in sorted(data):
        if k in fixed or (k in READER_KEYS and "reader" in names):
            key = "reader" if k in READER_KEYS else k
            src = _SET_BY_RUN.get(f"{where}.{key}") or _SET_BY_RUN[key]
            raise ConfigError(f"[{where}] {k}: not set here, it comes from {src}")
    check_keys(data, [n for n in names if n not in fixed], f"[{where}]")
    hints = typing.get_type_hints(cls)
    parts = {
        n: parse_section(hints[n], data.get(n), f"{where}.{n}", fixed_in.get(n), defaults_in.get(n))
        for n in names
        if n not in fixed
        and isinstance(hints.get(n), type)
        and is_dataclass(hints[n])
        and (n in data or n in fixed_in or n in defaults_in)
    }
    plain = {k: v for k, v in data.items() if k not in parts}
    check_field_types(cls, plain, f"[{where}]")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in plain.items()}
    try:
        return cls(**{**defaults, **kw, **parts, **fixed})
    except TypeError as e:
        raise ConfigError(f"[{where}]: {e}") from e
    except ConfigError as e:
        if str(e).startswith(f"[{where}]"):
            raise
        raise ConfigError(f"[{where}]: {e}") from e


def _split_parts(given: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``{"a": 1, "part.b": 2}`` -> ``({"a": 1}, {"part": {"b": 2}})``."""
    mine: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {}
    for k, v in (given or {}).items():
        part, dot, rest = k.partition(".")
        if dot:
            parts.setdefault(part, {})[rest] = v
        else:
            mine[k] = v
    return mine, parts


def config_path(base: Path, p: str) -> str:
    """A local path of the config (an output, a spec, a panel): relative to the config's folder
    ``base``, never the cwd; absolute paths and URIs (``hf://``, ``s3://``) stay."""
    if os.path.isabs(p) or "://" in p:
        return p
    return os.path.normpath(Path(base).absolute() / p)


def config_source(base: Path, p: str, where: str) -> str:
    """An input that is a local path or a name (a Hub dataset / model id, ``holdout:<task>``):
    relative to the config's folder ``base`` when it is there or starts with ``.``; otherwise the
    name as written.

    Raises:
        ConfigError: ``p`` is not beside the config but exists relative to the cwd (it would be
            read from wherever the command runs).
    """
    if os.path.isabs(p) or "://" in p:
        return p
    cand = Path(base).absolute() / p
    if cand.exists() or p.startswith("."):
        return os.path.normpath(cand)
    if os.path.exists(p):
        raise ConfigError(
            f"{where} {p!r} is not beside the config ({os.path.normpath(cand)}) but is in the "
            f"current folder ({os.path.abspath(p)}); paths in a run config are relative to the "
            "config file: write it relative to the config's folder, or absolute"
        )
    return p


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read and check a run config: every section becomes its stage's config here, so a typo
    fails before any work starts.

    Raises:
        ConfigError: missing file, bad TOML, unknown sections or keys, no tasks or corpus.
    """
    from retriever.band import BandConfig
    from retriever.domains import DomainConfig

    p, raw = read_toml(path, "config", "see configs/offline.toml and configs/elmb.toml")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{p}: unknown section(s) {unknown}; sections are {list(SECTIONS)}")
    base = Path(os.path.abspath(p)).parent
    run = parse_section(RunSection, raw.get("run"), "run")
    run = RunSection(
        **{
            **run.__dict__,
            "out": config_path(base, run.out),
            "indexes_dir": str(SPECS_DIR)
            if run.indexes_dir is None
            else config_path(base, run.indexes_dir),
        }
    )
    tasks_raw = raw.get("tasks") or {}
    if not isinstance(tasks_raw, dict) or not tasks_raw:
        raise ConfigError(f"{p}: [tasks.NAME] tables are required (one per task)")
    tasks = []
    for name, t in tasks_raw.items():
        tc = parse_section(TaskConfig, {**(t or {}), "name": name}, f"tasks.{name}")
        where = f"[tasks.{name}]"
        tasks.append(
            TaskConfig(
                name=name,
                gold=tuple(config_source(base, g, f"{where} gold") for g in tc.gold),
                spec=_spec_path(base, tc.spec) if tc.spec else None,
                gold_limit=tc.gold_limit,
                scorecard_gold=tuple(
                    config_source(base, g, f"{where} scorecard_gold") for g in tc.scorecard_gold
                ),
            )
        )
    names = tuple(t.name for t in tasks)
    corpus = parse_section(CorpusSection, raw.get("corpus"), "corpus")
    if not corpus.paths:
        raise ConfigError(f"{p}: [corpus] paths = [...] is required")
    corpus = CorpusSection(
        **{
            **corpus.__dict__,
            "paths": tuple(config_source(base, c, "[corpus] paths") for c in corpus.paths),
            # a local tokenizer folder is relative to the config, like the paths
            "detokenizer": config_source(base, corpus.detokenizer, "[corpus] detokenizer")
            if corpus.detokenizer
            else None,
        }
    )
    reader = corpus.reader_config()
    dataset = parse_section(
        DatasetSection,
        raw.get("dataset"),
        "dataset",
        fixed={
            "seed": run.seed,
            "domains": str(Path(run.out) / "domains") if "domains" in raw else None,
            "reader": reader,  # the general pool is corpus files
        },
    )
    dataset = replace(
        dataset,
        general_pool=config_path(base, dataset.general_pool) if dataset.general_pool else None,
        scan_cache=config_path(base, dataset.scan_cache) if dataset.scan_cache else None,
        tokenizer=config_source(base, dataset.tokenizer, "[dataset] tokenizer")
        if dataset.tokenizer
        else None,
        # evaluation files
        decontaminate={
            k: config_source(base, v, f"[dataset] decontaminate.{k}")
            for k, v in dataset.decontaminate.items()
        },
    )
    confirm = _confirm_section(base, raw.get("confirm"), names, run.seed)
    distill = parse_section(DistillSection, raw.get("distill"), "distill")
    students = Path(run.out) / STUDENTS_DIR
    filt_raw = raw.get("filter")
    if isinstance(filt_raw, dict):
        filt_raw = _paths(base, filt_raw, ("tokenizer",), "filter")
        if isinstance(filt_raw.get("models"), dict):  # students named by hand: local files
            filt_raw["models"] = {
                t: config_path(base, m) if isinstance(m, str) else m
                for t, m in filt_raw["models"].items()
            }
    filt = parse_section(
        FilterSection,
        filt_raw,
        "filter",
        fixed={"tasks": names, "indexes": str(students), "reader": reader},
        defaults={"models": multilabel_models(run.out, names)} if distill.multilabel else None,
    )
    cfg = RunConfig(
        os.path.abspath(p),  # the folder relative paths were resolved against
        run,
        tuple(tasks),
        corpus,
        parse_section(ScoreSection, raw.get("score"), "score"),
        confirm,
        distill,
        filt,
        dataset,
        parse_section(IndexSection, raw.get("index"), "index"),
        _evaluate_section(base, raw.get("evaluate")),
        parse_section(MixRunConfig, _local(base, raw.get("mix"), MIX_PATH_KEYS), "mix"),
        _plan_section(base, raw.get("plan")),
        prefilter=_prefilter_section(raw["prefilter"], run, tasks, reader)
        if "prefilter" in raw
        else None,
        rate=_rate_section(base, raw, reader, names),
        band=_optional(BandConfig, "band", raw, base, ("model", "tokenizer"), reader),
        domains=_optional(DomainConfig, "domains", raw, base),
    )
    _check_stage_sections(cfg)
    return cfg


def multilabel_models(out: str | os.PathLike, tasks: Sequence[str]) -> dict[str, str]:
    """Each task's student under ``[distill] multilabel``: the one multi-label model."""
    path = str(Path(out) / STUDENTS_DIR / "multilabel" / "filter.bin")
    return {t: path for t in tasks}


def _optional(
    cls: type,
    name: str,
    raw: dict[str, Any],
    base: Path,
    path_keys: tuple[str, ...] = (),
    reader: ReaderConfig | None = None,
    defaults: dict[str, Any] | None = None,
    local: tuple[str, ...] = (),
) -> Any:
    """An optional step's section as its stage's config ``cls`` (``None`` when absent):
    ``path_keys`` (a path or a Hub name) and ``local`` (always a path) relative to the config,
    ``reader``: ``[corpus]``'s."""
    if name not in raw:
        return None
    data = raw[name]
    if isinstance(data, dict):
        data = _local(base, _paths(base, data, path_keys, name), local)
    fixed = {"reader": reader} if reader is not None else None
    return parse_section(cls, data, name, fixed=fixed, defaults=defaults)


def _rate_section(
    base: Path, raw: dict[str, Any], reader: ReaderConfig, tasks: tuple[str, ...]
) -> RateConfig | None:
    """``[rate]`` as the stage's ``RateConfig`` (``None`` when absent): the endpoint's options in
    ``[rate.endpoint]``, or flat in ``[rate]`` as they were written before the section was nested
    (one option written both ways is an error); the run's tasks unless given, ``[corpus]``'s
    reader, ``cache`` relative to the config."""
    from retriever.rate import EndpointConfig, RateConfig

    if isinstance(raw.get("rate"), dict):
        flat = {f.name: "endpoint" for f in fields(EndpointConfig)}
        data = nest_flat_keys(raw["rate"], "rate", flat)
        names = [f.name for f in fields(RateConfig)]
        unknown = {k: v for k, v in data.items() if k not in names and k not in READER_KEYS}
        known = [n for n in names if n != "reader"] + list(flat)
        check_keys(unknown, known, "[rate]")  # a typo of a flat key is named too
        raw = {**raw, "rate": data}
    return _optional(
        RateConfig, "rate", raw, base, reader=reader, defaults={"tasks": tasks}, local=("cache",)
    )


def _prefilter_section(data: Any, run: RunSection, tasks: list[TaskConfig], reader: ReaderConfig):
    """``[prefilter]`` as the stage's ``PrefilterConfig``: the run's tasks and ``[corpus]``'s
    reader; a task's patterns from the section, else from its spec (``patterns``), else the
    defaults."""
    from retriever.config import spec_patterns
    from retriever.prefilter import PrefilterConfig

    if isinstance(data, dict):
        patterns = dict(data.get("patterns") or {})
        specs = {
            t.name: Path(t.spec) if t.spec else run.specs_dir / f"{t.name}.toml"
            for t in tasks
            if t.name not in patterns
        }
        patterns.update(spec_patterns(specs))
        if patterns:
            data = {**data, "patterns": patterns}
    return parse_section(
        PrefilterConfig,
        data,
        "prefilter",
        fixed={"reader": reader},
        defaults={"tasks": tuple(t.name for t in tasks)},
    )


# [evaluate] / [mix] keys that are local folders, and [evaluate]'s tables NAME = PATH (each a
# path or a Hub name)
EVALUATE_PATH_KEYS = ("out",)
EVALUATE_PATH_MAP_KEYS = ("datasets", "eval_data")
MIX_PATH_KEYS = ("general", "out", "domains")


def _local(base: Path, data: Any, keys: tuple[str, ...]) -> Any:
    """``data`` (a section, if a table) with its local-path values ``keys`` relative to the
    config."""
    if not isinstance(data, dict):
        return data
    return {
        k: config_path(base, v) if k in keys and isinstance(v, str) and v else v
        for k, v in data.items()
    }


def _evaluate_section(base: Path, data: Any) -> EvaluateConfig:
    """``[evaluate]`` as ``retriever evaluate``'s :class:`~retriever.arms.EvaluateConfig`: ``out``
    relative to the config, each path of ``datasets`` / ``eval_data`` too (Hub names stay),
    ``proxy`` the proxy stage's :class:`~retriever.proxy.ProxyConfig`."""
    data = _local(base, data, EVALUATE_PATH_KEYS)
    if isinstance(data, dict):
        data = dict(data)
        for k in EVALUATE_PATH_MAP_KEYS:
            if k in data:
                if not isinstance(data[k], dict):
                    raise ConfigError(f"[evaluate] {k} must be a table NAME = PATH")
                data[k] = {
                    n: config_source(base, str(v), f"[evaluate] {k}") for n, v in data[k].items()
                }
    # [evaluate] proxy is the proxy stage's ProxyConfig, read at load; its seed is each run's
    return parse_section(EvaluateConfig, data, "evaluate", fixed={"proxy.seed": ProxyConfig.seed})


def _paths(
    base: Path, section: dict[str, Any], keys: tuple[str, ...], where: str
) -> dict[str, Any]:
    """``section`` with its path-or-name values ``keys`` made relative to the config (Hub ids
    stay; see :func:`config_source`)."""
    return {
        k: config_source(base, v, f"[{where}] {k}") if k in keys and isinstance(v, str) else v
        for k, v in section.items()
    }


def _spec_path(base: Path, spec: str) -> str:
    """A task's ``spec``: a TOML path (relative to the config) or a task name in indexes_dir."""
    return config_path(base, spec) if spec.endswith(".toml") or "/" in spec else spec


def _plan_section(base: Path, data: Any) -> PlanSection:
    ps = parse_section(PlanSection, data, "plan")
    if ps.rates_file:
        ps = PlanSection(**{**ps.__dict__, "rates_file": config_path(base, ps.rates_file)})
    if not isinstance(ps.rates, dict):
        raise ConfigError("[plan] rates must be a table of rate = value")
    from retriever.plan.rates import Rates

    Rates().with_values(dict(ps.rates), "[plan] rates")  # unknown names fail here
    return ps


def _check_stage_sections(cfg: RunConfig) -> None:
    """The checks across sections, once, so a mistake fails before any work starts (each
    section's own were made when it was read)."""
    from retriever.score.job import parse_sample

    try:
        parse_sample(cfg.score.sample)
    except ConfigError as e:
        raise ConfigError(f"[score]: {e}") from e


def step_settings(
    section: Any, exclude: tuple[str, ...] = (), flat: tuple[str, ...] = ()
) -> dict[str, Any]:
    """What a run step's fingerprint records of its section: the options set away from their
    defaults (``exclude``: what the run sets and fingerprints apart, e.g. the reader); those of
    the parts ``flat`` under their own names (parts whose options were the section's own before
    it was nested, so older run folders keep their fingerprint)."""
    out = changed_fields(section, exclude=("reader", *exclude, *flat))
    for p in flat:
        out.update(changed_fields(getattr(section, p)))
    return out
