"""The stage contract: a small object with one call, ``run(docs, rank, world_size) -> DocStream``.

A pipeline is a plain list of steps; steps never import an executor (datatrove ``PipelineStep``).
"""

from __future__ import annotations

from retriever.data import DocStream
from retriever.stats import Stats


class Step:
    """Base stage: subclasses implement :meth:`run` and count into ``self.stats``."""

    name = "step"

    def __init__(self) -> None:
        self.stats = Stats()

    def run(self, docs: DocStream, rank: int = 0, world_size: int = 1) -> DocStream:
        raise NotImplementedError(f"{type(self).__name__} must implement run()")

    def __call__(self, docs: DocStream, rank: int = 0, world_size: int = 1) -> DocStream:
        return self.run(docs, rank, world_size)


def run_pipeline(
    steps: list[Step], docs: DocStream | None = None, rank: int = 0, world_size: int = 1
) -> DocStream:
    """Chain steps lazily; the first step may ignore ``docs`` (a reader)."""
    stream = docs if docs is not None else iter(())
    for step in steps:
        stream = step.run(stream, rank, world_size)
    return stream
