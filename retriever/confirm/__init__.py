"""Confirm similarity candidates by perplexity correlation across a panel of causal LMs.

Pipeline of the stage (each piece usable on its own):

- :mod:`~retriever.confirm.bpb`: bits per byte of documents under one LM (batched, windowed);
- :mod:`~retriever.confirm.matrix`: the cached documents x models BPB matrix;
- :mod:`~retriever.confirm.panel`, :mod:`~retriever.confirm.scorecard`: the models and their task
  scores (given, or measured on ELMB multiple choice / gold texts);
- :mod:`~retriever.confirm.correlate`: the estimators (pure numpy);
- :mod:`~retriever.confirm.decide`: thresholds -> positive / negative / uncertain with reasons;
- :mod:`~retriever.confirm.stage`: :class:`ConfirmStage`, all of it for every task;
- :mod:`~retriever.confirm.tiny_panel`: an offline panel of tiny byte-level GPT-2 models.

Heavy dependencies (torch, transformers) are imported where used.
"""

# (the functions `correlate` and `decide` are not re-exported: they would shadow their modules)
from retriever.confirm.correlate import ESTIMATORS, Correlations
from retriever.confirm.decide import DecisionRules
from retriever.confirm.docs import CandidateRule, open_docs
from retriever.confirm.panel import Panel, PanelModel, Score, load_panel, load_scores
from retriever.confirm.stage import BpbOptions, ConfirmSettings, ConfirmStage
from retriever.confirm.tiny_panel import build_tiny_panel, train_tiny_panel

__all__ = [
    "ESTIMATORS",
    "BpbOptions",
    "CandidateRule",
    "ConfirmSettings",
    "ConfirmStage",
    "Correlations",
    "DecisionRules",
    "Panel",
    "PanelModel",
    "Score",
    "build_tiny_panel",
    "load_panel",
    "load_scores",
    "open_docs",
    "train_tiny_panel",
]
