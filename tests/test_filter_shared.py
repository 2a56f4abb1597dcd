"""distill + filter from the CLI on the real sample data in ../shared/data (skipped without it).

Labels stand in for the confirm stage's: gold exemplars as positives, ClimbLab documents as
negatives. The filter then runs over ClimbLab documents the student never saw plus held-out gold.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from retriever.cli import main
from retriever.distill import write_labels

GOLD = {
    "function-calling": "gold/function_calling/xlam_3k.jsonl",
    "reasoning": "gold/reasoning/gsm8k_train.jsonl",
}


def texts(path: Path) -> list[str]:
    return [json.loads(x)["text"] for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.slow
def test_distill_and_filter_cli_on_shared_data(tmp_path, shared_data, capsys):
    climb = texts(shared_data / "corpus" / "climblab_clusters_sample.jsonl")
    rows, heldout = [], []
    for task, rel in GOLD.items():
        gold = texts(shared_data / rel)
        rows += [
            {"id": f"{task}-g{i}", "text": t, "task": task, "label": "positive"}
            for i, t in enumerate(gold[:300])
        ]
        rows += [
            {"id": f"{task}-c{i}", "text": t, "task": task, "label": "negative"}
            for i, t in enumerate(climb[:600])
        ]
        heldout += [
            {"id": f"held-{task}-{i}", "text": t, "source": task} for i, t in enumerate(gold[-100:])
        ]
    for task in GOLD:
        write_labels(
            tmp_path / "labels" / f"{task}.parquet", [r for r in rows if r["task"] == task]
        )
    for task in GOLD:
        out = tmp_path / "indexes" / task / "filter.bin"
        assert (
            main(
                [
                    "distill",
                    "--labels",
                    str(tmp_path / "labels"),
                    "--task",
                    task,
                    "--out",
                    str(out),
                    "--bucket",
                    "200000",
                    "--dim",
                    "32",
                    "--training-set",
                    "gold+confirmed",
                    "--json",
                ]
            )
            == 0
        )
        man = json.loads(capsys.readouterr().out)
        assert man["metrics"]["roc_auc"] > 0.95, man["metrics"]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "heldout_gold.jsonl").write_text("".join(json.dumps(r) + "\n" for r in heldout))
    stream = shared_data / "corpus" / "climblab_stream_first1000.jsonl"
    rc = main(
        [
            "filter",
            "--task",
            "function-calling",
            "--task",
            "reasoning",
            "--indexes",
            str(tmp_path / "indexes"),
            "--input",
            str(corpus),
            str(stream),
            "--output",
            str(tmp_path / "pools"),
            "--workers",
            "1",
            "--json",
        ]
    )
    assert rc == 0
    man = json.loads(capsys.readouterr().out)
    tot = man["totals"]
    assert tot["docs_in"] == 200 + 1000 and man["complete"]
    for task in GOLD:
        kept = []
        for f in (tmp_path / "pools" / task).glob("*.jsonl.gz"):
            with gzip.open(f, "rt") as fh:
                kept += [json.loads(x) for x in fh]
        own = sum(1 for r in kept if r["metadata"].get("source") == task)
        other = sum(1 for r in kept if r["metadata"].get("source") not in (None, task))
        climblab = sum(1 for r in kept if r["metadata"]["shard"].startswith("corpus__climblab"))
        assert own >= 90, (task, own)  # held-out gold of the task is found
        assert other <= 10, (task, other)  # the other task's gold is not
        assert climblab <= 100, (task, climblab)  # most of the web text is dropped
        assert tot["kept"][task] == len(kept)
