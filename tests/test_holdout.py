"""The cross-source split: whole sources held out, roles disjoint, ids stable, files readable."""

from __future__ import annotations

import json
import shutil

import pytest

from retriever.errors import InputError
from retriever.holdout import TASKS, load_split


def test_split_holds_out_whole_sources(shared_data):
    split = load_split(shared_data, test_corpus_limit=300)
    for task in TASKS:
        gold_sources = {r.source for r in split.records(task, "gold")}
        assert split.records(task, "heldout") and split.records(task, "eval")
        assert split.records(task, "planted")
        if task in ("function-calling", "reasoning"):
            # the held-out set is a source the gold never reads
            assert not gold_sources & {r.source for r in split.records(task, "heldout")}
    chars = {r.raw["character"] for r in split.records("roleplay", "gold")}
    held = {r.raw["character"] for r in split.records("roleplay", "heldout")}
    assert not chars & held and "Cleopatra" in held
    assert all("cancer" not in r.raw["question"].lower() for r in split.records("rag", "gold"))
    assert len(split.corpus("test")) == 300
    train_ids = {r.id for r in split.corpus("train")}
    assert not train_ids & {r.id for r in split.corpus("test")}


def test_split_is_stable_and_written(shared_data, tmp_path):
    a = load_split(shared_data, test_corpus_limit=50)
    b = load_split(shared_data, test_corpus_limit=50)
    assert [r.id for r in a.corpus("test")] == [r.id for r in b.corpus("test")]
    out = a.write(tmp_path / "split")
    rows = [json.loads(x) for x in (out / "eval" / "rag.jsonl").read_text().splitlines()]
    assert len(rows) == len(a.records("rag", "eval")) and rows[0]["text"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["corpus"]["test"]


def test_split_without_corpus_large_holds_out_a_corpus_file(shared_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shared_data / "gold", data / "gold")
    shutil.copytree(shared_data / "corpus", data / "corpus")
    split = load_split(data)
    assert {r.source for r in split.corpus("test")} == {"corpus/climblab_stream_first1000.jsonl"}
    assert "corpus/climblab_stream_first1000.jsonl" not in {r.source for r in split.corpus("train")}


def test_missing_data_is_one_line_error(tmp_path):
    with pytest.raises(InputError, match="RETRIEVER_SHARED_DATA"):
        load_split(tmp_path / "nowhere")
