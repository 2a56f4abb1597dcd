"""FAISS gold index per task (``indexes/<task>/``): build, save, load with a model check, add,
search."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retriever.index.build import add_to_index, build_index
    from retriever.index.gold_index import (
        GoldIndex,
        faiss_gpu_available,
        load_indexes,
        new_faiss_index,
    )

# imported on first use (PEP 562): ``retriever.index.head`` (HeadConfig, read by the CLI parser
# and the run config at start-up) does not load the embedder (OpenVINO, torch) through the builder
_WHERE = {
    "add_to_index": "build",
    "build_index": "build",
    "GoldIndex": "gold_index",
    "faiss_gpu_available": "gold_index",
    "load_indexes": "gold_index",
    "new_faiss_index": "gold_index",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'retriever.index' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"retriever.index.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "GoldIndex",
    "add_to_index",
    "build_index",
    "faiss_gpu_available",
    "load_indexes",
    "new_faiss_index",
]
