"""``EvaluateConfig``: the one settings object of ``retriever evaluate`` (CLI, API and the run
config's ``[evaluate]`` section all build it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from retriever.arms.student import arm_folder, is_student_arm, student_variant
from retriever.errors import ConfigError
from retriever.proxy.config import ProxyConfig

BUILTIN_ARMS = ("random", "similarity", "pipeline")
# arms that need an optional step's output; named in `arms` explicitly, never by default
OPTIONAL_ARMS = ("band", "prefilter", "rating")


@dataclass(frozen=True)
class EvaluateConfig:
    """Which arms to train proxies for, and how.

    Attributes:
        arms: arms to run, in table order: ``random`` (uniform sample of the run's corpus),
            ``similarity`` (top documents by similarity only, from the run's score folder),
            ``pipeline`` (the run's filtered pools, sampled as the run's dataset step does),
            ``band`` (as ``similarity``, among the documents of the perplexity band only: the
            run's ``[band]`` step), ``prefilter`` (as ``similarity``, among the documents the
            keyword prefilter matches for the task: the ``[prefilter]`` step), ``rating`` (as
            ``similarity``, less the documents the LLM rated below the threshold: the
            ``[rate]`` step), ``student:<variant>`` (as ``pipeline``, with the students
            retrained on that label-source variant of ``retriever.distill.trainset.VARIANTS``
            and the corpus refiltered with them), and any name of ``datasets``.
        datasets: user arms, name -> a dataset folder (``build-dataset`` output) or any pool /
            corpus folder; sampled uniformly to the budget.
        seeds: proxies per arm (seeds ``0 .. seeds-1``; seed ``s`` of every arm starts from the
            same initial weights, so differences are paired by seed).
        budget: tokens of every arm's dataset (``"200k"``; default the run's ``[dataset] budget``),
            counted as the dataset stage counts them.
        tasks: evaluation tasks (default: the keys of ``eval_data``, else the run's tasks).
        eval_data: task -> local evaluation records (offline); a task without one uses the
            harness's own (Hub) data.
        eval_limit: evaluation records per task (``None``: all).
        proxy: the proxy stage's :class:`~retriever.proxy.ProxyConfig` (its ``seed`` is set per
            arm run; its ``device``, left ``auto``, is ``device`` below).
        reference: the arm every other arm is compared with.
        confidence: level of the intervals.
        out: output folder (default ``RUN/evaluate``).
        device: ``auto``, ``cpu`` or ``cuda`` for training and evaluation.
    """

    arms: tuple[str, ...] = BUILTIN_ARMS
    datasets: dict[str, str] = field(default_factory=dict)
    seeds: int = 3
    budget: str | int | None = None
    tasks: tuple[str, ...] = ()
    eval_data: dict[str, str] = field(default_factory=dict)
    eval_limit: int | None = None
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    reference: str = "random"
    confidence: float = 0.95
    out: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.arms, str) or not self.arms:
            raise ConfigError(
                "[evaluate] arms must be a non-empty list, e.g. ['random', 'pipeline']"
            )
        known = BUILTIN_ARMS + OPTIONAL_ARMS
        unknown = [
            a
            for a in self.arms
            if a not in known and a not in self.datasets and not is_student_arm(a)
        ]
        if unknown:
            raise ConfigError(
                f"[evaluate] unknown arm(s) {unknown}: use {', '.join(known)}, "
                "student:<variant> or name a dataset folder in datasets = {NAME = PATH} (CLI: "
                "--dataset NAME=PATH)"
            )
        for a in self.arms:
            if is_student_arm(a) and a not in self.datasets:
                student_variant(a)  # one line listing the variants
        if len(set(self.arms)) != len(self.arms):
            raise ConfigError(f"[evaluate] arms {list(self.arms)} name an arm twice")
        folders: dict[str, str] = {}
        for a in self.arms:  # each arm writes OUT/<folder>: two arms must never share one
            f = arm_folder(a)
            if f in folders or f.startswith("_") or "/" in f or f in (".", ".."):
                raise ConfigError(
                    f"[evaluate] arm {a!r} would write into the folder {f!r}"
                    + (f" of arm {folders[f]!r}" if f in folders else "")
                    + ": rename it (a dataset arm's name must not start with '_' or hold '/')"
                )
            folders[f] = a
        if not isinstance(self.seeds, int) or isinstance(self.seeds, bool) or self.seeds < 1:
            raise ConfigError(f"[evaluate] seeds must be an integer >= 1, got {self.seeds!r}")
        if not 0.0 < float(self.confidence) < 1.0:
            raise ConfigError(f"[evaluate] confidence must be in (0, 1), got {self.confidence}")
        if not isinstance(self.proxy, ProxyConfig):
            raise ConfigError(f"[evaluate] proxy must be a ProxyConfig, got {self.proxy!r}")
        if self.proxy.seed != ProxyConfig.seed:
            raise ConfigError("[evaluate] proxy.seed is set per arm run; use seeds = N instead")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ConfigError(f"[evaluate] eval_limit must be >= 1, got {self.eval_limit}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"[evaluate] device must be auto, cpu or cuda, got {self.device!r}")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    def eval_tasks(self, run_tasks: list[str]) -> list[str]:
        return list(self.tasks) or list(self.eval_data) or list(run_tasks)
