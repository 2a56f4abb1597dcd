"""Case 3 with real processes: two `retriever filter` runs on one output folder. The second is
refused with one line naming the first; the first's outputs are whole; a later rerun finds every
shard done, with no failure marker left. Also case 11: a full disk during filter is one line."""

from __future__ import annotations

import gzip
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults_helpers import assert_one_line_error, cli, env
from test_distill import synthetic_doc, synthetic_label_rows

from retriever.lock import is_locked

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    from retriever.distill import DistillConfig, FastTextDistiller, write_labels

    root = tmp_path_factory.mktemp("model")
    write_labels(root / "labels.parquet", synthetic_label_rows("fc", 40, 40, 0, seed=0))
    path = root / "fc" / "filter.bin"
    FastTextDistiller(
        DistillConfig(bucket=20_000, dim=8, epoch=5, lr=0.5, training_set="gold+confirmed")
    ).run(root / "labels.parquet", "fc", path)
    return str(path)


def _corpus(folder: Path, shards: int, docs: int) -> int:
    rng = random.Random(0)
    folder.mkdir(parents=True)
    for s in range(shards):
        lines = [
            json.dumps({"id": f"s{s}-{i}", "text": synthetic_doc(rng, i % 3 == 0)})
            for i in range(docs)
        ]
        (folder / f"part{s:03d}.jsonl").write_text("\n".join(lines) + "\n")
    return shards * docs


def _filter_args(corpus: Path, out: Path, model: str) -> list[str]:
    return [
        "filter",
        "--task",
        "fc",
        "--model",
        f"fc={model}",
        "--input",
        str(corpus),
        "--output",
        str(out),
        "--threshold",
        "0.5",
        "--workers",
        "1",
        "-q",
    ]


def _pool_ids(folder: Path) -> list[str]:
    ids = []
    for f in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(f, "rt") as fh:
            ids += [json.loads(line)["id"] for line in fh]
    return ids


def test_second_run_on_one_folder_is_refused_naming_the_first(tmp_path, model):
    n = _corpus(tmp_path / "corpus", shards=40, docs=300)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "retriever.cli", *_filter_args(tmp_path / "corpus", out, model)]
    first = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()
    )
    try:
        deadline = time.time() + 120
        while not is_locked(out):
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.time() < deadline, "the first run never took the lock"
            time.sleep(0.05)
        second = subprocess.run(args, capture_output=True, text=True, env=env(), timeout=300)
        still_running = first.poll() is None
    finally:
        _, err1 = first.communicate(timeout=600)
    if not still_running:
        pytest.skip("the first run finished before the second tried the lock (machine too fast)")
    line = assert_one_line_error(second, "in use by another run", f"pid {first.pid}")
    assert "Traceback" not in line
    assert first.returncode == 0, err1[-3000:]
    man = json.loads((out / "manifest.json").read_text())
    assert man["totals"]["docs_in"] == n and man["totals"]["balanced"]
    ids = _pool_ids(out / "fc")
    assert len(ids) == len(set(ids)) == man["totals"]["kept"]["fc"]
    assert not list(out.rglob("*.tmp"))
    # the refused run wrote nothing; rerunning it now finds every shard done, nothing failed
    again = cli(*_filter_args(tmp_path / "corpus", out, model))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        not list((out / "logs" / "failed").glob("*.json"))
        if (out / "logs" / "failed").is_dir()
        else True
    )
    assert _pool_ids(out / "fc") == ids


def test_full_disk_during_filter_is_one_line(tmp_path, model):
    """RLIMIT_FSIZE makes any write past 16 KiB fail (EFBIG), as a full disk would (ENOSPC)."""
    _corpus(tmp_path / "corpus", shards=2, docs=2000)
    out = tmp_path / "out"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 10, 16 << 10))

    proc = subprocess.run(
        [sys.executable, "-m", "retriever.cli", *_filter_args(tmp_path / "corpus", out, model)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
        preexec_fn=limit,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    err_lines = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(err_lines) == 1, proc.stderr[-3000:]
    # nothing half-written under a final name: a rerun with room finishes the job
    rerun = cli(*_filter_args(tmp_path / "corpus", out, model))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    man = json.loads((out / "manifest.json").read_text())
    assert man["totals"]["docs_in"] == 4000 and man["totals"]["balanced"]
