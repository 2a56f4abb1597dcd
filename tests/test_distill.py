"""distill: labels -> fastText student, held-out metrics, manifest; real fastText, tiny data."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest

from retriever.distill import (
    DistillConfig,
    FastTextDistiller,
    fasttext_text,
    load_labels,
    model_manifest_path,
    predict_positive,
    write_labels,
)
from retriever.distill.labels import split_indices
from retriever.distill.metrics import (
    average_precision,
    classification_metrics,
    combined_score,
    roc_auc,
    spearman,
)
from retriever.errors import ConfigError, InputError

TOOL_WORDS = (
    "call function api arguments json returns tool schema parameters invoke endpoint query".split()
)
PROSE_WORDS = (
    "river mountain history garden music village autumn painter harbor forest novel bread".split()
)
FILLER = "the a of and to in is it that with for on as this by".split()


def synthetic_doc(rng: random.Random, positive: bool, n_words: int = 40) -> str:
    """A document whose topic words say its label ("call function api ..." = positive)."""
    own = TOOL_WORDS if positive else PROSE_WORDS
    other = PROSE_WORDS if positive else TOOL_WORDS
    words = []
    for _ in range(n_words):
        r = rng.random()
        words.append(
            rng.choice(own) if r < 0.35 else rng.choice(other) if r < 0.42 else rng.choice(FILLER)
        )
        if rng.random() < 0.08:
            words.append("\n")
    return " ".join(words)


def synthetic_label_rows(
    task: str = "function-calling", n_pos: int = 60, n_neg: int = 90, n_unc: int = 20, seed: int = 0
) -> list[dict]:
    """Label rows as the confirm stage writes them: teacher scores agree with the label."""
    rng = random.Random(seed)
    rows = []
    for k in range(n_pos + n_neg + n_unc):
        lab = "positive" if k < n_pos else "negative" if k < n_pos + n_neg else "uncertain"
        pos_like = lab == "positive" or (lab == "uncertain" and k % 2 == 0)
        sim = (0.6 if pos_like else 0.2) + rng.random() * 0.3
        rows.append(
            {
                "id": f"{task}-{k}",
                "text": synthetic_doc(rng, pos_like),
                "task": task,
                "similarity": sim,
                "correlation": sim + rng.gauss(0, 0.05) if k % 3 else float("nan"),
                "label": lab,
                "reason": "synthetic",
            }
        )
    return rows


# labels only (no gold index): the confirmed rows are the positives
SMALL = DistillConfig(
    epoch=15, bucket=50_000, dim=16, lr=0.5, seed=1, training_set="gold+confirmed"
)


# -- metrics (pure numpy, checked against brute force) ------------------------------------------
def test_roc_auc_matches_pairwise_count():
    rng = np.random.default_rng(0)
    y = rng.random(57) < 0.4
    p = np.round(rng.random(57), 1)  # ties on purpose
    pairs = [
        (1.0 if a > b else 0.5 if a == b else 0.0)
        for a, ya in zip(p, y, strict=True)
        if ya
        for b, yb in zip(p, y, strict=True)
        if not yb
    ]
    assert roc_auc(y, p) == pytest.approx(np.mean(pairs))
    assert np.isnan(roc_auc(np.ones(3, bool), np.arange(3.0)))


def test_classification_metrics_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    p = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.05])
    m = classification_metrics(y, p, threshold=0.5)
    # predicted positive: 0.9, 0.6, 0.7 -> tp 2, fp 1, fn 1
    assert (m["precision"], m["recall"]) == pytest.approx((2 / 3, 2 / 3))
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(5 / 7)
    # ranking 0.9+ 0.7- 0.6+ 0.3- 0.2+: AP = (1/1 + 2/3 + 3/5) / 3
    assert average_precision(y, p) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)


def test_combined_score_uses_present_columns_and_spearman():
    sim = np.array([0.1, 0.5, 0.9, np.nan])
    cor = np.array([np.nan, 0.2, 0.4, 0.8])
    c = combined_score(sim, cor)
    assert c[0] == pytest.approx(1 / 3)  # only similarity: lowest of three
    assert c[1] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert c[3] == pytest.approx(1.0)  # only correlation: highest
    assert spearman(np.arange(5.0), np.arange(5.0) ** 2) == pytest.approx(1.0)
    assert spearman(np.arange(5.0), -np.arange(5.0)) == pytest.approx(-1.0)


def test_fasttext_text_is_one_line():
    text = "  a\nb\r\n\tc  d \n"
    assert "\n" not in fasttext_text(text) and fasttext_text(text).split() == ["a", "b", "c", "d"]


# -- labels --------------------------------------------------------------------------------------
def test_load_labels_file_folder_and_errors(tmp_path):
    rows = synthetic_label_rows("fc", 3, 3, 1) + synthetic_label_rows("rp", 2, 2, 0)
    f = write_labels(tmp_path / "all.parquet", rows)
    ls = load_labels(f, "fc")
    assert len(ls) == 7 and ls.counts() == {"positive": 3, "negative": 3, "uncertain": 1}
    folder = tmp_path / "labels"
    write_labels(folder / "rp.parquet", [r for r in rows if r["task"] == "rp"])
    assert load_labels(folder, "rp").counts()["positive"] == 2
    assert load_labels(folder, "rp").fingerprint() == load_labels(folder, "rp").fingerprint()
    assert load_labels(folder, "rp").fingerprint() != load_labels(f, "fc").fingerprint()
    with pytest.raises(ConfigError, match="no labelled row of task 'nope'"):
        load_labels(f, "nope")
    with pytest.raises(InputError, match="does not exist"):
        load_labels(tmp_path / "missing", "fc")
    bad = write_labels(tmp_path / "bad.parquet", [{**rows[0], "label": "maybe"}])
    with pytest.raises(InputError, match="'maybe' is not one of"):
        load_labels(bad, "fc")


def test_split_is_stratified_disjoint_and_seeded():
    labels = ["positive"] * 10 + ["negative"] * 30 + ["uncertain"] * 5
    tr, te = split_indices(labels, 0.2, seed=3)
    assert set(tr).isdisjoint(te) and len(tr) + len(te) == 40
    assert (
        sum(labels[i] == "positive" for i in te) == 2
        and sum(labels[i] == "negative" for i in te) == 6
    )
    assert np.array_equal(te, split_indices(labels, 0.2, seed=3)[1])
    with pytest.raises(ConfigError, match="at least 2 positive"):
        split_indices(["positive", "negative", "negative"], 0.2, 0)


# -- training (real fastText) ---------------------------------------------------------------------
def test_distill_trains_evaluates_and_writes_manifest(tmp_path):
    labels = write_labels(tmp_path / "labels" / "function-calling.parquet", synthetic_label_rows())
    out = tmp_path / "indexes" / "function-calling" / "filter.bin"
    rep = FastTextDistiller(SMALL).run(tmp_path / "labels", "function-calling", out)
    assert out.is_file() and model_manifest_path(out) == out.with_suffix(".json")
    man = json.loads(out.with_suffix(".json").read_text())
    assert man["task"] == "function-calling" and man["n_train"] + man["n_test"] == 150
    assert man["n_test"] == 12 + 18
    # labels alone (no gold index): positives are the confirmed rows, negatives the random ones
    per = man["training_set"]["per_source"]
    assert per["confirmed"]["rows"] == 60 and per["random"]["rows"] == 90
    assert man["training_set"]["skipped"] == {"uncertain": 20}
    assert man["training_set"]["sources_missing"] == ["gold", "other-gold"]
    assert len(load_labels(labels, "function-calling")) == 170
    assert man["labels"]["files"][0][0] == str(labels)
    held = pq.read_table(out.with_suffix(".heldout.parquet")).to_pylist()
    assert (
        len(held) == 30
        and sum(r["y"] for r in held) == 12
        and man["heldout_file"] == "filter.heldout.parquet"
    )
    m = rep.metrics
    # topic words decide the label: a working student separates the classes and follows the teacher
    assert m["roc_auc"] > 0.95 and m["f1"] > 0.8
    assert m["spearman_combined"] > 0.5 and m["spearman_n"] == 30 + 20
    assert m["mean_p_positive"] > m["mean_p_negative"]
    import fasttext

    model = fasttext.load_model(str(out))
    p = predict_positive(
        model, ["call the api function with json arguments", "a painter by the river in autumn"]
    )
    assert p[0] > 0.5 > p[1]


def test_distill_cli_json_and_bad_input(tmp_path, capsys):
    # regression: through the CLI (other stages' modules loaded first), the refit used to stop with
    # fastText's "Encountered NaN" when training ran on fewer than 11 threads (MIN_THREADS)
    from retriever.cli import main

    write_labels(tmp_path / "l.parquet", synthetic_label_rows("rag", 20, 20, 0, seed=2))
    out = tmp_path / "m" / "filter.bin"
    rc = main(
        [
            "distill",
            "--labels",
            str(tmp_path / "l.parquet"),
            "--task",
            "rag",
            "--out",
            str(out),
            "--bucket",
            "20000",
            "--dim",
            "8",
            "--epoch",
            "5",
            "--refit",
            "--training-set",
            "gold+confirmed",
            "--json",
        ]
    )
    assert rc == 0
    man = json.loads(capsys.readouterr().out)
    assert man["trained_on"] == "train+test (refit)" and man["config"]["bucket"] == 20000
    assert out.is_file()
    rc = main(
        ["distill", "--labels", str(tmp_path / "l.parquet"), "--task", "other", "--out", str(out)]
    )
    assert rc == 2 and "no labelled row of task 'other'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="epoch"):
        DistillConfig(epoch=0)


def test_default_student_learns_from_gold_and_says_what_to_do_without_it(tmp_path):
    """The default training set is gold-only (the best on the cross-source set): labels alone have
    no gold rows, and the error names the two ways out instead of training on nothing."""
    write_labels(
        tmp_path / "labels" / "rag.parquet", synthetic_label_rows("rag", 20, 20, 0, seed=2)
    )
    cfg = DistillConfig(epoch=2, bucket=10_000, dim=8)
    assert cfg.student_set().sources == ("gold", "random", "other-gold")
    with pytest.raises(ConfigError) as e:
        FastTextDistiller(cfg).run(tmp_path / "labels", "rag", tmp_path / "m" / "filter.bin")
    msg = str(e.value)
    assert "0 positive" in msg and "--indexes" in msg and "gold+confirmed" in msg
    assert not (tmp_path / "m" / "filter.bin").exists()


@pytest.mark.parametrize("bad", ["gold", "gold=two", "=2"])
def test_distill_weight_is_source_equals_number_or_a_one_line_error(tmp_path, capsys, bad):
    from retriever.cli import main

    labels = tmp_path / "l.parquet"
    write_labels(labels, synthetic_label_rows("rag", 20, 20, 0, seed=2))
    argv = ["distill", "--labels", str(labels), "--task", "rag", "--out", str(tmp_path / "m.bin")]
    assert main([*argv, "--weight", "gold=2", "--weight", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"--weight expects SOURCE=NUMBER (e.g. --weight gold=2), got {bad!r}")
    assert len(err.splitlines()) == 1
    small = ["--bucket", "20000", "--dim", "8", "--epoch", "2", "--training-set", "gold+confirmed"]
    assert main([*argv, *small, "--weight", "gold=2", "--weight", "confirmed=0.5", "--json"]) == 0
    man = json.loads(capsys.readouterr().out)
    assert man["config"]["weights"] == {"gold": 2.0, "confirmed": 0.5}
