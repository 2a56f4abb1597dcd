"""Decontamination: 13-gram and exact overlap of evaluation records with gold and training sets."""

from __future__ import annotations

import json
from pathlib import Path

from retriever.evaluation.decontam import (
    check_overlap,
    eval_texts,
    fingerprint_eval,
    fingerprint_files,
    ngram_hashes,
    words,
)

Q1 = (
    "A coin is heads up. Alice flips the coin. Bob does not flip the coin. Carol flips the "
    "coin. Is the coin still heads up?"
)
Q2 = (
    "Given the function get_weather with parameters city and unit, find the weather in Paris today."
)


def _eval_file(path: Path) -> Path:
    rows = [
        {"id": "r0", "question": Q1, "choices": ["yes", "no"], "answer": 0},
        {"id": "r1", "question": Q2, "choices": ["get_weather(city='Paris')", "x()"], "answer": 0},
        {"id": "r2", "question": "Short one?", "choices": ["a", "b"], "answer": 1},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_normalization_and_ngrams():
    assert words("Hello, World! it's 3.5") == ["hello", "world", "it", "s", "3", "5"]
    assert len(ngram_hashes(" ".join(f"w{i}" for i in range(20)))) == 8
    assert ngram_hashes("too short") == set()
    # punctuation and case do not hide an overlap
    assert ngram_hashes(Q1) == ngram_hashes(Q1.upper().replace(".", " ;"))


def test_contaminated_evaluation_set_is_caught(tmp_path):
    fp = fingerprint_files({"reasoning": _eval_file(tmp_path / "eval.jsonl")})
    gold = [
        ("g0", "Some gold text. " + Q1.lower() + " Extra words after it."),  # 13-gram overlap
        ("g1", "Question: Short one?\nAnswer: b"),  # exact match of a short record
        ("g2", "An unrelated worked example: 3 + 5 = 8 apples in the basket today."),
    ]
    rep = check_overlap(fp, gold)
    t = rep["tasks"]["reasoning"]
    assert not rep["clean"] and rep["docs"] == 3 and rep["docs_contaminated"] == 2
    assert t["records"] == 3 and t["contaminated"] == 2
    assert t["ngram_overlap"] == 2 and t["exact_match"] == 1  # the short record: exact and whole
    assert ["r0", "g0"] in t["examples"] and ["r2", "g1"] in t["examples"]
    assert check_overlap(fp, [gold[2]])["clean"]


def test_a_near_miss_is_not_contaminated():
    fp = fingerprint_eval({"fc": [("e", " ".join(f"tok{i}" for i in range(30)))]})
    # 12 consecutive words in common (one short of 13): not an overlap
    doc = (
        " ".join(f"tok{i}" for i in range(12))
        + " other "
        + " ".join(f"tok{i}" for i in range(13, 24, 2))
    )
    assert not fp.contaminated(doc)
    assert fp.contaminated("prefix " + " ".join(f"tok{i}" for i in range(5, 18)))


def test_eval_texts_render_the_prompt_and_answer(tmp_path):
    texts = eval_texts(_eval_file(tmp_path / "e.jsonl"), "reasoning")
    assert texts[0] == ("r0", f"Question: {Q1}\nAnswer: yes")
    plain = tmp_path / "p.jsonl"
    plain.write_text(json.dumps({"text": "plain held-out text"}) + "\n")
    assert eval_texts(plain)[0][1] == "plain held-out text"


def test_build_dataset_drops_contaminated_documents(tmp_path):
    from retriever.dataset import DatasetBuilder

    pool = tmp_path / "pools" / "reasoning"
    pool.mkdir(parents=True)
    docs = [
        {
            "id": "leak",
            "text": "Worked problem: " + Q1 + " Answer: yes.",
            "metadata": {"score": 0.9},
        },
        {
            "id": "ok1",
            "text": "Tom has 3 apples and buys 5 more, so he has 8.",
            "metadata": {"score": 0.5},
        },
        {
            "id": "ok2",
            "text": "A train goes 60 km per hour for 2 hours: 120 km.",
            "metadata": {"score": 0.4},
        },
    ]
    (pool / "part.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    ev = _eval_file(tmp_path / "eval.jsonl")
    b = DatasetBuilder(
        {"reasoning": str(pool)},
        {"reasoning": 1.0},
        10_000,
        formats=("parquet",),
        decontaminate={"reasoning": str(ev)},
        progress=False,
    )
    s = b.build(tmp_path / "out")
    c = s["counts"]
    assert c["dropped/contaminated"] == 1 and c["kept"] == 2 and s["balanced"]
    assert c["seen"] == c["kept"] + c["dropped/contaminated"] + c.get("dropped/budget", 0)
    import pyarrow.parquet as pq

    ids = pq.read_table(tmp_path / "out" / "selection.parquet").column("id").to_pylist()
    assert "leak" not in ids and set(ids) == {"ok1", "ok2"}
    plain = DatasetBuilder(
        {"reasoning": str(pool)}, {"reasoning": 1.0}, 10_000, formats=("parquet",), progress=False
    ).build(tmp_path / "plain")
    assert plain["counts"]["kept"] == 3


def test_offline_gold_is_disjoint_from_the_eval_sets(shared_data, tmp_path):
    from retriever.evaluation import local_eval_sets
    from retriever.holdout import load_split

    fp = fingerprint_files(
        {t: p for t, p in local_eval_sets(tmp_path / "sets", shared_data).items()}
    )
    split = load_split(shared_data)
    for task in ("function-calling", "reasoning"):
        gold = [(r.id, r.text) for r in split.records(task, "gold")]
        rep = check_overlap(fp, gold)
        assert rep["tasks"][task]["exact_match"] == 0, rep["tasks"][task]["examples"]


def test_offline_config_index_gold_holds_out_the_evaluation_records(shared_data, tmp_path):
    from retriever.evaluation import local_eval_sets
    from retriever.gold import GoldLoader
    from retriever.run.config import load_run_config
    from retriever.run.job import RunJob

    fp = fingerprint_files(local_eval_sets(tmp_path / "sets", shared_data))
    job = RunJob(load_run_config(Path(__file__).resolve().parents[1] / "configs" / "offline.toml"))
    for t in job.cfg.tasks:
        assert all(s.path == f"holdout:{t.name}" for s in job.task_spec(t).sources)
        gold = GoldLoader(job.task_spec(t).sources).load()
        rep = check_overlap(fp, [(d.id, d.text) for d in gold.docs])
        for task, row in rep["tasks"].items():
            assert row["exact_match"] == 0, (t.name, task, row["examples"])
            # measured: one ELMB FunctionCalling record shares a 13-gram (a tool description)
            # with the xLAM gold; none for the other tasks
            assert row["share"] <= 0.01, (t.name, task, row)


def test_cli_reports_overlap_and_fails_on_request(tmp_path, capsys):
    from retriever.cli import main

    ev = _eval_file(tmp_path / "eval.jsonl")
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        json.dumps({"text": "Copied: " + Q2}) + "\n" + json.dumps({"text": "fine"}) + "\n"
    )
    assert (
        main(["decontam", "--eval", f"function-calling={ev}", "--against", str(gold), "--json"])
        == 0
    )
    rep = json.loads(capsys.readouterr().out)
    assert rep["docs"] == 2 and rep["tasks"]["function-calling"]["contaminated"] == 1
    assert (
        main(["decontam", "--eval", f"function-calling={ev}", "--against", str(gold), "--fail"])
        == 1
    )
    assert "CONTAMINATED" in capsys.readouterr().out
    assert main(["decontam", "--eval", "nonsense", "--against", str(gold)]) == 2


def test_a_bad_eval_item_names_the_option_it_came_from(tmp_path, capsys):
    from retriever.cli import main

    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"text": "fine"}) + "\n")
    assert main(["decontam", "--eval", "nonsense", "--against", str(gold)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--eval 'nonsense': write TASK=FILE or elmb") and len(err.splitlines()) == 1
    argv = ["build-dataset", "--pool", f"fc={tmp_path}", "--mixture", "equal", "--budget", "1K"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--decontaminate", "rag"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--decontaminate 'rag': write TASK=FILE or elmb")
    assert not (tmp_path / "out").exists()  # refused before anything is written
