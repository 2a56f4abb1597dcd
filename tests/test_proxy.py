"""Proxy training: tiny seeded runs on CPU, a real SIGKILL then resume, continued pretraining."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from retriever.errors import ConfigError, InputError, ResumeError
from retriever.proxy import ProxyConfig, lr_at, train_proxy
from retriever.proxy.data import BlockSampler, dataset_shards

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
# 12 steps of 4 x 64 tokens, a 1-layer model: well under a second per run
TINY = dict(
    tokens=12 * 4 * 64,
    seq_len=64,
    n_layer=1,
    n_embd=32,
    n_head=2,
    batch_size=4,
    lr=3e-3,
    seed=0,
    device="cpu",
    threads=1,
    save_every=5,
)


def _corpus(path: Path, n: int = 60, seed: int = 0) -> Path:
    from retriever.confirm.tiny_panel import synthetic_corpora

    c = synthetic_corpora(n, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for i, t in enumerate(c["task"] + c["generic"]):
            fh.write(json.dumps({"id": f"d{i}", "text": t}) + "\n")
        fh.write("not json\n")  # one bad line: counted as rejected, never a crash
    return path


def _weights(folder: Path) -> dict[str, np.ndarray]:
    m = transformers.AutoModelForCausalLM.from_pretrained(folder)
    return {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _corpus(tmp_path_factory.mktemp("proxy_data") / "docs.jsonl")


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("proxy_ref") / "run"
    return train_proxy(corpus, out, ProxyConfig(**TINY), progress=False), out


def test_config_checks_input():
    with pytest.raises(ConfigError, match="mode"):
        ProxyConfig(mode="finetune")
    with pytest.raises(ConfigError, match="init"):
        ProxyConfig(mode="continue")
    with pytest.raises(ConfigError, match="multiple of n_head"):
        ProxyConfig(n_embd=30, n_head=4)
    with pytest.raises(ConfigError, match="tokens"):
        ProxyConfig(tokens=0)
    with pytest.raises(ConfigError, match="unknown proxy option"):
        ProxyConfig.from_dict({"token": 5})


def test_lr_schedule_warms_up_then_decays():
    cfg = ProxyConfig(lr=1.0, warmup=0.1, min_lr_ratio=0.1)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_block_order_is_seeded_and_covers_each_epoch():
    s = BlockSampler(n_blocks=7, batch_size=3, seed=1)
    seen = np.concatenate([s.blocks(i) for i in range(7)])  # 21 sequences = 3 epochs
    for e in range(3):
        assert sorted(seen[7 * e : 7 * e + 7]) == list(range(7))
    again = BlockSampler(n_blocks=7, batch_size=3, seed=1)
    assert np.array_equal(again.blocks(5), s.blocks(5))  # any step, out of order
    assert not np.array_equal(BlockSampler(7, 3, seed=2).blocks(0), s.blocks(0))


@pytest.mark.slow
def test_train_writes_model_result_and_is_cached(reference, corpus):
    res, out = reference
    assert res.steps == 12 and res.tokens == 12 * 4 * 64 and not res.resumed
    assert res.tokens_per_s > 0 and res.seconds > 0 and res.device == "cpu"
    assert res.dtype == "float32"
    doc = json.loads((out / "result.json").read_text())
    assert doc["tokens"] == res.tokens and doc["rejected"] == {"bad_json": 1}
    assert doc["losses"][0][1] > doc["losses"][-1][1]  # it learns
    tok = transformers.AutoTokenizer.from_pretrained(res.checkpoint)
    model = transformers.AutoModelForCausalLM.from_pretrained(res.checkpoint)
    ids = tok("Calls: [", return_tensors="pt")["input_ids"]
    assert model(input_ids=ids).logits.shape[-1] == 258
    again = train_proxy(corpus, out, ProxyConfig(**TINY), progress=False)
    assert again.cached and again.tokens == res.tokens
    with pytest.raises(ResumeError, match="lr"):
        train_proxy(corpus, out, ProxyConfig(**{**TINY, "lr": 1e-3}), progress=False)


@pytest.mark.slow
def test_same_seed_same_weights_other_seed_differs(reference, corpus, tmp_path):
    res, _ = reference
    twin = train_proxy(corpus, tmp_path / "twin", ProxyConfig(**TINY), progress=False)
    other = train_proxy(
        corpus, tmp_path / "other", ProxyConfig(**{**TINY, "seed": 1}), progress=False
    )
    a, b, c = _weights(res.checkpoint), _weights(twin.checkpoint), _weights(other.checkpoint)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.allclose(a[k], c[k]) for k in a)


_CHILD = """
import sys, time
from retriever.proxy import ProxyConfig, train_proxy
def hold(step, loss):
    if step == 7:  # after the step-5 checkpoint: tell the parent, then wait to be killed
        print("READY", flush=True)
        time.sleep(600)
