"""Shared pieces of the fault-injection suite: tiny corpora, a one-line-error check, a CLI
runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def write_jsonl_bytes(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def docs(n: int, prefix: str = "d", seed_text: str = "The river flooded in spring") -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "text": f"{seed_text}, note {prefix} number {i}."} for i in range(n)
    ]


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        PYTHONPATH=str(REPO),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    e.update(extra)
    return e


def cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run ``python -m retriever.cli ARGS`` in a fresh process (stdout, stderr captured)."""
    return subprocess.run(
        [sys.executable, "-m", "retriever.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
        **kw,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The command failed with exit 2 and one ``error:`` line on stderr, no traceback."""
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err[-3000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]
