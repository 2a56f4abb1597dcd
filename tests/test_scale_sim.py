"""Simulated scale: a corpus in ClimbLab's layout (cluster_1 ... cluster_20 folders of small parquet
shards of token ids, read through a local tokenizer), run with a sample, a confirm cap, one-pass
multi-label filtering on a multi-worker executor, killed mid-run and resumed.

Shows: only the sampled documents are embedded (counted), BPB runs only on the capped candidates,
the filter reads every shard once, the kill loses and duplicates nothing, and the plan's predicted
document (and character) counts equal what the run did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import WEB_TEXT, run_config, write_jsonl

REPO = Path(__file__).resolve().parents[1]
CLUSTERS, SHARDS_PER_CLUSTER, DOCS_PER_SHARD = 20, 10, 4  # 200 shards, 800 documents
N_DOCS = CLUSTERS * SHARDS_PER_CLUSTER * DOCS_PER_SHARD
SAMPLE, CAP = 0.3, 12


def _math(i):
    return (
        f"Question: Ann has {i} apples and buys {i + 3} more. How many apples?\nAnswer: {i} + "
        f"{i + 3} = {2 * i + 3}."
    )


def _tools(i):
    names = ["Ana", "Bob", "Carla", "Dev", "Eli", "Fay", "Gus", "Hana"]
    return (
        f'Question: Text {names[i % 8]} about meeting {i}.\n1. get_phone_number("{names[i % 8]}")\n'
        f'2. send_sms(["$1"], "meeting {i} moved")\n3. join()'
    )


def _texts(shared: Path | None) -> list[str]:
    web = list(WEB_TEXT)
    if (
        shared is not None and (shared / "corpus").is_dir()
    ):  # real ClimbLab text when the samples exist
        for f in sorted((shared / "corpus").glob("climblab*.jsonl"))[:1]:
            web = [
                json.loads(x)["text"][:600] for x in f.read_text().split("\n")[:400] if x.strip()
            ]
    out = []
    for j in range(N_DOCS):
        k = j % 10
        out.append(
            _math(j) if k == 0 else _tools(j) if k == 1 else f"{web[j % len(web)]} (page {j})"
        )
    return out


def _tokenizer(folder: Path, texts: list[str]) -> Path:
    """A word-level tokenizer saved like a Hub tokenizer (no GPT-2 download here)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def climb(tmp_path_factory, request):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("climb")
    shared = Path(os.environ.get("RETRIEVER_SHARED_DATA", REPO.parent / "shared" / "data"))
    texts = _texts(shared if shared.is_dir() else None)
    tok_dir = _tokenizer(root / "tokenizer", texts)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    j = 0
    for c in range(1, CLUSTERS + 1):
        for s in range(SHARDS_PER_CLUSTER):
            rows = []
            for _ in range(DOCS_PER_SHARD):
                rows.append(
                    {"tokens": tok.encode(texts[j], add_special_tokens=False), "cluster_id": c}
                )
                j += 1
            path = root / "corpus" / f"cluster_{c}" / f"cluster_{c}_{s:03d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), path)
    write_jsonl(root / "gold" / "math.jsonl", [{"text": _math(1000 + i)} for i in range(30)])
    write_jsonl(root / "gold" / "tools.jsonl", [{"text": _tools(1000 + i)} for i in range(30)])
    cfg = run_config(
        root / "run.toml",
        {"math": "./gold/math.jsonl", "tools": "./gold/tools.jsonl"},
        "./corpus",
        seed=3,
        corpus={"detokenizer": "./tokenizer"},
        score={"sample": SAMPLE, "top_fraction": 0.2, "batch_size": 16},
        confirm={
            "max_candidates": CAP,
            "tiny_models": 3,
            "tiny_steps": 15,
            "tiny_texts": 30,
            "scorecard_limit": 8,
            "positive_min": 0.0001,
            "negative_max": 0.0,
        },
        distill={"epoch": 5, "test_fraction": 0.3, "multilabel": True, "dim": 16, "bucket": 20000},
        filter={"threshold": 0.5, "executor": "local", "workers": 2},
        dataset={"budget": "3k"},
    )
    return root, cfg


def _count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern))) if folder.is_dir() else 0


@pytest.mark.slow
def test_simulated_climblab_run_sampled_capped_one_pass_killed_and_resumed(climb):
    from retriever.plan import Rates, make_plan
    from retriever.run.config import load_run_config
    from retriever.score import read_scores
    from retriever.score.job import DocSampler

    root, cfg_path = climb
    out = root / "out"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    cmd = [sys.executable, "-m", "retriever.cli", "run", str(cfg_path), "--json"]

    # 1. start the run and kill it while it scores (some shards done, not all)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.time() + 600
    while (
        time.time() < deadline
        and _count(out / "scores" / "done", "*.json") < 40
        and proc.poll() is None
    ):
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = _count(out / "scores" / "done", "*.json")
    assert 40 <= done_at_kill < CLUSTERS * SHARDS_PER_CLUSTER

    # 2. rerun: the score step resumes into the same folder, then every later step runs
    res = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=3600
    )  # minutes on an idle machine; 25+ under load 30
    assert res.returncode == 0, res.stderr[-3000:]
    steps = {o["name"]: o for o in json.loads(res.stdout)}
    assert steps["score"]["action"] == "resumed"
    assert "plan of" in res.stderr and "score" in res.stderr  # the cost plan is printed first

    # only the sampled documents were embedded, each once
    ids = read_scores(out / "scores").column("id").to_pylist()
    sampler = DocSampler(SAMPLE, seed=3)
    all_ids = [
        f"cluster_{c}__cluster_{c}_{s:03d}:{r}"
        for c in range(1, CLUSTERS + 1)
        for s in range(SHARDS_PER_CLUSTER)
        for r in range(DOCS_PER_SHARD)
    ]
    want = {i for i in all_ids if sampler.keep(i)}
    assert len(ids) == len(set(ids)) and set(ids) == want
    summary = json.loads((out / "scores" / "summary.json").read_text())
    assert summary["docs_in"] == N_DOCS and summary["sample"]["unsampled"] == N_DOCS - len(want)
    assert summary["balanced"]

    # BPB only on the capped candidates (the union over tasks), nothing else
    conf = json.loads((out / "confirm" / "summary.json").read_text())
    for t in ("math", "tools"):
        assert conf["tasks"][t]["candidates"] == CAP
    assert conf["bpb"]["docs"] <= 2 * CAP

    # the filter read every shard once, with the multi-label student, losing nothing
    man = json.loads((out / "pools" / "manifest.json").read_text())
    assert (
        len(man["shards"])
        == CLUSTERS * SHARDS_PER_CLUSTER
        == _count(out / "pools" / "done", "*.json")
    )
    assert all(e["docs_in"] == DOCS_PER_SHARD for e in man["shards"].values())
    assert man["totals"]["docs_in"] == N_DOCS and man["totals"]["balanced"]
    models = {m[0] for m in man["settings"]["models"].values()}
    assert models == {str(out / "filters" / "multilabel" / "filter.bin")}

    # the plan's predicted counts are what the run did
    plan = make_plan(load_run_config(cfg_path), Rates())
    assert plan.stage("score").docs == len(want) == steps["score"]["result"]["scored"]
    assert plan.stage("confirm").docs >= conf["bpb"]["docs"] and plan.stage("confirm").exact
    assert plan.stage("filter").docs == man["totals"]["docs_in"]
    assert plan.corpus["chars"] == man["totals"]["chars_in"]  # characters the filter read