cfg = ProxyConfig(**eval(sys.argv[3]))
train_proxy(sys.argv[1], sys.argv[2], cfg, progress=False, on_step=hold)
"""


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(reference, corpus, tmp_path):
    ref, _ = reference
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(corpus), str(out), repr(TINY)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.time() + 300
        line = ""
        while time.time() < deadline and "READY" not in line:
            line = child.stdout.readline()
            if not line and child.poll() is not None:
                pytest.fail(f"child exited early: {child.stderr.read()[-2000:]}")
        assert "READY" in line
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 5 and not (out / "result.json").exists()
    res = train_proxy(corpus, out, ProxyConfig(**TINY), progress=False)
    assert res.resumed and res.steps == ref.steps and res.tokens == ref.tokens
    a, b = _weights(ref.checkpoint), _weights(res.checkpoint)
    assert all(np.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


@pytest.mark.slow
def test_continued_pretraining_from_a_local_checkpoint(reference, corpus, tmp_path):
    base, _ = reference
    res = train_proxy(
        corpus,
        tmp_path / "cont",
        ProxyConfig(**{**TINY, "mode": "continue", "init": str(base.checkpoint)}),
        progress=False,
    )
    a, b = _weights(base.checkpoint), _weights(res.checkpoint)
    assert a.keys() == b.keys() and any(not np.allclose(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="context"):
        train_proxy(
            corpus,
            tmp_path / "long",
            ProxyConfig(
                **{**TINY, "mode": "continue", "init": str(base.checkpoint), "seq_len": 128}
            ),
            progress=False,
        )


def test_llama_arch_and_dataset_folder(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    ds = tmp_path / "dataset"
    (ds / "parquet").mkdir(parents=True)
    (ds / "lmflow").mkdir()
    texts = [f"Question: what is {i} plus {i}? Answer: {2 * i}." * 3 for i in range(40)]
    pq.write_table(
        pa.table({"id": [str(i) for i in range(40)], "text": texts}),
        ds / "parquet" / "part_00000.parquet",
    )
    (ds / "lmflow" / "part_00000.json").write_text(
        json.dumps({"type": "text_only", "instances": [{"text": t} for t in texts]})
    )
    (ds / "manifest.json").write_text("{}")
    (ds / "summary.json").write_text("{}")
    assert dataset_shards(ds) == [str(ds / "parquet" / "part_00000.parquet")]
    res = train_proxy(
        ds, tmp_path / "llama", ProxyConfig(**{**TINY, "arch": "llama"}), progress=False
    )
    assert res.n_docs == 40
    cfg = json.loads((res.checkpoint / "config.json").read_text())
    assert cfg["model_type"] == "llama"


def test_bad_inputs_fail_with_one_line(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        train_proxy(tmp_path / "missing.jsonl", tmp_path / "o", ProxyConfig(**TINY), progress=False)
    tiny = tmp_path / "tiny.jsonl"
    tiny.write_text(json.dumps({"text": "hi"}) + "\n")
    with pytest.raises(InputError, match="fewer tokens than one training sequence"):
        train_proxy(tiny, tmp_path / "o2", ProxyConfig(**TINY), progress=False)
    nofield = tmp_path / "nofield.jsonl"
    nofield.write_text(json.dumps({"body": "hello there"}) + "\n")
    with pytest.raises(InputError, match="text-field"):
        train_proxy(nofield, tmp_path / "o3", ProxyConfig(**TINY), progress=False)


def test_cli_train_json(corpus, tmp_path, capsys):
    from retriever.cli import main

    args = [
        "proxy",
        "train",
        str(corpus),
        "--out",
        str(tmp_path / "cli"),
        "--json",
        "--no-progress",
        "--tokens",
        "1k",
        "--seq-len",
        "32",
        "--n-layer",
        "1",
        "--n-embd",
        "16",
        "--batch-size",
        "2",
        "--threads",
        "1",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tokens"] == 1024 and Path(doc["checkpoint"]).is_dir()
    assert (
        main(["proxy", "train", str(corpus), "--out", str(tmp_path / "x"), "--mode", "nope"]) == 2
    )
    assert "mode" in capsys.readouterr().err
