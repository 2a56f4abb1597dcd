"""Evaluation through lm-evaluation-harness with the shipped ELMB task configs (local files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retriever.errors import ConfigError, InputError
from retriever.evaluation import TASKS, evaluate_model, get_task, read_mc_records
from retriever.evaluation.elmb import derive_mc, prompt, record_text, roleplay_qa
from retriever.evaluation.harness import resolve_data, write_task_yamls

pytest.importorskip("lm_eval")
transformers = pytest.importorskip("transformers")

TINY = dict(
    tokens=16 * 8 * 128,
    seq_len=128,
    n_layer=1,
    n_embd=32,
    n_head=2,
    batch_size=8,
    lr=3e-3,
    seed=0,
    device="cpu",
    threads=1,
)
CALLS = [
    "get_weather(city='Paris')",
    "send_email(to='ana')",
    "book_table(time='19:30')",
    "convert_currency(amount=10)",
]


def _mc_file(path: Path, n: int = 12, ctx: bool = False) -> Path:
    rows = []
    for i in range(n):
        ans = i % 4
        rec = {
            "question": f"Which call answers request {i} about {CALLS[ans].split('(')[0]}?",
            "choices": CALLS,
            "answer": ans,
        }
        if ctx:
            rec["ctx"] = f"Document {i}: the tool {CALLS[ans]} is the one to use."
        rows.append(rec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    from retriever.proxy import ProxyConfig, train_proxy

    d = tmp_path_factory.mktemp("eval_proxy")
    texts = [
        f"Question: Which call answers request {i}?\nAnswer: {CALLS[i % 4]}" for i in range(200)
    ]
    (d / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return train_proxy(d / "train.jsonl", d / "run", ProxyConfig(**TINY), progress=False).checkpoint


def test_shipped_yamls_are_the_challenge_definitions():
    yaml = pytest.importorskip("yaml")
    for t in TASKS.values():
        cfg = yaml.safe_load(t.yaml.read_text())
        assert cfg["task"] == t.harness and cfg["dataset_path"] == t.hub
        assert cfg["output_type"] == "multiple_choice" and cfg["test_split"] == "train"
        assert [m["metric"] for m in cfg["metric_list"]] == ["acc", "acc_norm"]
        assert cfg["doc_to_target"] == "answer" and cfg["doc_to_choice"] == "{{choices}}"
        want = (
            "Context: {{ctx}}\nQuestion: {{question}}\nAnswer:"
            if t.has_ctx
            else "Question: {{question}}\nAnswer:"
        )
        assert cfg["doc_to_text"] == want
    rec = {"question": "q?", "ctx": "c.", "choices": ["a", "b"], "answer": 1}
    assert prompt(rec, get_task("rag")) == "Context: c.\nQuestion: q?\nAnswer:"
    assert record_text(rec, get_task("elmb_reasoning")) == "Question: q?\nAnswer: b"


def test_local_yaml_includes_the_shipped_one(tmp_path):
    yaml = pytest.importorskip("yaml")
    f = _mc_file(tmp_path / "fc.jsonl")
    names = write_task_yamls({"function-calling": str(f), "rag": None}, tmp_path)
    assert names == {"function-calling": "elmb_functioncalling_local", "rag": "elmb_chatrag"}
    doc = yaml.safe_load((tmp_path / "elmb_functioncalling_local.yaml").read_text())
    assert doc["include"] == str(get_task("function-calling").yaml)
    assert doc["dataset_path"] == "json" and doc["dataset_kwargs"]["data_files"]["train"] == str(f)


@pytest.mark.slow
def test_evaluate_model_through_lm_eval_matches_the_scorecard(proxy, tmp_path):
    from retriever.confirm.bpb import LMScorer
    from retriever.confirm.panel import PanelModel
    from retriever.confirm.scorecard import MCItem, accuracy, choice_loglikelihoods

    fc = _mc_file(tmp_path / "fc.jsonl")
    rag = _mc_file(tmp_path / "rag.jsonl", ctx=True)
    scores = evaluate_model(
        proxy,
        tasks=["function-calling", "rag"],
        data={"function-calling": fc, "rag": rag},
        limit=10,
        device="cpu",
    )
    assert set(scores) == {"function-calling", "rag"}
    for row in scores.values():
        assert row["n"] == 10
        assert 0 <= row["acc"] <= 1 and 0 <= row["acc_norm"] <= 1
        assert row["acc_stderr"] > 0 and np.isfinite(row["bpb"]) and row["bpb"] > 0
    # the confirm stage's scorecard computes the same numbers on the same records
    scorer = LMScorer(PanelModel("p", str(proxy)), device="cpu")
    for t, path in (("function-calling", fc), ("rag", rag)):
        recs = read_mc_records(path)[:10]
        items = [MCItem(prompt(r, get_task(t)), r["choices"], r["answer"]) for r in recs]
        acc, acc_norm = accuracy(choice_loglikelihoods(scorer, items), items)
        assert acc == pytest.approx(scores[t]["acc"]) and acc_norm == pytest.approx(
            scores[t]["acc_norm"]
        )


@pytest.mark.slow
def test_bad_evaluation_inputs(proxy, tmp_path):
    with pytest.raises(ConfigError, match="unknown evaluation task"):
        evaluate_model(proxy, tasks=["chess"], data=tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        resolve_data(["reasoning"], {"reasoning": tmp_path / "missing.jsonl"})
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "choices": ["a"], "answer": 3}) + "\n")
    with pytest.raises(InputError, match="answer"):
        evaluate_model(proxy, tasks=["reasoning"], data={"reasoning": bad}, device="cpu")
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"question": "q", "choices": ["x" * 400, "y"], "answer": 0}) + "\n")
    with pytest.raises(ConfigError, match="fit the model's context"):
        evaluate_model(proxy, tasks=["reasoning"], data={"reasoning": long}, device="cpu")
    # one too-long record among fitting ones: skipped and counted, the rest scored
    mixed = _mc_file(tmp_path / "mixed.jsonl", n=3)
    with open(mixed, "a") as fh:
        fh.write(json.dumps({"question": "q", "choices": ["x" * 400, "y"], "answer": 0}) + "\n")
    row = evaluate_model(proxy, tasks=["reasoning"], data={"reasoning": mixed}, device="cpu")[
        "reasoning"
    ]
    assert row["n"] == 3 and row["skipped_too_long"] == 1


def test_derived_multiple_choice_is_seeded_and_order_free():
    items = [{"id": f"r{i}", "question": f"q{i}", "answer_text": f"answer {i}"} for i in range(6)]
    a = derive_mc(items, seed=0)
    b = {r["id"]: r for r in derive_mc(items[::-1], seed=0)}
    assert len(a) == 6
    for r in a:
        assert r["choices"][r["answer"]] == f"answer {r['id'][1:]}" and len(set(r["choices"])) == 4
        assert b[r["id"]] == r
    assert roleplay_qa("Man (speaking): Who are you?\nCleopatra (speaking): A queen.\n") == (
        "Man: Who are you?",
        "A queen.",
    )
    assert roleplay_qa("no turns here") is None


def test_local_eval_sets_from_the_shared_data(shared_data, tmp_path):
    from retriever.evaluation import local_eval_sets
    from retriever.holdout import load_split

    paths = local_eval_sets(tmp_path / "sets", shared_data)
    man = json.loads((tmp_path / "sets" / "manifest.json").read_text())
    assert man["counts"]["function-calling"]["records"] == 400
    assert man["counts"]["reasoning"]["records"] == 503
    assert man["counts"]["roleplay"]["derived"] and man["counts"]["rag"]["records"] > 20
    split = load_split(shared_data)
    for t, p in paths.items():
        recs = read_mc_records(p)
        gold = {" ".join(r.text.split()) for r in split.records(t, "gold")}
        assert not any(" ".join(r["text"].split()) in gold for r in recs)


@pytest.mark.slow
def test_cli_proxy_eval(proxy, tmp_path, capsys):
    from retriever.cli import main

    fc = _mc_file(tmp_path / "fc.jsonl")
    assert (
        main(
            [
                "proxy-eval",
                str(proxy),
                "--task",
                "function-calling",
                "--data",
                f"function-calling={fc}",
                "--limit",
                "4",
                "--device",
                "cpu",
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["function-calling"]["n"] == 4 and doc["function-calling"]["bpb"] > 0
