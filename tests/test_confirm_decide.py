"""Decision rules, panel files and candidate selection: no models needed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from retriever.confirm.decide import DecisionRules, decide
from retriever.confirm.docs import CandidateRule, DocSet, TaskCandidates, open_docs
from retriever.confirm.panel import Score, load_panel, load_scores
from retriever.confirm.scorecard import update_scores_file
from retriever.errors import ConfigError, InputError


def _cands(sim, cand, neg, cutoff=0.5):
    return TaskCandidates(
        "t",
        np.asarray(sim, float),
        np.asarray(cand, bool),
        np.asarray(neg, bool),
        cutoff,
        "top 50% by similarity (>= 0.5000)",
    )


def test_decide_labels_each_document_with_its_reason():
    sim = [0.9, 0.8, 0.7, 0.6, 0.2, 0.1]
    cand = [1, 1, 1, 1, 0, 0]
    neg = [0, 0, 0, 0, 1, 0]
    corr = np.array([0.9, -0.4, 0.2, np.nan, np.nan, np.nan])
    d = decide(_cands(sim, cand, neg), corr, np.array([5, 5, 5, 4, 0, 0]), 5, DecisionRules())
    assert d.index.tolist() == [
        0,
        1,
        2,
        3,
        4,
    ]  # doc 5 (not candidate, not sampled) is not considered
    assert d.label == ["positive", "negative", "uncertain", "uncertain", "negative"]
    assert d.reason[0].startswith("positive:") and "spearman 0.900 >= 0.5" in d.reason[0]
    assert "similarity 0.9000" in d.reason[0]
    assert "-0.400 <= 0.0" in d.reason[1]
    assert "between 0.0 and 0.5" in d.reason[2]
    assert "not computed" in d.reason[3] and "4 of 5 models" in d.reason[3]
    assert "random non-candidate" in d.reason[4] and "0.2000 < cut 0.5000" in d.reason[4]
    assert math.isnan(d.correlation[4])
    assert d.counts() == {"positive": 1, "negative": 2, "uncertain": 2}


def test_decide_positive_top_fraction_limits_positives():
    corr = np.array([0.95, 0.9, 0.8, 0.7])
    rules = DecisionRules(positive_min=0.5, positive_top_fraction=0.5)
    d = decide(_cands([1, 1, 1, 1], [1] * 4, [0] * 4), corr, np.full(4, 5), 5, rules)
    assert d.label == ["positive", "positive", "uncertain", "uncertain"]
    assert "below the top-50% cut 0.900" in d.reason[2]


def test_decision_rules_are_checked():
    with pytest.raises(ConfigError, match="below positive_min"):
        DecisionRules(positive_min=0.1, negative_max=0.2)
    with pytest.raises(ConfigError, match="estimator"):
        DecisionRules(estimator="pearson")
    with pytest.raises(ConfigError):
        CandidateRule(top_fraction=0)


def _docset(sim: list[float]) -> DocSet:
    n = len(sim)
    return DocSet(
        ["scores"],
        "scores",
        [f"d{i}" for i in range(n)],
        ["s"] * n,
        list(range(n)),
        {"t": np.asarray(sim, float)},
        [],
        ["t"],
    )


def test_candidates_top_fraction_threshold_and_seeded_random_negatives():
    ds = _docset([0.1 * i for i in range(10)])  # d9 most similar
    tc = ds.select(["t"], CandidateRule(top_fraction=0.3, negatives_per_positive=1.0, seed=3))["t"]
    assert np.nonzero(tc.candidate)[0].tolist() == [7, 8, 9]
    assert tc.cutoff == pytest.approx(0.7)
    assert tc.random_negative.sum() == 3 and not (tc.random_negative & tc.candidate).any()
    again = _docset([0.1 * i for i in range(10)]).select(
        ["t"], CandidateRule(top_fraction=0.3, seed=3)
    )["t"]
    np.testing.assert_array_equal(again.random_negative, tc.random_negative)  # seeded
    th = ds.select(["t"], CandidateRule(top_fraction=0.3, threshold={"t": 0.45}))["t"]
    assert np.nonzero(th.candidate)[0].tolist() == [5, 6, 7, 8, 9]  # threshold wins
    assert ds.wanted_ids() == {"d5", "d6", "d7", "d8", "d9"}
    with pytest.raises(ConfigError, match="no similarity"):
        ds.select(["other"], CandidateRule(top_fraction=0.3))


def test_plain_corpus_every_doc_is_a_candidate_and_rejects_are_counted(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_bytes(
        b'{"id": "a", "text": "alpha"}\n{"id": "a", "text": "dup"}\nnot json\n{"id": "b", "text": '
        b'"  "}\n{"id": "c", "text": "gamma"}\n'
    )
    ds = open_docs([str(p)])
    assert ds.ids == ["a", "c"]
    assert sorted(r.reason for r in ds.rejected) == ["bad_json", "duplicate_id", "empty"]
    tc = ds.select(["t"], CandidateRule())["t"]
    assert tc.candidate.all() and not tc.random_negative.any() and np.isnan(tc.similarity).all()
    assert [d.text for d in ds.iter_docs({"c"})] == ["gamma"]
    with pytest.raises(InputError, match="does not exist"):
        open_docs([str(tmp_path / "missing.jsonl")])


# -- panels and scores -----------------------------------------------------------------------------
def _panel(tmp_path, body: str):
    p = tmp_path / "panel.toml"
    p.write_text(body)
    return p


def test_panel_loads_models_inline_and_file_scores(tmp_path):
    (tmp_path / "m1").mkdir()
    (tmp_path / "scores.csv").write_text(
        "model,task,metric,score\nm2,rag,acc,0.5\nm1,rag,acc,0.25\n"
    )
    p = _panel(
        tmp_path,
        """
