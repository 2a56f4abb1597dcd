"""``evaluate_run``: the arms of a run config, from its ``[evaluate]`` section and overrides."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from retriever.arms.config import EvaluateConfig
from retriever.arms.datasets import ArmSources
from retriever.arms.run import ArmsEvaluation, ArmsResult, Evaluator, Trainer, resolve_budget
from retriever.errors import ConfigError

PATH_KEYS = ("out",)
PATH_MAP_KEYS = ("datasets", "eval_data")


def load_evaluate_config(run_cfg, overrides: dict[str, Any] | None = None) -> EvaluateConfig:
    """``[evaluate]`` of a run config (paths relative to the config file), with ``overrides``
    (``None`` values ignored; ``datasets`` / ``eval_data`` merged over the section's).

    Raises:
        ConfigError: an unknown key or a bad value.
    """
    from retriever.run.config import check_keys, config_path, config_source

    base = Path(run_cfg.path).parent
    raw = dict(run_cfg.evaluate)
    check_keys(raw, {f.name for f in dataclasses.fields(EvaluateConfig)}, "[evaluate]")
    for k in PATH_KEYS:
        if raw.get(k):
            raw[k] = config_path(base, str(raw[k]))
    for k in PATH_MAP_KEYS:
        if k in raw:
            if not isinstance(raw[k], dict):
                raise ConfigError(f"[evaluate] {k} must be a table NAME = PATH")
            raw[k] = {n: config_source(base, str(p), f"[evaluate] {k}") for n, p in raw[k].items()}
    for k in ("arms", "tasks"):
        if isinstance(raw.get(k), list):
            raw[k] = tuple(raw[k])
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        raw[k] = {**raw.get(k, {}), **v} if k in PATH_MAP_KEYS else v
    try:
        return EvaluateConfig(**raw)
    except TypeError as e:
        raise ConfigError(f"[evaluate]: {e}") from e


def evaluate_run(
    config: str | os.PathLike,
    overrides: dict[str, Any] | None = None,
    *,
    trainer: Trainer | None = None,
    evaluator: Evaluator | None = None,
    progress: bool | None = False,
    on_proxy=None,
) -> ArmsResult:
    """Run the arms of the run config at ``config`` (its run folder must be finished for the
    ``similarity`` and ``pipeline`` arms). ``trainer`` / ``evaluator`` default to the proxy stage's
    ``train_proxy`` / ``evaluate_model``."""
    from retriever.run.config import load_run_config

    cfg = load_run_config(config)
    ec = load_evaluate_config(cfg, overrides)
    if trainer is None:
        from retriever.arms.proxy import ProxyTrainer

        trainer = ProxyTrainer(ec.proxy, device=ec.device, progress=bool(progress))
    if evaluator is None:
        from retriever.arms.proxy import HarnessEvaluator

        evaluator = HarnessEvaluator(
            ec.eval_tasks(cfg.task_names), dict(ec.eval_data), ec.eval_limit, ec.device
        )
    out = Path(ec.out) if ec.out else cfg.out / "evaluate"
    budget = resolve_budget(ec, cfg.dataset.budget)
    return ArmsEvaluation(
        ec,
        ArmSources.from_run(cfg),
        out,
        budget,
        trainer,
        evaluator,
        progress=progress,
        on_proxy=on_proxy,
    ).run()
