"""Cases 3, 9, 10: the output-folder lock, one safe-name pattern, atomic writes through symlinks
and onto special files."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from faults_helpers import env

from retriever.errors import LockedError, UnsafeNameError
from retriever.io import AtomicWriter, write_json_atomic
from retriever.lock import OutputLock, is_locked
from retriever.names import check_name

pytestmark = pytest.mark.faults

HOLD = """
import sys, time
from retriever.lock import OutputLock
with OutputLock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_lock_is_reentrant_in_one_process_and_released(tmp_path):
    with OutputLock(tmp_path), OutputLock(tmp_path):
        assert is_locked(tmp_path)
    assert not is_locked(tmp_path)


def test_second_process_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError) as e:
            OutputLock(tmp_path).acquire()
        msg = str(e.value)
        assert f"pid {holder.pid}" in msg and "\n" not in msg
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    with OutputLock(tmp_path):  # released when the holder exits
        pass


def test_lock_of_a_killed_holder_is_released(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(timeout=30)
    with OutputLock(tmp_path):
        assert is_locked(tmp_path)


@pytest.mark.parametrize("name", ["../x", "..", "a/b", ".hidden", "", "a b", "x\n", "c:\\d", "é"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(UnsafeNameError):
        check_name(name)


@pytest.mark.parametrize(
    "name", ["function-calling", "rag", "task_2", "v1.5", "cluster_3__part_001"]
)
def test_safe_names_pass(name):
    assert check_name(name) == name


def test_filter_config_refuses_a_task_that_escapes_the_output(tmp_path):
    from retriever.batch_filter import FilterConfig

    with pytest.raises(UnsafeNameError):
        FilterConfig(tasks=("../../x",))


def test_task_spec_refuses_an_unsafe_name():
    from retriever.config import GoldSource, TaskSpec

    with pytest.raises(UnsafeNameError):
        TaskSpec(task="../escape", sources=(GoldSource(path="x.jsonl"),))


def test_atomic_write_goes_through_a_symlink(tmp_path):
    target = tmp_path / "real" / "report.json"
    target.parent.mkdir()
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_json_atomic(link, {"a": 1})
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert '"a": 1' in target.read_text()


def test_atomic_write_to_a_fifo_writes_it_directly(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))  # noqa: SIM115
    reader.start()
    with AtomicWriter(fifo) as tmp:
        assert tmp == fifo
        with open(tmp, "wb") as fh:
            fh.write(b"through the pipe")
    reader.join(timeout=10)
    assert got == [b"through the pipe"]
    assert fifo.is_fifo()  # still the FIFO, not a regular file put in its place


def test_report_to_dev_stdout_does_not_replace_the_node(tmp_path):
    """`-o /dev/stdout`: the JSON reaches the pipe, /dev/stdout stays a device or link."""
    code = "from retriever.io import write_json_atomic; write_json_atomic('/dev/stdout', {'ok': 1})"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert '"ok": 1' in out.stdout
    assert not os.path.isfile("/dev/stdout") or os.path.islink("/dev/stdout")


@pytest.mark.slow  # a `retriever run` process: imports the whole pipeline
def test_retriever_run_on_a_folder_in_use_is_refused(tmp_path):
    from faults_helpers import assert_one_line_error, cli

    (tmp_path / "gold.jsonl").write_text('{"text": "Question: 1 + 1?\\nAnswer: 2"}\n')
    (tmp_path / "corpus.jsonl").write_text('{"text": "The bakery opens at 7."}\n')
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'[run]\nout = "{tmp_path / "out"}"\n[tasks.math]\ngold = ["gold.jsonl"]\n'
        '[corpus]\npaths = ["corpus.jsonl"]\n'
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "out")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = cli("run", str(cfg), "--no-cost-plan", timeout=300)
        assert_one_line_error(proc, "in use by another run", f"pid {holder.pid}")
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
