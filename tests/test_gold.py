import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl

from retriever.config import GoldSource, TaskSpec, find_task_spec, load_task_spec
from retriever.errors import ConfigError, InputError
from retriever.gold import GoldLoader, elmb_text, format_record, load_gold, tinyagent_text


def test_elmb_text_is_prompt_plus_correct_choice_and_chatrag_adds_context():
    rec = {"question": "Is 2 even?", "choices": ["no", "yes"], "answer": 1}
    assert elmb_text(rec) == "Question: Is 2 even?\nAnswer: yes"
    rag = {**rec, "ctx": "Two is divisible by two."}
    assert elmb_text(rag) == "Context: Two is divisible by two.\nQuestion: Is 2 even?\nAnswer: yes"
    # choices stored as a string (some exports), answer as a string
    assert elmb_text({"question": "q", "choices": "['a', 'b']", "answer": "0"}).endswith(
        "Answer: a"
    )
    assert (
        elmb_text({"question": "q", "choices": ["a"], "answer": 5}) is None
    )  # answer out of range


def test_tinyagent_text_keeps_query_and_plans_not_the_prompt():
    rec = {
        "input": "Text Bob I am late",
        "output": [
            {
                "type": "plan",
                "raw_input": "SYSTEM PROMPT with 16 tools",
                "raw_output": '1. send_sms(["Bob"], "late")\n2. join()<END_OF_PLAN>',
            },
            {"type": "join", "raw_output": "Thought: done"},
        ],
    }
    text = tinyagent_text(rec)
    assert text.startswith("Question: Text Bob I am late\n1. send_sms")
    assert "SYSTEM PROMPT" not in text and "Thought: done" not in text


def test_format_auto_and_template():
    assert format_record({"text": "plain"}, "auto") == "plain"
    assert (
        format_record({"question": "q", "choices": ["x"], "answer": 0}, "auto")
        == "Question: q\nAnswer: x"
    )
    assert format_record({"q": "a", "r": "b"}, "template", template="{q}->{r}") == "a->b"
    assert format_record({"q": "a"}, "template", template="{q}->{r}") is None  # missing field


def test_loader_dedups_rejects_and_counts(tmp_path):
    write_jsonl(
        tmp_path / "g.jsonl",
        [{"text": "one"}, {"text": "one "}, {"text": ""}, {"body": "x"}, {"text": "two"}],
    )
    (tmp_path / "g.jsonl").open("a").write("{broken\n")
    g = load_gold([str(tmp_path / "g.jsonl")])
    assert g.texts == ["one", "two"]
    c = g.stats.counts
    assert c["seen"] == 6 and c["kept"] == 2 and c["dropped/duplicate"] == 1
    assert c["rejected/empty"] == 1 and c["rejected/no_text"] == 1 and c["rejected/bad_json"] == 1
    assert g.stats.balanced()


def test_loader_reads_parquet_folders_and_tinyagent_json(tmp_path):
    (tmp_path / "d").mkdir()
    pq.write_table(pa.table({"text": ["p1", "p2"]}), tmp_path / "d" / "a.parquet")
    ta = {
        "ex1": {
            "input": "Email Ana",
            "output": [{"type": "plan", "raw_output": "1. send_email()"}],
        },
        "ex2": {"input": "Call Bo", "output": [{"type": "plan", "raw_output": "1. call()"}]},
    }
    (tmp_path / "d" / "training_data.json").write_text(json.dumps(ta))
    g = load_gold([str(tmp_path / "d")])
    assert sorted(g.texts) == sorted(
        ["p1", "p2", "Question: Email Ana\n1. send_email()", "Question: Call Bo\n1. call()"]
    )
    assert {d.id for d in g.docs} >= {"d:ex1", "d:ex2"}  # TinyAgent keys become ids


def test_optional_missing_source_is_skipped_required_is_an_error(tmp_path):
    write_jsonl(tmp_path / "g.jsonl", [{"text": "kept"}])
    g = GoldLoader(
        [GoldSource(str(tmp_path / "nope"), optional=True), GoldSource(str(tmp_path / "g.jsonl"))]
    ).load()
    assert g.texts == ["kept"]
    with pytest.raises(InputError, match="does not exist"):
        GoldLoader([GoldSource(str(tmp_path / "nope"))]).load()
    with pytest.raises(InputError, match="no gold exemplar"):
        write_jsonl(tmp_path / "empty.jsonl", [{"text": " "}])
        load_gold([str(tmp_path / "empty.jsonl")])


def test_task_spec_loading_and_errors(tmp_path):
    write_jsonl(tmp_path / "data" / "g.jsonl", [{"text": "x"}])
    (tmp_path / "t.toml").write_text(
        'task = "t"\n[[sources]]\npath = "data/g.jsonl"\nformat = "text"\n'
    )
    spec = load_task_spec(tmp_path / "t.toml")
    assert spec.sources[0].path == str(tmp_path / "data" / "g.jsonl")  # relative to the spec file
    assert find_task_spec("t", tmp_path) == spec
    assert spec.with_sources(["other.jsonl"]).sources[0].path == "other.jsonl"
    (tmp_path / "bad.toml").write_text('task = "bad"\nmodle = "x"\n[[sources]]\npath = "a"\n')
    with pytest.raises(ConfigError, match="modle"):
        load_task_spec(tmp_path / "bad.toml")
    (tmp_path / "fmt.toml").write_text('[[sources]]\npath = "a"\nformat = "csv"\n')
    with pytest.raises(ConfigError, match="format"):
        load_task_spec(tmp_path / "fmt.toml")
    with pytest.raises(ConfigError, match="no spec for task"):
        find_task_spec("missing", tmp_path)
    with pytest.raises(ConfigError, match="no gold sources"):
        TaskSpec(task="x", sources=())


def test_shipped_specs_name_the_hub_sources():
    specs = {t: find_task_spec(t) for t in ("function-calling", "roleplay", "rag", "reasoning")}
    paths = {t: [s.path for s in sp.sources] for t, sp in specs.items()}
    assert "squeeze-ai-lab/TinyAgent-dataset" in paths["function-calling"]
    assert "data4elm/ELMB-FunctionCalling" in paths["function-calling"]
    assert "data4elm/ELMB-ChatRAG" in paths["rag"]
    assert all(sp.model == "sentence-transformers/all-MiniLM-L6-v2" for sp in specs.values())


def test_shared_gold_folders_load(shared_data):
    for sub, at_least in (
        ("function_calling", 3000),
        ("reasoning", 2000),
        ("roleplay", 2000),
        ("rag", 500),
    ):
        g = load_gold([str(shared_data / "gold" / sub)])
        assert len(g.docs) >= at_least and g.stats.balanced()
    elmb = load_gold([str(shared_data / "gold/reasoning/elmb_reasoning_validation.jsonl")])
    assert elmb.texts[0].startswith("Question: ") and "\nAnswer: " in elmb.texts[0]
