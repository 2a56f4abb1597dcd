"""Run a per-shard function over a shard list with one of datatrove's executors.

This module is the one place that knows datatrove executors. A stage hands it a picklable
``fn(shard_path, rank) -> Stats`` and a shard list; the same call then runs

* ``executor="local"``: datatrove ``LocalPipelineExecutor`` (default; workers = cores),
* ``executor="slurm"``: datatrove ``SlurmPipelineExecutor`` (submits an sbatch array and returns),
* ``executor="ray"``: datatrove ``RayPipelineExecutor`` (on the Ray cluster ``ray.init`` finds).

Sharding contract: datatrove task ``r`` of ``W`` takes ``get_shard(shards, r, W)`` (shards
r, r+W, ...). Each finished shard gets a marker ``done_dir/<shard_name>.json`` holding its
:class:`~retriever.stats.Stats`; a shard with a marker is skipped on rerun, so a killed or failed
run resumes where it stopped whatever the number of tasks. ``fn`` must write its outputs
atomically (``AtomicWriter``): the marker is written only after ``fn`` returns, so a shard killed
half-way is simply redone. A shard whose ``fn`` raises is recorded in
``logging_dir/failed/<shard_name>.json`` and the task goes on with its other shards; the
returned :class:`ShardedRun` lists it (:meth:`ShardedRun.raise_for_failures`).

Example:
    >>> result = run_sharded(FilterShard(...), shards, executor="local", workers=8,
    ...                      logging_dir="out/logs", done_dir="out/done")
    >>> result.raise_for_failures()
    >>> result.stats.counts["seen"]
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retriever._deps import require
from retriever.corpus import get_shard, shard_name, write_json_atomic
from retriever.errors import ConfigError, RetrieverError
from retriever.io import read_json
from retriever.manifest import DoneMarkers, shard_fingerprint
from retriever.stats import Stats

log = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm", "ray")
ShardFn = Callable[[str, int], Stats]
# executor arguments run_sharded sets itself; the rest of each __init__ is accepted as a setting
_OWN_ARGS = {"self", "pipeline", "tasks", "workers", "logging_dir", "skip_completed", "depends"}


class ShardFailedError(RetrieverError):
    """One or more shards raised; the others finished. Rerun the same command to retry them."""


def cpu_count() -> int:
    """Cores this process may use (the scheduler affinity, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def done_path(done_dir: str | os.PathLike, shard: str) -> Path:
    return DoneMarkers(done_dir).path(shard)


def read_done(done_dir: str | os.PathLike, shard: str) -> Stats | None:
    """The stats a finished shard recorded, or ``None`` when it has not finished (or its marker
    was made from another file: a replaced shard is redone, see :class:`DoneMarkers`)."""
    doc = DoneMarkers(done_dir).read(shard)
    if doc is None or not isinstance(doc.get("stats"), dict):
        return None
    return Stats.from_dict(doc["stats"])


@dataclass
class ShardRunner:
    """The datatrove pipeline step: runs ``fn`` over the shards of one rank.

    A plain callable ``(data, rank, world_size)``, which datatrove accepts as a pipeline step; it
    is pickled to the workers (dill for local and Slurm, Ray's pickler for Ray) together with
    ``fn``.
    """

    fn: ShardFn
    shards: list[str]
    done_dir: str
    failed_dir: str

    def __setstate__(self, state: dict) -> None:
        # unpickled in each worker before datatrove sets up its task logger: route its logs there
        # too (a forkserver / spawn worker does not inherit the parent's logging set-up)
        self.__dict__.update(state)
        from retriever.logs import worker_logging

        worker_logging()

    def __call__(self, data: Any = None, rank: int = 0, world_size: int = 1) -> None:
        done = DoneMarkers(self.done_dir)
        for shard in get_shard(self.shards, rank, world_size):
            failed = Path(self.failed_dir) / f"{shard_name(shard)}.json"
            if read_done(self.done_dir, shard) is not None:
                failed.unlink(missing_ok=True)  # an earlier failure no longer stands
                continue
            done.clear(shard)  # a marker of a replaced shard
            fingerprint = shard_fingerprint(shard)
            t0 = time.perf_counter()
            try:
                stats = self.fn(shard, rank)
            except Exception as e:  # noqa: BLE001 - one bad shard must not stop the others
                log.error("shard %s failed: %s: %s", shard, type(e).__name__, e)
                try:
                    write_json_atomic(
                        failed,
                        {
                            "shard": shard,
                            "rank": rank,
                            "error": f"{type(e).__name__}: {e}",
                            "traceback": traceback.format_exc(),
                        },
                    )
                except OSError as e2:  # full disk: the shard is reported missing instead
                    log.error("cannot record the failure of %s: %s", shard, e2)
                continue
            if not stats.seconds:
                stats.seconds = time.perf_counter() - t0
            done.write(
                shard,
                {"shard": shard, "rank": rank, "world_size": world_size, "stats": stats.to_dict()},
                fingerprint,
            )
            failed.unlink(missing_ok=True)

    def __repr__(self) -> str:  # datatrove logs the pipeline
        return (
            f"ShardRunner({getattr(self.fn, '__name__', type(self.fn).__name__)}, "
            f"{len(self.shards)} shards)"
        )


@dataclass
class ShardedRun:
    """Outcome of :func:`run_sharded`.

    Attributes:
        stats: merged stats of every finished shard (this run's and earlier runs').
        per_shard: shard path -> its stats, for the finished shards.
        skipped: shards already finished before this run (not redone).
        failed: shard path -> error message, for shards that raised.
        missing: shards neither finished nor failed (a Slurm job still running, a killed task).
        seconds: wall time of this call.
        submitted: True when the work was handed to a scheduler (Slurm) and runs later.
        executor: the datatrove executor object used.
    """

    stats: Stats
    per_shard: dict[str, Stats]
    skipped: list[str]
    failed: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    submitted: bool = False
    executor: Any = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        return not self.failed and not self.missing and not self.submitted

    def raise_for_failures(self) -> None:
        """Raise :class:`ShardFailedError` naming the failed shards, if any."""
        if self.failed or (self.missing and not self.submitted):
            lines = [f"  {s}: {m}" for s, m in list(self.failed.items())[:10]]
            lines += [f"  {s}: did not finish" for s in self.missing[:10]]
            raise ShardFailedError(
                f"{len(self.failed) + len(self.missing)} of "
                f"{len(self.per_shard) + len(self.failed) + len(self.missing)} shards did not "
                "finish (the others are done and kept):\n"
                + "\n".join(lines)
                + "\nFix the cause and rerun "
                "the same command: finished shards are skipped."
            )


def build_executor(
    pipeline: list,
    executor: str = "local",
    tasks: int = 1,
    workers: int | None = None,
    logging_dir: str | os.PathLike = "logs",
    **settings: Any,
):
    """The datatrove executor object for ``pipeline`` (not started).

    Args:
        pipeline: datatrove pipeline (steps or callables ``(data, rank, world_size)``).
        executor: ``"local"``, ``"slurm"`` or ``"ray"``.
        tasks: number of datatrove tasks (ranks).
        workers: tasks run at once; ``None`` = cores for local, no limit for Slurm / Ray.
        logging_dir: datatrove's logging folder (logs, stats, Slurm scripts).
        settings: the executor's own arguments, e.g. ``partition``, ``time``, ``cpus_per_task``,
            ``mem_per_cpu_gb``, ``venv_path``, ``sbatch_args`` for Slurm; ``cpus_per_task``,
            ``mem_per_cpu_gb`` for Ray; ``start_method`` for local. Unknown names are an error.

    Raises:
        ConfigError: unknown executor, bad counts, unknown or missing settings.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    if tasks < 1:
        raise ConfigError(f"tasks must be >= 1, got {tasks}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    module = require(f"datatrove.executor.{executor}")
    from retriever.logs import route_datatrove_logs

    route_datatrove_logs()  # task logs to our log file, not raw colour codes on the terminal
    cls = {
        "local": "LocalPipelineExecutor",
        "slurm": "SlurmPipelineExecutor",
        "ray": "RayPipelineExecutor",
    }[executor]
    cls = getattr(module, cls)
    params = inspect.signature(cls.__init__).parameters
    accepted = sorted(set(params) - _OWN_ARGS)
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise ConfigError(
            f"unknown {executor} executor setting(s) {unknown}; accepted: {', '.join(accepted)}"
        )
    required = [
        n
        for n, p in params.items()
        if n not in _OWN_ARGS and p.default is inspect.Parameter.empty and n not in settings
    ]
    if required:
        raise ConfigError(
            f"the {executor} executor needs {required} (e.g. --slurm-partition, --slurm-time)"
        )
    if workers is None:
        workers = min(tasks, cpu_count()) if executor == "local" else -1
    return cls(
        pipeline,
        tasks=tasks,
        workers=workers,
        logging_dir=str(logging_dir),
        # resume is per shard (done markers), not per datatrove rank: a rank that skipped a failed
        # shard must run again, and the number of tasks may change between runs
        skip_completed=False,
        **settings,
    )


def run_sharded(
    fn: ShardFn,
    shards: Iterable[str],
    executor: str = "local",
    tasks: int | None = None,
    workers: int | None = None,
    logging_dir: str | os.PathLike = "logs",
    done_dir: str | os.PathLike | None = None,
    progress: bool = False,
    **settings: Any,
) -> ShardedRun:
    """Run ``fn(shard, rank)`` on every shard not finished yet, with a datatrove executor.

    Args:
        fn: picklable callable ``(shard_path, rank) -> Stats``; writes its outputs atomically.
        shards: shard paths; their order defines the rank -> shard assignment.
        executor: ``"local"`` (default), ``"slurm"`` or ``"ray"``.
        tasks: datatrove tasks; default one per shard (at most 10,000).
        workers: tasks at once; default the cores of this machine for local.
        logging_dir: datatrove logs, stats, failure records, Slurm scripts.
        done_dir: finished-shard markers (default ``logging_dir/done``).
        progress: show a tqdm bar of finished shards (local and Ray).
        settings: executor arguments (see :func:`build_executor`). For Ray, ``ray_address`` is
            passed to ``ray.init`` (default: start or join a local cluster).

    Returns:
        :class:`ShardedRun`; for Slurm, ``submitted=True`` and the shards are ``missing`` until the
        job array finishes (rerun to collect, or read the done markers).
    """
    t0 = time.perf_counter()
    shards = list(shards)
    if not shards:
        raise ConfigError("no shard to run on")
    logging_dir = Path(logging_dir)
    done_dir = Path(done_dir) if done_dir is not None else logging_dir / "done"
    failed_dir = logging_dir / "failed"
    done_dir.mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}
    for s in shards:
        other = names.setdefault(shard_name(s), s)
        if other != s:
            raise ConfigError(
                f"shards {other} and {s} share the output name {shard_name(s)!r}; rename one "
                "(outputs and done markers are named by parent folder and file stem)"
            )
    finished = {s for s in shards if read_done(done_dir, s) is not None}
    skipped = [s for s in shards if s in finished]
    todo = [s for s in shards if s not in finished]
    for s in todo:  # a marker of a replaced shard must not count while the shard is redone
        DoneMarkers(done_dir).clear(s)
    for s in skipped:  # finished: a failure recorded by an earlier (or concurrent) run is void
        (failed_dir / f"{shard_name(s)}.json").unlink(missing_ok=True)
    ray_address = settings.pop("ray_address", None)
    if tasks is None:
        tasks = min(len(shards), 10_000)
    # the full list, so rank r always owns the same shards; finished ones are skipped inside
    runner = ShardRunner(fn, shards, str(done_dir), str(failed_dir))
    ex = build_executor([runner], executor, tasks, workers, logging_dir, **settings)
    submitted = False
    if todo:
        if executor == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError(
                "--executor slurm submits with `sbatch`, which is not on this machine's PATH: run "
                "from a Slurm login node (or print the job script with --dry-run)"
            )
        if executor == "ray":
            ray = require("ray")
            if not ray.is_initialized():
                ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
        stop = threading.Event()
        bar = None
        if progress and executor != "slurm":
            bar = threading.Thread(
                target=_progress, args=(done_dir, todo, stop), daemon=True, name="shard-progress"
            )
            bar.start()
        try:
            ex.run()
        finally:
            stop.set()
            if bar is not None:
                bar.join()
        submitted = executor == "slurm"
    per_shard: dict[str, Stats] = {}
    failed: dict[str, str] = {}
    missing: list[str] = []
    total = Stats()
    for s in shards:
        st = read_done(done_dir, s)
        if st is not None:
            per_shard[s] = st
            total += st
            continue
        f = failed_dir / f"{shard_name(s)}.json"
        if f.is_file():
            failed[s] = read_json(f).get("error", "failed")
        else:
            missing.append(s)
    return ShardedRun(
        stats=total,
        per_shard=per_shard,
        skipped=skipped,
        failed=failed,
        missing=missing,
        seconds=time.perf_counter() - t0,
        submitted=submitted,
        executor=ex,
    )


def slurm_script(executor_obj) -> str:
    """The sbatch script a ``SlurmPipelineExecutor`` would submit (nothing is submitted).

    Useful to check a cluster configuration before launching (``retriever filter --executor slurm
    --dry-run``).
    """
    n = len(executor_obj.get_incomplete_ranks())
    max_array = min(n, executor_obj.max_array_size) if executor_obj.max_array_size != -1 else n
    run = f"launch_pickled_pipeline {executor_obj.logging_dir.resolve_paths('executor.pik')}"
    if executor_obj.with_srun:
        run = f"srun -l -n {executor_obj.nodes_per_task} {run}"
    return executor_obj.get_launch_file_contents(
        executor_obj.get_sbatch_args(max(1, max_array)), run
    )


def _progress(done_dir: Path, todo: list[str], stop: threading.Event) -> None:
    from retriever.progress import progress_bar

    names = {f"{shard_name(s)}.json" for s in todo}
    with progress_bar(total=len(todo), unit="shard", desc="shards", progress=True) as bar:
        while True:
            n = sum(1 for p in done_dir.iterdir() if p.name in names) if done_dir.is_dir() else 0
            bar.update(n - bar.n)
            if stop.wait(0.5):
                n = sum(1 for p in done_dir.iterdir() if p.name in names)
                bar.update(n - bar.n)
                return
