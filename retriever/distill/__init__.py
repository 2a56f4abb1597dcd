"""Stage distill: train a fastText student on the confirm stage's labels.

API: ``FastTextDistiller(DistillConfig(...)).run(labels, task, out) -> DistillReport``.
"""

from retriever.distill.labels import LabelSet, fasttext_text, load_labels, write_labels
from retriever.distill.train import (
    DistillConfig,
    DistillReport,
    FastTextDistiller,
    model_manifest_path,
    predict_positive,
)

__all__ = [
    "DistillConfig",
    "DistillReport",
    "FastTextDistiller",
    "LabelSet",
    "fasttext_text",
    "load_labels",
    "model_manifest_path",
    "predict_positive",
    "write_labels",
]
