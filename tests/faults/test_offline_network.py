"""Case 8: an offline run makes no network attempt at all (OpenVINO telemetry included).

The run happens in a subprocess whose ``sitecustomize`` (``netguard/``) refuses and records every
socket connection and name look-up; the test fails when anything was recorded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from faults_helpers import env

pytestmark = pytest.mark.faults

GUARD = Path(__file__).resolve().parent / "netguard"

OFFLINE_RUN = """
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
gold = root / "gold.jsonl"
gold.write_text("".join(
    json.dumps({"text": f"Question: Text Bob {i}.\\n1. send_sms(['Bob'], 'hi {i}')"}) + "\\n"
    for i in range(6)))
corpus = root / "corpus" / "c.jsonl"
corpus.parent.mkdir()
corpus.write_text("".join(
    json.dumps({"id": f"d{i}", "text": f"The bakery opens at {i} am."}) + "\\n"
    for i in range(20)))
from retriever.index import build_index
from retriever.score import score_corpus
build_index("tools", gold=[str(gold)], indexes_dir=root / "indexes")
s = score_corpus([str(root / "indexes" / "tools")], [str(corpus.parent)], root / "scores",
                 top_fraction=0.1)
print("scored", s["scored"])
"""


def test_guard_catches_a_network_attempt(tmp_path):
    """The guard itself works: a plain look-up is refused and recorded."""
    log = tmp_path / "net.log"
    code = (
        "import socket\ntry:\n    socket.getaddrinfo('example.com', 443)\nexcept OSError as "
        "e:\n    print(e)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(PYTHONPATH=f"{GUARD}:{env()['PYTHONPATH']}", NET_GUARD_LOG=str(log)),
    )
    assert "blocked by the test guard" in proc.stdout, proc.stderr
    assert "example.com" in log.read_text()


@pytest.mark.slow
def test_offline_index_and_score_make_no_network_attempt(tmp_path):
    log = tmp_path / "net.log"
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_RUN, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env(
            PYTHONPATH=f"{GUARD}:{env()['PYTHONPATH']}",
            NET_GUARD_LOG=str(log),
            RETRIEVER_CACHE=str(tmp_path / "cache"),
        ),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "scored 20" in proc.stdout
    attempts = log.read_text() if log.exists() else ""
    assert attempts == "", attempts[:3000]
