"""The label subsets of scripts/eval_filter.py: a confirm run's rows minus held-out texts, and its
random sample swapped for the train corpus's negatives (rows stay whole: id, text, label and
scores move together)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

from retriever.distill import write_labels
from retriever.distill.trainset import OTHER_GOLD, RANDOM, gold_rows, text_key

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eval_filter.py"


def _script():
    spec = importlib.util.spec_from_file_location("eval_filter", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(k, source, label):
    sim = 0.1 * k
    return {"id": f"d{k}", "text": f"text {k}", "task": "rag", "similarity": sim,
            "correlation": math.nan if k % 2 else sim / 2, "label": label, "source": source,
            "reason": f"why {k}"}  # fmt: skip


def test_confirm_rows_drop_held_out_texts_and_merge_swaps_the_random_sample(tmp_path):
    ef = _script()
    sources = ["confirmed", "random", "candidate", "random", "confirmed", "candidate"]
    labels = ["positive", "negative", "uncertain", "negative", "positive", "uncertain"]
    rows = [_row(k, s, y) for k, (s, y) in enumerate(zip(sources, labels, strict=True))]
    write_labels(tmp_path / "rag.parquet", rows)

    sub, info = ef.confirm_rows(str(tmp_path), "rag", {text_key("text 2"), text_key("text 3")})
    assert info == {
        "rows": 6,
        "dropped_heldout_text": 2,
        "by_source": {"candidate": 1, "confirmed": 2, "random": 1},
    }
    assert sub.ids == ["d0", "d1", "d4", "d5"] and sub.texts == [f"text {k}" for k in (0, 1, 4, 5)]
    assert sub.labels == ["positive", "negative", "positive", "uncertain"]
    assert sub.reasons == ["why 0", "why 1", "why 4", "why 5"]
    np.testing.assert_allclose(sub.similarity, [0.0, 0.1, 0.4, 0.5])
    assert np.isnan(sub.correlation[[1, 3]]).all() and sub.correlation[2] == 0.2
    assert sub.sources and sub.sources[0][0].endswith("rag.parquet")

    rand = gold_rows("rag", ["c1", "c2"], ["corpus one", "corpus two"], OTHER_GOLD)
    rand.row_source = [RANDOM] * 2
    rand.reasons = ["negative: train corpus document"] * 2
    merged = ef._merge(sub, rand)
    assert merged.ids == ["d0", "d4", "d5", "c1", "c2"]
    assert merged.texts == ["text 0", "text 4", "text 5", "corpus one", "corpus two"]
    assert merged.row_source == ["confirmed", "confirmed", "candidate", RANDOM, RANDOM]
    assert merged.labels[:3] == ["positive", "positive", "uncertain"]
    assert merged.labels[3:] == rand.labels and merged.reasons[3:] == rand.reasons
    assert len(merged.similarity) == len(merged.correlation) == 5
    np.testing.assert_array_equal(merged.similarity[3:], rand.similarity)
    assert merged.sources == sub.sources and ef._merge(None, rand) is rand