name = "demo"
scores = "scores.csv"
[[models]]
name = "m1"
path = "m1"
[models.scores]
reasoning = 0.4
[[models]]
name = "m2"
path = "EleutherAI/pythia-160m"
max_length = 512
""",
    )
    panel = load_panel(p)
    assert panel.models[0].path == str(tmp_path / "m1")  # local folder resolved next to the panel
    assert panel.models[1].path == "EleutherAI/pythia-160m" and panel.models[1].max_length == 512
    names, err, metric = panel.errors("rag")
    assert names == ["m1", "m2"] and metric == "acc"
    np.testing.assert_allclose(err, [0.75, 0.5])  # error = 1 - accuracy
    assert panel.tasks() == ["rag", "reasoning"]
    with pytest.raises(ConfigError, match="scorecard"):
        panel.errors("roleplay")


def test_neg_bpb_scores_become_bpb_errors_and_scores_file_merges(tmp_path):
    f = tmp_path / "s.csv"
    update_scores_file(f, [Score("a", "t", "neg_bpb", -2.5), Score("b", "t", "neg_bpb", -3.0)])
    update_scores_file(f, [Score("a", "t", "neg_bpb", -2.0)])
    rows = {(s.model, s.metric): s for s in load_scores(f)}
    assert len(rows) == 2 and rows[("a", "neg_bpb")].score == -2.0
    assert rows[("b", "neg_bpb")].error == 3.0


@pytest.mark.parametrize(
    "body,match",
    [
        ("[[models]]\nname = 'a'\n", "needs a path"),
        ("[[models]]\nname = 'a b'\npath = 'x'\n", "name"),
        ("[[models]]\nname = 'a'\npath = 'x'\n[[models]]\nname = 'a'\npath = 'y'\n", "repeat"),
        ("[[models]]\nname = 'a'\npath = 'x'\nmax_len = 3\n", "unknown key"),
        ("[[models]]\nname = 'a'\npath = 'x'\n[models.scores]\nt = 1.5\n", r"\[0, 1\]"),
        ("models = []\n", "at least one"),
        ("colour = 1\n[[models]]\nname = 'a'\npath = 'x'\n", "unknown top-level"),
    ],
)
def test_bad_panels_raise_config_errors(tmp_path, body, match):
    with pytest.raises(ConfigError, match=match):
        load_panel(_panel(tmp_path, body))


def test_bad_scores_files_raise(tmp_path):
    (tmp_path / "s.csv").write_text("model,task,score\nghost,t,0.5\n")
    with pytest.raises(ConfigError, match="not in the panel"):
        load_panel(_panel(tmp_path, "scores = 's.csv'\n[[models]]\nname = 'a'\npath = 'x'\n"))
    (tmp_path / "s.csv").write_text("model,task,metric,score\na,t,f1,0.5\n")
    with pytest.raises(ConfigError, match="metric"):
        load_panel(_panel(tmp_path, "scores = 's.csv'\n[[models]]\nname = 'a'\npath = 'x'\n"))
    with pytest.raises(InputError, match="does not exist"):
        load_panel(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[[models]\n")
    with pytest.raises(InputError, match="TOML"):
        load_panel(tmp_path / "bad.toml")


def test_example_panel_of_real_models_loads_and_invents_no_scores():
    from pathlib import Path

    panel = load_panel(
        Path(__file__).resolve().parents[1] / "configs" / "panels" / "small-open.toml"
    )
    assert len(panel.models) >= 5 and all("/" in m.path for m in panel.models)  # Hub ids
    assert panel.scores == ()  # computed by the scorecard, never shipped
    assert panel.scores_file.endswith("small-open.scores.csv")
