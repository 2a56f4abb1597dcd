"""The one naming scheme of score columns and metadata keys (retriever/names.py)."""

from __future__ import annotations

import pytest

from retriever.names import (
    CANDIDATE,
    PROB,
    SCORE,
    SCORE_KINDS,
    SPARSE,
    SPARSE_TOPK,
    TOPK,
    canonical_score_name,
    first_score,
    score_kind,
    score_name,
    score_spellings,
    score_tasks,
    score_value,
    split_score_name,
)


@pytest.mark.parametrize("kind", SCORE_KINDS)
@pytest.mark.parametrize("task", ["fc", "function-calling", "my_task", "score_x", "a.b=c"])
def test_every_score_name_parses_back_to_its_kind_and_task(kind, task):
    name = score_name(kind, task)
    assert split_score_name(name) == (kind, task)
    assert score_kind(name) == kind
    assert score_tasks(["id", name, "n_chars"], kind) == [task]
    assert canonical_score_name(name) == name


def test_longest_kind_wins_and_other_names_are_not_scores():
    assert split_score_name("sparse_topk_fc") == (SPARSE_TOPK, "fc")
    # the one name the scheme cannot tell apart (documented): sparse_ of a task named topk_<x>
    assert split_score_name(score_name(SPARSE, "topk_x")) == (SPARSE_TOPK, "x")
    cols = ["id", "score_a", "sparse_topk_a", "sparse_a", "topk_a", "cluster_id", "score"]
    assert score_tasks(cols, SPARSE) == ["a"] and score_tasks(cols, TOPK) == ["a"]
    assert score_tasks(cols, SCORE) == ["a"]
    for other in ("id", "n_chars", "score", "score_", "quality", "cluster_id", "weight/fc"):
        assert split_score_name(other) is None and score_kind(other) is None


def test_legacy_metadata_keys_map_to_the_scheme():
    assert split_score_name("sim/fc") == (SCORE, "fc")
    assert split_score_name("simk/fc") == (TOPK, "fc")
    assert split_score_name("prob/fc") == (PROB, "fc")
    assert split_score_name("candidate/fc") == (CANDIDATE, "fc")
    assert canonical_score_name("sim/{pool}") == "score_{pool}"
    assert canonical_score_name("quality") == "quality"
    # a legacy spelling is read, never listed as a column
    assert score_kind("sim/fc") is None and score_tasks(["sim/fc"], SCORE) == []


def test_score_value_reads_either_spelling_and_only_finite_numbers():
    assert score_value({"prob_fc": 0.25}, "prob_fc") == 0.25
    assert score_value({"prob/fc": 0.25}, "prob_fc") == 0.25  # an old pool
    assert score_value({"prob_fc": 0.25}, "prob/fc") == 0.25  # an old --score-key
    assert score_value({"sim/fc": 0.5}, "score_fc") == 0.5
    assert score_value({"prob_fc": 0.1, "prob/fc": 0.9}, "prob_fc") == 0.1  # the scheme first
    assert score_value({"quality": 3}, "quality") == 3.0
    for bad in (True, float("nan"), float("inf"), "0.5", None):
        assert score_value({"prob_fc": bad}, "prob_fc") is None
    assert score_value({"prob_rp": 0.5}, "prob_fc") is None


def test_spellings_resolved_once_read_as_score_value_does():
    """A scan resolves its score keys once (score_spellings) and reads rows with first_score: the
    same value as score_value key by key."""
    assert score_spellings("prob_fc") == ["prob_fc", "prob/fc"]
    assert score_spellings("sim/fc") == ["sim/fc", "score_fc"]
    assert score_spellings("quality") == ["quality"]
    keys = ["score_fc", "prob_fc", "quality"]
    lookups = [s for k in keys for s in score_spellings(k)]
    rows = [
        {"sim/fc": 0.5, "prob_fc": 0.1},
        {"score_fc": float("nan"), "sim/fc": 0.7},
        {"prob/fc": 0.2, "quality": 3},
        {"score_fc": True, "quality": "x"},
        {"quality": 4},
        {},
    ]
    for row in rows:
        expected = next((v for k in keys if (v := score_value(row, k)) is not None), None)
        assert first_score(row, lookups) == expected
    assert [first_score(r, lookups) for r in rows] == [0.5, 0.7, 0.2, None, 4.0, None]
