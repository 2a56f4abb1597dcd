"""``retriever evaluate`` and ``retriever mix run`` through the CLI with real tiny proxies: the
proxy stage's transformers training and lm-eval's evaluation on the shipped ELMB task configs."""

from __future__ import annotations

import json

import pytest
from conftest import MATH_GOLD, TOOLS_GOLD, WEB_TEXT, write_jsonl
from conftest import write_pool as _pool

from retriever.cli import main as cli_main

pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

CALLS = [
    'get_weather(city="Paris")',
    'send_email(to="ana")',
    'book_table(time="19:30")',
    "convert_currency(amount=10)",
]


@pytest.fixture
def run_cfg(tmp_path):
    web = [f"{WEB_TEXT[i % 6]} Page {i} has more plain prose about town life." for i in range(80)]
    tools = [f"{t}\nCall {i}." for i, t in enumerate(TOOLS_GOLD * 6)]
    write_jsonl(
        tmp_path / "corpus" / "web.jsonl",
        [{"id": f"w{i}", "text": t} for i, t in enumerate(web + tools[:4])],
    )
    _pool(tmp_path / "run" / "pools" / "function-calling" / "a.jsonl.gz", "function-calling", tools)
    _pool(
        tmp_path / "run" / "pools" / "reasoning" / "a.jsonl.gz",
        "reasoning",
        [f"{t}\nStep {i}." for i, t in enumerate(MATH_GOLD * 6)],
    )
    ev = [
        {"question": f"Which call answers request {i}?", "choices": CALLS, "answer": i % 4}
        for i in range(8)
    ]
    write_jsonl(tmp_path / "eval" / "fc.jsonl", ev)
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        '[run]\nout = "./run"\n[tasks.function-calling]\ngold = ["./g.jsonl"]\n'
        '[tasks.reasoning]\ngold = ["./g.jsonl"]\n[corpus]\npaths = ["./corpus"]\n'
        '[dataset]\nbudget = "1500"\n'
        '[evaluate]\narms = ["random", "pipeline"]\nseeds = 2\neval_limit = 8\ndevice = "cpu"\n'
        'eval_data = {function-calling = "./eval/fc.jsonl"}\n'
        "proxy = {tokens = 4096, seq_len = 64, n_layer = 1, n_embd = 32, n_head = 2, "
        "batch_size = 8, lr = 3e-3, threads = 1}\n"
        '[mix]\nn = 6\nmodel = "linear"\nsamples = 2000\nfolds = 3\n'
    )
    return cfg


@pytest.mark.slow
def test_evaluate_two_arms_with_real_proxies(run_cfg, capsys):
    assert cli_main(["evaluate", str(run_cfg)]) == 0
    text = capsys.readouterr().out
    assert "pipeline" in text and "dbpb vs random" in text and "4 trained" in text
    out = run_cfg.parent / "run" / "evaluate"
    summary = json.loads((out / "summary.json").read_text())
    rows = {(r["arm"], r["metric"]): r for r in summary["table"]}
    for arm in ("random", "pipeline"):
        assert rows[(arm, "bpb")]["n"] == 2 and rows[(arm, "bpb")]["mean"] > 0
        assert 0 <= rows[(arm, "acc_norm")]["mean"] <= 1
    assert "diff" in rows[("pipeline", "bpb")]
    assert summary["arms"]["pipeline"]["cost"]["tokens_per_s"] > 0
    # the checkpoints are the proxy stage's HF folders
    train = [json.loads(p.read_text()) for p in (out / "proxies").glob("*/train.json")]
    assert len(train) == 4 and all(t["steps"] == 8 for t in train)
    # cached: a rerun trains nothing
    assert cli_main(["evaluate", str(run_cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["trained"] == 0


@pytest.mark.slow
def test_mix_run_completes_offline_with_tiny_proxies(run_cfg, capsys):
    assert cli_main(["mix", "run", str(run_cfg), "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert set(best["weights"]) == {"function-calling", "reasoning", "general"}
    assert best["n_runs"] == 6 and best["metric"] == "bpb"
    assert (run_cfg.parent / "run" / "mix" / "best_mixture.json").exists()
