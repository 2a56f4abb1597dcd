"""Lazy imports of heavy optional dependencies, with an install hint (datatrove style)."""

from __future__ import annotations

import importlib
from typing import Any

from retriever.errors import MissingDependencyError

# module name -> (pip requirement, extra of this package that pulls it)
_HINTS: dict[str, tuple[str, str]] = {
    "torch": ("torch==2.13.0", "confirm"),
    "faiss": ("faiss-cpu", "embed"),
    "sentence_transformers": ("sentence-transformers", "embed"),
    "lancedb": ("lancedb", "store"),
    "fasttext": ("fasttext-numpy2-wheel", "distill"),
    "datatrove": ("datatrove", "datatrove"),
    "datasets": ("datasets", "hub"),
    "transformers": ("transformers", "confirm"),
    "pandas": ("pandas", "store"),
    "ray": ("ray", "ray"),
    "zstandard": ("zstandard", "core"),
    "sklearn": ("scikit-learn", "embed"),
    "tokenizers": ("tokenizers", "confirm"),
    "fastapi": ("fastapi", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "lm_eval": ("lm-eval", "eval"),
    "accelerate": ("accelerate", "eval"),
}


def require(module: str) -> Any:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip command.

    Typed ``Any``: the module is imported at run time, so its classes can be subclassed and its
    attributes used as types without stubs.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        pkg, extra = _HINTS.get(top, (top, "all"))
        raise MissingDependencyError(
            f"`{module}` is needed here but is not installed ({e}). "
            f"Install it with `pip install {pkg}` or `pip install 'retriever[{extra}]'`."
        ) from e


def has_cuda() -> bool:
    """True when torch is importable and sees a CUDA device."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
