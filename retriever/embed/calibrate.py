"""Choosing the CPU embedding backend by measurement, once per machine setup.

Which of torch and OpenVINO is faster depends on the CPU (AVX2, AVX-512, bf16 instructions, AMX),
the thread count and the library versions: on one avx512_bf16 machine OpenVINO in bf16 was 0.77x
plain torch when idle while OpenVINO in fp32 was 1.42x. So ``backend="auto"`` does not guess: on
the first use of a (model weights, CPU model and flags, thread count, library versions) it times
each candidate (torch fp32; OpenVINO fp32; OpenVINO bf16 where the CPU has bf16 instructions) on
the same batches, interleaved so a load change hits all of them alike, keeps the fastest, logs the
choice and caches it as JSON under ``$RETRIEVER_CACHE/backend/<key>.json``. Later processes read
the file (no measurement). ``RETRIEVER_EMBED_BACKEND=torch|openvino`` (or ``openvino-f32`` /
``openvino-bf16``) skips the measurement; deleting the file measures again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from retriever.io import write_json_atomic

log = logging.getLogger(__name__)

CALIBRATION_FORMAT = 1
CHOICES = ("torch", "openvino-f32", "openvino-bf16")
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

# calibration batch: a few long documents (cut at the model's max length, like a corpus) and short
# queries (like the query service), built from a fixed vocabulary so every run times the same work
_WORDS = (
    "the model reads each document and the index returns its nearest gold exemplars while "
    "a call to get_weather city Paris returns JSON with fields answer question context tool "
    "character says hello step one two three compute total price of apples and oranges"
).split()


def calibration_texts(n_long: int = 16, n_short: int = 8) -> list[str]:
    rng = np.random.default_rng(0)
    longs = [" ".join(rng.choice(_WORDS, size=int(rng.integers(180, 320)))) for _ in range(n_long)]
    shorts = [" ".join(rng.choice(_WORDS, size=int(rng.integers(6, 30)))) for _ in range(n_short)]
    return longs + shorts


def cpu_signature() -> dict[str, Any]:
    from retriever.bench import FLAGS, cpu_info

    info = cpu_info()
    return {
        "model": info["model"],
        "flags": [f for f in info["flags"] if f in FLAGS],
        "cpus": info["cpus"],
        "affinity": info["affinity"],
    }


def has_bf16(sig: dict[str, Any] | None = None) -> bool:
    flags = (sig or cpu_signature())["flags"]
    return any(f in flags for f in _BF16_FLAGS)


def calibration_key(weights_key: str, threads: int) -> tuple[str, dict[str, Any]]:
    """``(key, what it hashes)``: model weights, CPU, threads and the libraries that run the
    model."""
    from retriever.bench import library_versions

    v = library_versions()
    what = {
        "weights": weights_key,
        "cpu": cpu_signature(),
        "threads": int(threads),
        "versions": {
            k: v.get(k) for k in ("torch", "openvino", "transformers", "sentence-transformers")
        },
        "format": CALIBRATION_FORMAT,
    }
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20], what


def calibration_path(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    from retriever.embed.openvino_encoder import cache_root

    return Path(cache_dir or cache_root() / "backend") / f"{key}.json"


def read_choice(path: Path) -> dict[str, Any] | None:
    """The cached calibration at ``path``; None when absent or unreadable (then it is measured
    again)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") == CALIBRATION_FORMAT and data.get("choice") in CHOICES:
            return data
    except (OSError, ValueError, AttributeError):
        pass
    log.warning("ignoring an unreadable backend calibration %s; measuring again", path)
    return None


def measure(
    calls: dict[str, Callable[[list[str]], Any]],
    texts: list[str],
    rounds: int = 3,
    batch_size: int = 32,
) -> dict[str, float]:
    """Median seconds per pass over ``texts`` of each call, calls interleaved (rotating order)."""
    names = list(calls)
    times: dict[str, list[float]] = {n: [] for n in names}
    for fn in calls.values():  # warm-up: first shapes, lazy initialisation
        fn(texts[:batch_size])
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            for i in range(0, len(texts), batch_size):
                calls[n](texts[i : i + batch_size])
            times[n].append(time.perf_counter() - t0)
    return {n: float(np.median(t)) for n, t in times.items()}


def choose(
    calls: dict[str, Callable[[list[str]], Any]], path: Path, what: dict[str, Any], rounds: int = 3
) -> dict[str, Any]:
    """Measure ``calls`` (named as in :data:`CHOICES`), write and return the calibration."""
    from retriever.bench import load_average

    load = load_average()
    t0 = time.perf_counter()
    secs = measure(calls, calibration_texts(), rounds)
    choice = min(secs, key=lambda n: secs[n])
    data = {
        "format": CALIBRATION_FORMAT,
        "choice": choice,
        "seconds": secs,
        "speed_vs_torch": {n: secs["torch"] / s for n, s in secs.items()}
        if "torch" in secs
        else {},
        "load_avg": load,
        "calibration_s": round(time.perf_counter() - t0, 2),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "key": what,
    }
    try:
        write_json_atomic(path, data)
    except OSError as e:
        log.warning("could not cache the backend calibration in %s (%s)", path, e)
    return data
