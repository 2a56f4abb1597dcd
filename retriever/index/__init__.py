"""FAISS gold index per task (``indexes/<task>/``): build, save, load with a model check, add,
search."""

from retriever.index.build import add_to_index, build_index
from retriever.index.gold_index import GoldIndex, faiss_gpu_available, load_indexes, new_faiss_index

__all__ = [
    "GoldIndex",
    "add_to_index",
    "build_index",
    "faiss_gpu_available",
    "load_indexes",
    "new_faiss_index",
]
