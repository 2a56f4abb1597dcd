"""retriever: find the pretraining documents that teach a target skill.

Pipeline stages, in order (one sub-package each):
gold -> embed -> index -> corpus -> score -> confirm -> distill -> batch_filter -> query.
Heavy dependencies (torch, faiss, sentence-transformers, lancedb, fasttext, datatrove) are imported
inside the functions that use them, so ``import retriever`` stays cheap.
"""

from retriever.data import Doc, DocStream, Rejected
from retriever.errors import (
    ConfigError,
    InputError,
    MissingDependencyError,
    ModelMismatchError,
    RetrieverError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Doc",
    "DocStream",
    "InputError",
    "MissingDependencyError",
    "ModelMismatchError",
    "Rejected",
    "RetrieverError",
    "__version__",
]
