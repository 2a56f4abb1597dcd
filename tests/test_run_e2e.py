"""`retriever run` end to end on tiny data: every stage for real, then reruns that redo only what
changed."""

import json

import pytest
from conftest import WEB_TEXT, write_jsonl

from retriever.cli import main


def _gold_math(n):
    return [
        f"Question: Ann has {i} apples and buys {i + 3} more. How many apples?\nAnswer: {i} + "
        f"{i + 3} = {2 * i + 3}."
        for i in range(n)
    ]


def _gold_tools(n):
    names = ["Ana", "Bob", "Carla", "Dev", "Eli", "Fay", "Gus", "Hana"]
    return [
        f'Question: Text {names[i % 8]} about meeting {i}.\n1. get_phone_number("{names[i % 8]}")\n'
        f'2. send_sms(["$1"], "meeting {i} moved")\n3. join()'
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    write_jsonl(root / "gold/math.jsonl", [{"text": t} for t in _gold_math(40)])
    write_jsonl(root / "gold/tools.jsonl", [{"text": t} for t in _gold_tools(40)])
    corpus = [{"text": f"{WEB_TEXT[i % len(WEB_TEXT)]} Note {i}."} for i in range(24)]
    corpus += [{"text": t.replace("Ann", "Zoe")} for t in _gold_math(48)[40:]]
    corpus += [{"text": t.replace("meeting", "lunch")} for t in _gold_tools(48)[40:]]
    write_jsonl(root / "corpus/a.jsonl", corpus[::2])
    write_jsonl(root / "corpus/b.jsonl", corpus[1::2] + [{"no_text": 1}])
    cfg = root / "run.toml"
    cfg.write_text("""
[run]
out = "./out"
[tasks.math]
gold = ["./gold/math.jsonl"]
[tasks.tools]
gold = ["./gold/tools.jsonl"]
[corpus]
paths = ["./corpus"]
[score]
top_fraction = 0.3
[confirm]
tiny_models = 4
tiny_steps = 30
tiny_texts = 40
scorecard_limit = 10
positive_min = 0.0001
negative_max = 0.0
[distill]
epoch = 5
test_fraction = 0.3
[filter]
threshold = 0.5
workers = 1
[dataset]
budget = "2k"
""")
    return root, cfg


@pytest.mark.slow
def test_run_end_to_end_then_only_changed_steps_rerun(tiny_run, capsys):
    root, cfg = tiny_run
    out = root / "out"
    assert main(["run", str(cfg), "--json"]) == 0
    first = {o["name"]: o for o in json.loads(capsys.readouterr().out)}
    assert {o["action"] for o in first.values()} == {"ran"} and len(first) == 12
    assert first["score"]["result"]["docs_in"] == 41 and first["score"]["result"]["rejected"] == 1
    # [index] head defaults to true: the run trained heads, and score_<task> is their probability
    import pyarrow.parquet as pq

    assert set(first["head"]["result"]) == {"math", "tools"}
    scores = pq.read_table(next((out / "scores" / "scores").glob("*.parquet"))).to_pydict()
    for t in ("math", "tools"):
        assert (out / "indexes" / t / "head" / "head.json").is_file()
        assert scores[f"score_{t}"] == scores[f"head_{t}"]
        assert all(0.0 <= p <= 1.0 for p in scores[f"head_{t}"])
    assert max(scores["head_math"]) > 0.5 > min(scores["head_math"])
    for t in ("math", "tools"):
        labels = out / "confirm" / "labels" / f"{t}.parquet"
        assert labels.exists() and (out / "filters" / t / "filter.bin").exists()
    assert (out / "report.html").read_text().count("<svg") >= 1
    assert (out / "dataset" / "summary.json").exists()

    # nothing changed: nothing runs
    assert main(["run", str(cfg), "--json"]) == 0
    assert {o["action"] for o in json.loads(capsys.readouterr().out)} == {"skipped"}

    # a changed filter threshold: filter, dataset and report rerun; embedding and LM scoring do not
    cfg.write_text(cfg.read_text().replace("threshold = 0.5", "threshold = 0.6"))
    assert main(["run", str(cfg), "--json"]) == 0
    actions = {o["name"]: o["action"] for o in json.loads(capsys.readouterr().out)}
    assert {n for n, a in actions.items() if a != "skipped"} == {"filter", "dataset", "report"}
    assert actions["filter"] == "reran"

    # a changed similarity threshold: candidates and everything after them, not the embedding
    cfg.write_text(cfg.read_text().replace("top_fraction = 0.3", "top_fraction = 0.4"))
    assert main(["run", str(cfg), "--plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (
        plan["score"] == "skipped"
        and plan["index/math"] == "skipped"
        and plan["panel"] == "skipped"
    )
    assert plan["candidates"] == plan["confirm"] == plan["filter"] == "reran"
