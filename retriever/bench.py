"""Shared helpers of ``scripts/bench_*.py``: where a benchmark ran, and how it times things.

Every benchmark prints and writes (``--json``) the same block of conditions
(:func:`conditions`): load average before and after, CPU model and flags, CPU count and affinity,
thread settings, library versions. A figure without its conditions cannot be compared with
another machine's: a 2-core box with other jobs on it gives different ratios than an idle one.

Where the data is (:data:`REPO`, :data:`SHARED`, :data:`CLIMBLAB_FILES`), the command line
(:func:`parser`, :func:`add_bench_args`), logging and reading (:func:`log`,
:func:`read_jsonl`).

Timing helpers: :func:`timed` (one call and its seconds), :func:`paired_blocks` (every variant
on the same block of documents, order rotating per block, ratios of summed times with the 25-75%
range of per-block ratios), memory readers (:func:`peak_rss_mb`, :func:`rss_mb`,
:func:`tree_rss_mb`, :func:`run_watched`) and :func:`busy_load` (one spinning process per core,
to measure under a competing load).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]  # the source checkout the scripts run from
# the shared data folder (gold sets, ClimbLab samples); RETRIEVER_SHARED_DATA overrides it
SHARED = Path(os.environ.get("RETRIEVER_SHARED_DATA", REPO.parent / "shared" / "data"))
CLIMBLAB_FILES = ("climblab_stream_first1000.jsonl", "climblab_clusters_sample.jsonl")  # corpus/

# CPU flags that decide which kernels run (bf16 / int8 paths of oneDNN, OpenVINO, torch)
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
LIBRARIES = (
    "numpy",
    "torch",
    "transformers",
    "sentence-transformers",
    "openvino",
    "faiss-cpu",
    "lancedb",
    "fastapi",
    "uvicorn",
    "fasttext-numpy2-wheel",
    "datatrove",
    "pyarrow",
)
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
)


def cpu_info() -> dict[str, Any]:
    """CPU model, the flags in :data:`FLAGS` it has, logical CPUs and this process's affinity."""
    model, flags = platform.processor() or "", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name" and not model:
                model = val.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(val.split())
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    return {
        "model": model,
        "flags": [f for f in FLAGS if f in flags],
        "cpus": os.cpu_count(),
        "affinity": affinity,
    }


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that set the speed (read from metadata, not imported)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def thread_settings() -> dict[str, Any]:
    out: dict[str, Any] = {v: os.environ.get(v) for v in THREAD_VARS}
    if "torch" in sys.modules:  # only when the benchmark already uses it
        out["torch_threads"] = sys.modules["torch"].get_num_threads()
    if "faiss" in sys.modules:
        out["faiss_threads"] = sys.modules["faiss"].omp_get_max_threads()
    return out


