"""executors.run_sharded: datatrove local / Slurm (constructed, not submitted) / Ray (tiny local
run)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from pathlib import Path

import pytest

from retriever.corpus import get_shard, shard_name
from retriever.errors import ConfigError
from retriever.executors import (
    ShardFailedError,
    build_executor,
    read_done,
    run_sharded,
    slurm_script,
)
from retriever.stats import Stats


class CountLines:
    """Per-shard function: counts lines; logs each call to a file (calls cross process borders);
    raises on a shard whose text says ``FAIL`` (a shard that cannot be read)."""

    def __init__(self, calls: str):
        self.calls = calls

    def __call__(self, shard: str, rank: int) -> Stats:
        with open(
            Path(self.calls) / f"{shard_name(shard)}.{os.getpid()}.{rank}.{time.time_ns()}", "w"
        ):
            pass
        text = Path(shard).read_text()
        if "FAIL" in text:
            raise ValueError(f"cannot read {shard}")
        st = Stats()
        st.inc("seen", len(text.splitlines()))
        st.inc("kept", len(text.splitlines()))
        return st


def make_shards(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"s{i:02d}.jsonl"
        p.write_text("".join(f'{{"text": "doc {j}"}}\n' for j in range(i + 1)))
        out.append(str(p))
    return out


def calls_of(calls: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in calls.iterdir():
        name, _pid, rank, _t = f.name.rsplit(".", 3)
        out.setdefault(name, []).append(rank)
    return out


def test_local_single_worker_runs_each_shard_once_and_skips_on_rerun(tmp_path):
    shards = make_shards(tmp_path / "in", 7)
    calls = tmp_path / "calls"
    calls.mkdir()
    res = run_sharded(
        CountLines(str(calls)), shards, workers=1, tasks=3, logging_dir=tmp_path / "logs"
    )
    assert res.complete and res.stats.counts["seen"] == sum(range(1, 8))
    assert {s: st.counts["seen"] for s, st in res.per_shard.items()} == {
        s: i + 1 for i, s in enumerate(shards)
    }
    # the sharding contract: rank r of 3 took shards r, r+3, ...
    ranks = calls_of(calls)
    for r in range(3):
        for s in get_shard(shards, r, 3):
            assert ranks[shard_name(s)] == [str(r)]
    assert read_done(tmp_path / "logs" / "done", shards[2]).counts["seen"] == 3
    res2 = run_sharded(CountLines(str(calls)), shards, workers=1, logging_dir=tmp_path / "logs")
    assert res2.skipped == shards and sum(len(v) for v in calls_of(calls).values()) == 7
    assert res2.stats.counts == res.stats.counts


def test_failing_shard_is_recorded_others_finish_rerun_retries_it(tmp_path):
    shards = make_shards(tmp_path / "in", 5)
    Path(shards[3]).write_text("FAIL\n")
    calls = tmp_path / "calls"
    calls.mkdir()
    res = run_sharded(CountLines(str(calls)), shards, workers=1, logging_dir=tmp_path / "logs")
    assert list(res.failed) == [shards[3]] and "ValueError: cannot read" in res.failed[shards[3]]
    assert len(res.per_shard) == 4 and not res.complete
    with pytest.raises(ShardFailedError, match="1 of 5 shards did not finish"):
        res.raise_for_failures()
    Path(shards[3]).write_text("fixed\n")
    res2 = run_sharded(CountLines(str(calls)), shards, workers=1, logging_dir=tmp_path / "logs")
    assert res2.complete and len(res2.skipped) == 4
    assert not (tmp_path / "logs" / "failed" / f"{shard_name(shards[3])}.json").exists()
    assert len(calls_of(calls)[shard_name(shards[3])]) == 2  # retried, the others ran once
    assert all(len(v) == 1 for k, v in calls_of(calls).items() if k != shard_name(shards[3]))


def test_local_multiprocess_all_cores(tmp_path):
    shards = make_shards(tmp_path / "in", 6)
    calls = tmp_path / "calls"
    calls.mkdir()
    res = run_sharded(CountLines(str(calls)), shards, workers=2, logging_dir=tmp_path / "logs")
    assert res.complete and res.stats.counts["seen"] == 21
    assert res.executor.workers == 2 and res.executor.world_size == 6
    pids = {f.name.rsplit(".", 3)[1] for f in calls.iterdir()}
    assert str(os.getpid()) not in pids  # ran in worker processes


def test_bad_arguments_are_typed_errors(tmp_path):
    shards = make_shards(tmp_path / "in", 2)
    with pytest.raises(ConfigError, match="unknown executor"):
        build_executor([], "kubernetes")
    with pytest.raises(ConfigError, match="unknown local executor setting"):
        build_executor([], "local", tasks=2, logging_dir=tmp_path, partition="x")
    with pytest.raises(ConfigError, match="needs"):
        build_executor([], "slurm", tasks=2, logging_dir=tmp_path)
    if shutil.which("sbatch") is None:
        with pytest.raises(ConfigError, match="sbatch"):
            run_sharded(
                CountLines(str(tmp_path)),
                shards,
                executor="slurm",
                logging_dir=tmp_path / "s",
                partition="p",
                time="1:00:00",
            )
    with pytest.raises(ConfigError, match="no shard"):
        run_sharded(CountLines(str(tmp_path)), [], logging_dir=tmp_path)
    (tmp_path / "other" / "in").mkdir(parents=True)
    twin = tmp_path / "other" / "in" / "s00.jsonl"
    twin.write_text("x\n")
    with pytest.raises(ConfigError, match="share the output name"):
        run_sharded(CountLines(str(tmp_path)), [*shards, str(twin)], logging_dir=tmp_path / "l")


def test_slurm_executor_is_built_with_settings_and_script(tmp_path):
    ex = build_executor(
        [lambda data, rank, ws: None],
        "slurm",
        tasks=250,
        logging_dir=tmp_path / "logs",
        partition="cpu",
        time="04:00:00",
        cpus_per_task=2,
        mem_per_cpu_gb=3,
        venv_path="/opt/venv/bin/activate",
        sbatch_args={"account": "proj"},
        max_array_size=100,
    )
    assert (ex.partition, ex.time, ex.cpus_per_task, ex.mem_per_cpu_gb) == ("cpu", "04:00:00", 2, 3)
    assert ex.world_size == 250 and ex.workers == -1 and ex.skip_completed is False
    script = slurm_script(ex)
    for want in (
        "#SBATCH --partition=cpu",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem-per-cpu=3G",
        "#SBATCH --array=0-99",  # 250 tasks in arrays of at most 100
        "#SBATCH --account=proj",
        "source /opt/venv/bin/activate",
        "launch_pickled_pipeline",
    ):
        assert want in script, want


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed")
def test_tiny_local_ray_run(tmp_path):
    import ray

    shards = make_shards(tmp_path / "in", 3)
    calls = tmp_path / "calls"
    calls.mkdir()
    # Ray workers import CountLines from this file: put tests/ on their path
    here = str(Path(__file__).parent)
    path = os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        res = run_sharded(
            CountLines(str(calls)),
            shards,
            executor="ray",
            workers=2,
            logging_dir=tmp_path / "logs",
            cpus_per_task=1,
            mem_per_cpu_gb=0.25,
        )
    finally:
        ray.shutdown()
    assert res.complete and res.stats.counts["seen"] == 6
    assert sum(len(v) for v in calls_of(calls).values()) == 3
