"""Evaluation of proxy models: ELMB through lm-evaluation-harness, bits per byte, decontamination.

``evaluate_model(checkpoint, tasks, data, limit, device)`` -> ``{task: {acc, acc_stderr,
acc_norm, acc_norm_stderr, bpb, n}}``; task configs in ``retriever/evaluation/tasks/``.
"""

from retriever.evaluation.elmb import TASKS, get_task, local_eval_sets, read_mc_records
from retriever.evaluation.harness import evaluate_model

__all__ = ["TASKS", "evaluate_model", "get_task", "local_eval_sets", "read_mc_records"]