def conditions() -> dict[str, Any]:
    """Where and under what load this process runs now (see the module docstring)."""
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "load_avg": load_average(),
        "threads": thread_settings(),
        "versions": library_versions(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's parser: its module docstring as the description, shown as written."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def log(msg: str) -> None:
    """A progress line on stderr (stdout keeps the figures)."""
    print(msg, file=sys.stderr, flush=True)


def read_jsonl(path: str | os.PathLike, n: int | None = None, skip: int = 0) -> list[dict]:
    """The records of a JSON-lines file, after ``skip`` lines, at most ``n`` (None: all).

    Lines are split on ``\n`` only (a text's U+2028 is not a line end); blank lines are passed.
    """
    out: list[dict] = []
    with open(path, encoding="utf-8", newline="\n") as fh:
        for i, line in enumerate(fh):
            if i < skip or not line.strip():
                continue
            if n is not None and len(out) >= n:
                break
            out.append(json.loads(line))
    return out


def add_bench_args(ap: argparse.ArgumentParser, busy: bool = True) -> None:
    """The options every benchmark takes: ``--json PATH`` and (optionally) ``--busy N``."""
    ap.add_argument("--json", metavar="PATH", help="also write the figures and conditions as JSON")
    if busy:
        ap.add_argument(
            "--busy",
            type=int,
            default=0,
            metavar="N",
            help="run under a competing load: N spinning processes (0: none; -1: one per CPU)",
        )


def start(ap: argparse.ArgumentParser, name: str) -> tuple[argparse.Namespace, BenchReport]:
    """Add the common options (:func:`add_bench_args`), parse, and record the conditions at start:
    ``args, report = bench.start(ap, "bench_x")``."""
    add_bench_args(ap)
    args = ap.parse_args()
    return args, BenchReport(name, args)


def offline_defaults() -> None:
    """``HF_HUB_OFFLINE=1`` and ``TOKENIZERS_PARALLELISM=false`` unless set: call it before the
    Hugging Face libraries are imported (a benchmark never downloads)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class BenchReport:
    """Collects a benchmark's figures with its conditions before and after; prints and writes them.

    ``report = BenchReport("bench_serve", args)`` records the conditions at start; put figures in
    ``report.data``; :meth:`finish` records the load average after, prints the conditions block and
    writes ``--json``.
    """

    def __init__(self, name: str, args: argparse.Namespace | None = None):
        self.name = name
        self.args = vars(args) if args is not None else {}
        self.before = conditions()
        self.data: dict[str, Any] = {}
        print(describe(self.before, prefix=f"{name}: start"), file=sys.stderr, flush=True)

    def finish(self, json_path: str | None = None) -> dict[str, Any]:
        after = {
            "load_avg": load_average(),
            "threads": thread_settings(),
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        out = {
            "bench": self.name,
            "args": self.args,
            "conditions": {"before": self.before, "after": after},
            **self.data,
        }
        print(
            f"{self.name}: conditions: load average {self.before['load_avg']} before, "
            f"{after['load_avg']} after; threads {after['threads']}",
            flush=True,
        )
        if json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(json.dumps(out, indent=1, default=str))
            print(f"{self.name}: wrote {json_path}", file=sys.stderr)
        return out


def describe(c: dict[str, Any], prefix: str = "conditions") -> str:
    """One readable line of :func:`conditions`."""
    v = c["versions"]
    libs = ", ".join(
        f"{k} {v[k]}"
        for k in ("torch", "openvino", "sentence-transformers", "faiss-cpu", "lancedb")
        if v.get(k)
    )
    cpu = c["cpu"]
    return (
        f"{prefix}: {cpu['model']} ({cpu['affinity']}/{cpu['cpus']} CPUs, flags "
        f"{' '.join(cpu['flags']) or '-'}), load average {c['load_avg']}, python {v['python']}, "
        f"{libs}"
    )


# -- competing load --------------------------------------------------------------------------------
@contextlib.contextmanager
def busy_load(n: int) -> Iterator[list[int]]:
    """``n`` processes spinning on the CPU for the duration of the block (``-1``: one per CPU).

    They are started and ended by this process (by pid), so a benchmark measures "the machine is
    busy" without depending on what else runs.
    """
    if n < 0:
        n = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        if procs:
            time.sleep(0.5)  # let them get going
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


# -- memory ----------------------------------------------------------------------------------------
def _status_kb(pid: int | str, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return 0.0


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB): ``VmHWM`` (``ru_maxrss`` would count a forked
    parent's pages)."""
    try:
        return _status_kb("self", "VmHWM") / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` now (MB); 0 when it is gone."""
    try:
        return _status_kb(pid, "VmRSS") / 1024
    except OSError:
        return 0.0


def tree_rss_mb(root: int) -> tuple[float, float]:
    """(sum, largest) memory of process ``root`` and all its descendants, in MiB.

    The sum is of PSS (proportional set size: a page shared by k processes counts 1/k in each),
    so forked workers sharing one model are not counted k times; the largest is plain RSS.
    """
    parent, rss, pss = {}, {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        pid = int(d)
        parent[pid] = int(fields.get("PPid", "0"))
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
    tree, grew = {root}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in tree} - tree
        grew = bool(new)
        tree |= new
    for pid in tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        pss[pid] = int(line.split()[1]) / 1024
                        break
        except OSError:
            pss[pid] = rss.get(pid, 0.0)
    return sum(pss.get(p, 0.0) for p in tree), max((rss.get(p, 0.0) for p in tree), default=0.0)


def run_watched(cmd: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``cmd``, sampling its process tree's memory every 50 ms: (result, peak sum, peak one)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_sum = peak_one = 0.0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak_sum, peak_one
        while not stop.wait(0.05):
            total, one = tree_rss_mb(proc.pid)
            peak_sum, peak_one = max(peak_sum, total), max(peak_one, one)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    out, err = proc.communicate()
    stop.set()
    th.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), peak_sum, peak_one


# -- timing ----------------------------------------------------------------------------------------
def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), seconds it took)`` (wall clock, ``time.perf_counter``)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def paired_blocks(
    calls: dict[str, Callable[[list[str]], Any]],
    texts: list[str],
    block: int,
    passes: int,
    base: str,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Time every call on each block of ``block`` documents, one after the other in an order that
    rotates per block, ``passes`` times over ``texts``.

    Calls on the same block run seconds apart, so they see the same machine load: the ratio of
    summed times stays meaningful while other jobs come and go. Per call: ``seconds``,
    ``docs_per_s``, ``ratio`` = baseline time / call time (> 1: faster than the baseline),
    ``block_ratio_iqr`` (the 25-75% range of per-block ratios: the noise), and ``out`` (the outputs
    of the first pass concatenated, for a cosine check; None unless arrays).
    """
    names = list(calls)
    secs = {n: 0.0 for n in names}
    block_ratios: dict[str, list[float]] = {n: [] for n in names}
    outs: dict[str, list] = {n: [] for n in names}
    k = 0
    for p in range(passes):
        for i in range(0, len(texts), block):
            chunk, t = texts[i : i + block], {}
            for n in names[k % len(names) :] + names[: k % len(names)]:
                t0 = time.perf_counter()
                out = calls[n](chunk)
                t[n] = time.perf_counter() - t0
                secs[n] += t[n]
                if p == 0:
                    outs[n].append(out)
            k += 1
            for n in names:
                block_ratios[n].append(t[base] / max(t[n], 1e-12))
        if log:
            log(
                f"  pass {p + 1}/{passes}: "
                + ", ".join(f"{n.split(':')[0]} {secs[n]:.1f}s" for n in names)
            )
    res = {}
    for n in names:
        q1, q3 = np.percentile(block_ratios[n], [25, 75])
        out = np.concatenate(outs[n]) if outs[n] and isinstance(outs[n][0], np.ndarray) else None
        res[n] = {
            "seconds": secs[n],
            "docs_per_s": passes * len(texts) / secs[n],
            "ratio": secs[base] / secs[n],
            "block_ratio_iqr": [float(q1), float(q3)],
            "out": out,
        }
    return res


def percentiles(xs: list[float], qs=(50, 90, 99)) -> dict[str, float]:
    """``{"p50": ..., "p90": ..., "p99": ..., "max": ...}`` of ``xs`` (same unit)."""
    if not xs:
        return {f"p{q}": float("nan") for q in qs} | {"max": float("nan")}
    a = np.asarray(xs, dtype=np.float64)
    return {f"p{q}": float(np.percentile(a, q)) for q in qs} | {"max": float(a.max())}
