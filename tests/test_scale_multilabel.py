"""One-pass filtering: a multi-label (one-vs-all) fastText student for every task, scored in one
call."""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import write_jsonl

from retriever.batch_filter import BatchFilter, FastTextScorer, FilterConfig, resolve_models
from retriever.distill import DistillConfig, write_labels
from retriever.distill.multilabel import MultiLabelDistiller, predict_tasks, task_label
from retriever.errors import ConfigError, ModelMismatchError

WORDS = {
    "tools": ["call", "function", "api", "json", "argument", "tool", "invoke", "schema"],
    "math": ["sum", "apples", "minus", "equals", "times", "divide", "count", "total"],
    "story": ["dragon", "castle", "knight", "whispered", "forest", "queen", "sword", "cried"],
}
FILLER = ["the", "a", "of", "and", "to", "in", "is", "it", "on", "was", "city", "park", "bread"]


def _doc(rng: random.Random, topic: str | None, n: int = 30) -> str:
    own = WORDS[topic] if topic else []
    return " ".join(
        rng.choice(own) if own and rng.random() < 0.3 else rng.choice(FILLER) for _ in range(n)
    )


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    """Three tasks; shared web negatives (same ids in every task's set) plus each task's
    positives."""
    root = tmp_path_factory.mktemp("ml")
    rng = random.Random(0)
    web = [(f"web-{i}", _doc(rng, None)) for i in range(90)]
    for t in WORDS:
        rows = [
            {"id": f"{t}-{i}", "text": _doc(rng, t), "task": t, "label": "positive"}
            for i in range(60)
        ]
        rows += [{"id": i, "text": x, "task": t, "label": "negative"} for i, x in web]
        rows += [
            {"id": f"{t}-u{i}", "text": _doc(rng, t), "task": t, "label": "uncertain"}
            for i in range(5)
        ]
        write_labels(root / "labels" / f"{t}.parquet", rows)
    return root


SMALL = DistillConfig(
    epoch=15,
    bucket=50_000,
    dim=16,
    lr=0.5,
    seed=1,
    test_fraction=0.25,
    training_set="gold+confirmed",
)


def test_multilabel_student_matches_per_task_students_on_the_same_labels(labels):
    out = labels / "filters" / "multilabel" / "filter.bin"
    rep = MultiLabelDistiller(SMALL).run(labels / "labels", list(WORDS), out, compare=True)
    assert out.exists() and rep.manifest["kind"] == "fasttext-multilabel"
    import fasttext

    model = fasttext.load_model(str(out))
    assert {task_label(t) for t in WORDS} | {"__label__none"} == set(model.labels)
    for t in WORDS:
        # held-out rows of every task are never trained on; the multi-label model is about as good
        assert rep.metrics[t]["roc_auc"] > 0.9 and rep.per_task[t]["roc_auc"] > 0.9
        assert abs(rep.auc_gap()[t]) < 0.05
        assert (
            len(rep.heldout[t]["y"]) == rep.manifest["n_heldout"][t] == 37
        )  # round(25% of 60) + round(25% of 90)
    # the probabilities of one text are independent sigmoids, one per task (one-vs-all)
    p = predict_tasks(model, ["call the function api with a json argument"], list(WORDS))
    assert p.shape == (1, 3) and p[0, 0] > 0.5 > max(p[0, 1], p[0, 2])
    with pytest.raises(ConfigError, match="distinct"):
        MultiLabelDistiller(SMALL).run(labels / "labels", ["tools", "tools"], out)


def test_filter_scores_every_task_of_a_multilabel_model_in_one_call(labels, tmp_path):
    out = labels / "filters" / "multilabel" / "filter.bin"
    MultiLabelDistiller(SMALL).run(labels / "labels", list(WORDS), out)
    shared = {t: str(out) for t in WORDS}
    scorer = FastTextScorer(shared)
    ((model, pairs, norm),) = scorer._loaded()  # one model file -> one entry
    calls = []
    orig = model.predict
    model.predict = lambda *a, **k: calls.append(1) or orig(*a, **k)
    try:
        rng = random.Random(5)
        texts = [_doc(rng, t) for t in WORDS for _ in range(20)]
        probs = scorer.score_texts(texts).probs
    finally:
        model.predict = orig
    assert len(calls) == 1 and probs.shape == (60, 3)
    assert norm == SMALL.normalization  # the filter reads how the student saw its texts
    np.testing.assert_allclose(probs, predict_tasks(model, texts, list(WORDS), 0, norm), atol=1e-6)
    assert (probs.argmax(axis=1) == np.repeat(np.arange(3), 20)).mean() > 0.9

    # the whole batch filter with one model file: per-task thresholds and pools as before
    rng = random.Random(9)
    write_jsonl(
        tmp_path / "c" / "a.jsonl",
        [{"id": f"{t}{i}", "text": _doc(rng, t)} for t in WORDS for i in range(15)],
    )
    rep = BatchFilter(
        FilterConfig(
            tasks=tuple(WORDS), models=shared, threshold={"tools": 0.5, "math": 0.5, "story": 0.9}
        )
    ).run([str(tmp_path / "c")], tmp_path / "pools", workers=1)
    kept = rep.totals["kept"]
    # 15 documents of each topic; story's stricter threshold keeps fewer of its own
    assert all(8 <= kept[t] <= 30 for t in ("tools", "math")) and rep.totals["balanced"]
    assert 3 <= kept["story"] < min(kept["tools"], kept["math"])
    with pytest.raises(
        ModelMismatchError, match="multi-label"
    ):  # a task the model was not trained for
        resolve_models(["other"], {"other": str(out)})
