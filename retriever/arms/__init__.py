"""Ablation arms (``retriever evaluate``): does the selection beat random selection, per task?

Each arm is a dataset built by the dataset stage at one token budget (``random``, ``similarity``,
``pipeline``, or a folder the user names); N proxies per arm (seeds) are trained and evaluated
through the :class:`Trainer` / :class:`Evaluator` protocols; the table gives per arm and task the
mean and interval of acc, acc_norm and BPB and each arm's paired difference to ``random``.

API: :func:`evaluate_run` (a run config), :class:`ArmsEvaluation` (any sources),
:func:`build_arm_dataset`, and the numpy core :func:`summarize_arms`.
"""

from retriever.arms.api import evaluate_run, load_evaluate_config
from retriever.arms.config import BUILTIN_ARMS, EvaluateConfig
from retriever.arms.datasets import ArmDataset, ArmSources, build_arm_dataset, dataset_fingerprint
from retriever.arms.run import (
    ArmsEvaluation,
    ArmsResult,
    Evaluator,
    Trainer,
    TrainOutcome,
    format_table,
)
from retriever.arms.stats import Interval, mean_interval, paired_difference, summarize_arms

__all__ = [
    "BUILTIN_ARMS",
    "ArmDataset",
    "ArmSources",
    "ArmsEvaluation",
    "ArmsResult",
    "EvaluateConfig",
    "Evaluator",
    "Interval",
    "TrainOutcome",
    "Trainer",
    "build_arm_dataset",
    "dataset_fingerprint",
    "evaluate_run",
    "format_table",
    "load_evaluate_config",
    "mean_interval",
    "paired_difference",
    "summarize_arms",
]
