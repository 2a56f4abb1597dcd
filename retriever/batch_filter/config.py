"""The filter stage's one config (:class:`FilterConfig`), used as-is by the Python API, the CLI
and the run config's ``[filter]`` section, and the plan a worker runs (:class:`FilterPlan`: the
config plus what the stage settled: models, thresholds, output folder)."""

from __future__ import annotations

from dataclasses import dataclass

from retriever.batch_filter.thresholds import BY
from retriever.batch_filter.writers import POOL_FORMATS
from retriever.corpus.readers import ReaderConfig
from retriever.errors import ConfigError
from retriever.names import check_name

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class FilterConfig:
    """What to keep and how to write it.

    Args:
        tasks: tasks filtered in the same pass (one output folder each).
        models: task -> model path; default ``<indexes>/<task>/filter.bin``.
        indexes: folder of per-task model folders.
        threshold: keep ``p >= threshold``; one value for every task or a task -> value map.
            Default 0.5 when ``top_fraction`` is not given.
        top_fraction: keep this share (0, 1] of ``by`` per task (PreSelect). The threshold is
            found on a sample of ``sample_docs`` documents and recorded.
        by: ``docs``, ``chars`` or ``tokens`` (tokens: exact with ``tokenizer``, else estimated).
        sample_docs: sample size for ``top_fraction``.
        format: output format: ``jsonl.gz``, ``jsonl``, ``parquet`` or ``lmflow``.
        reader: how corpus records are read (fields, detokenizer for token-id shards).
        tokenizer: local tokenizer.json / folder for exact GPT-2 token counts.
        batch_size: documents per fastText call.
        max_chars: score only each document's first characters (``0``: all).
        write_scores: keep every document's probabilities (float16) in ``DIR/scores/``:
            re-threshold later with ``retriever filter-rethreshold``, without scoring. One file a
            shard, ``<shard>.parquet``; the Python call is
            :func:`~retriever.batch_filter.rethreshold.rethreshold`.
    """

    tasks: tuple[str, ...]
    models: dict[str, str] | None = None
    indexes: str = "indexes"
    threshold: float | dict[str, float] | None = None
    top_fraction: float | None = None
    by: str = "tokens"
    sample_docs: int = 20_000
    format: str = "jsonl.gz"
    reader: ReaderConfig = ReaderConfig()
    tokenizer: str | None = None
    batch_size: int = 512
    max_chars: int = 0
    write_scores: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        for t in self.tasks:
            check_name(t, "task name")  # each task is a folder under the output
        if self.threshold is not None and self.top_fraction is not None:
            raise ConfigError("give either a threshold or a top fraction, not both")
        if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
            raise ConfigError(f"top fraction must be in (0, 1], got {self.top_fraction}")
        thr = self.threshold
        values = thr.values() if isinstance(thr, dict) else [thr] if thr is not None else []
        if any(not 0.0 <= float(v) <= 1.0 for v in values):
            raise ConfigError(f"thresholds are probabilities in [0, 1], got {thr}")
        if isinstance(thr, dict) and set(thr) != set(self.tasks):
            raise ConfigError(
                f"per-task thresholds {sorted(thr)} must cover the tasks {list(self.tasks)}"
            )
        if self.by not in BY:
            raise ConfigError(f"--by must be one of {BY}, got {self.by!r}")
        if self.format not in POOL_FORMATS:
            raise ConfigError(
                f"unknown output format {self.format!r}; use one of {', '.join(POOL_FORMATS)}"
            )
        if self.sample_docs < 1 or self.batch_size < 1 or self.max_chars < 0:
            raise ConfigError("sample_docs and batch_size must be >= 1, max_chars >= 0")

    @property
    def mode(self) -> str:
        return "top-fraction" if self.top_fraction is not None else "threshold"


@dataclass(frozen=True)
class FilterPlan:
    """Everything a worker needs to filter a shard (picklable, no loaded objects): the stage's
    config and what :meth:`~retriever.batch_filter.run.BatchFilter.prepare` settled.

    Args:
        config: the stage's settings (format, reader, batch size, ...).
        output: the run's output folder.
        models: task -> fastText model path.
        thresholds: task -> probability a document needs to be kept (``p >= threshold``).
    """

    config: FilterConfig
    output: str
    models: dict[str, str]
    thresholds: dict[str, float]

    def __post_init__(self) -> None:
        if set(self.thresholds) != set(self.models):
            raise ConfigError(
                f"thresholds {sorted(self.thresholds)} != tasks {sorted(self.models)}"
            )

    @property
    def tasks(self) -> list[str]:
        return list(self.models)
