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


def load_evaluate_config(run_cfg, overrides: dict[str, Any] | None = None) -> EvaluateConfig:
    """``[evaluate]`` of a run config (checked, its paths made relative to the config file, when
    the config loaded), with ``overrides`` (``None`` values ignored; ``datasets`` / ``eval_data``
    merged over the section's).

    Raises:
        ConfigError: an unknown override or a bad value.
    """
    from retriever.run.config import EVALUATE_PATH_MAP_KEYS

    ec: EvaluateConfig = run_cfg.evaluate
    kw: dict[str, Any] = {
        k: {**getattr(ec, k, {}), **v} if k in EVALUATE_PATH_MAP_KEYS else v
        for k, v in (overrides or {}).items()
        if v is not None
    }
    try:
        return dataclasses.replace(ec, **kw)
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
