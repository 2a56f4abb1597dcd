"""The student's training set: sources, weights by replication, split by source, checks, buckets."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_distill import synthetic_doc

from retriever.distill import DistillConfig, FastTextDistiller, load_labels, write_labels
from retriever.distill.checks import student_checks
from retriever.distill.labels import LabelSet
from retriever.distill.trainset import (
    StudentSetConfig,
    bucket_for,
    build_student_set,
    gold_rows,
    index_similarity,
    infer_source,
    split_by_source,
    text_key,
)
from retriever.errors import ConfigError


def _random_rows(task: str, texts: list[str]) -> list[dict]:
    """The confirm stage's random non-candidate negatives of ``task``, as labels rows."""
    return [
        {
            "id": f"w{k}",
            "text": text,
            "task": task,
            "label": "negative",
            "similarity": 0.1,
            "source": "random",
            "reason": "negative: random non-candidate",
        }
        for k, text in enumerate(texts)
    ]


def _json_call_rows(seed: int, n: int = 30) -> list[dict]:
    """``n`` xLAM-style JSON calls (positive) and ``n`` synthetic web documents (negative)."""
    rng = random.Random(seed)
    rows = [
        {
            "id": f"p{k}",
            "text": f'{{"name": "f{k}", "parameters": {{"x": {k}}}}}',
            "task": "t",
            "label": "positive",
        }
        for k in range(n)
    ]
    return rows + [
        {"id": f"n{k}", "text": synthetic_doc(rng, False), "task": "t", "label": "negative"}
        for k in range(n)
    ]


def _labels(task="t", n_conf=10, n_hard=8, n_rand=30, n_unc=4, seed=0) -> LabelSet:
    rng = random.Random(seed)
    rows = []
    for _ in range(n_conf):
        rows.append(("positive", "confirmed", 0.7, 0.6, synthetic_doc(rng, True)))
    for k in range(n_hard):
        rows.append(("negative", "hard-negative", 0.6, -0.2 - 0.1 * k, synthetic_doc(rng, False)))
    for _ in range(n_rand):
        rows.append(("negative", "random", 0.1, float("nan"), synthetic_doc(rng, False)))
    for _ in range(n_unc):
        rows.append(("uncertain", "candidate", 0.6, 0.1, synthetic_doc(rng, True)))
    return LabelSet(
        task=task,
        ids=[f"d{k}" for k in range(len(rows))],
        texts=[r[4] for r in rows],
        labels=[r[0] for r in rows],
        similarity=np.array([r[2] for r in rows]),
        correlation=np.array([r[3] for r in rows]),
        sources=[["l.parquet", "x"]],
        row_source=[r[1] for r in rows],
        reasons=[f"{r[0]}: {r[1]}" for r in rows],
    )


def _gold(task="t", n=20, source="gold", seed=1):
    rng = random.Random(seed)
    texts = [synthetic_doc(rng, source == "gold") for _ in range(n)]
    return gold_rows(task, [f"g{seed}-{k}" for k in range(n)], texts, source, np.full(n, 0.8))


def test_sources_variants_and_counts():
    lab, gold, other = _labels(), _gold(), _gold(source="other-gold", seed=2)
    ss = build_student_set("t", lab, gold, other, StudentSetConfig("gold+confirmed+hard"))
    per = ss.summary["per_source"]
    assert {
        s: per[s]["rows"] for s in ("gold", "confirmed", "random", "other-gold", "hard-negative")
    } == {"gold": 20, "confirmed": 10, "random": 30, "other-gold": 20, "hard-negative": 8}
    assert ss.summary["skipped"] == {"uncertain": 4}
    assert set(ss.rows.labels) == {"positive", "negative"}
    # gold-only keeps the gold and the negatives that are not candidates
    g = build_student_set("t", lab, gold, other, StudentSetConfig("gold-only"))
    assert sorted(set(g.rows.row_source)) == ["gold", "other-gold", "random"]
    assert g.summary["skipped"]["source confirmed not used"] == 10
    # hard negatives only below the confident cut: correlations -0.2 .. -0.9, cut -0.5
    h = build_student_set(
        "t", lab, gold, other, StudentSetConfig(("gold", "hard-negative"), hard_negative_max=-0.5)
    )
    assert h.summary["per_source"]["hard-negative"]["rows"] == 5  # -0.5 .. -0.9 (float: -0.5 in)
    with pytest.raises(ConfigError, match="unknown training-set source"):
        StudentSetConfig(("gold", "golden"))
    with pytest.raises(ConfigError, match="not one of"):
        StudentSetConfig("everything")
    with pytest.raises(ConfigError, match="0 positive"):
        build_student_set("t", None, None, other, StudentSetConfig("gold-only"))


def test_weights_are_replicated_lines_and_classes_balance():
    lab, gold, other = _labels(), _gold(), _gold(source="other-gold", seed=2)
    cfg = StudentSetConfig("gold+confirmed", weights={"gold": 2.0, "confirmed": 0.5}, balance=True)
    ss = build_student_set("t", lab, gold, other, cfg)
    src = np.array(ss.rows.row_source)
    assert set(ss.copies[src == "gold"].tolist()) <= {2, 3}  # 2 x 50/45, the class scale-up
    assert set(ss.copies[src == "confirmed"].tolist()) <= {0, 1}  # half subsampled, seeded
    pos = np.array([x == "positive" for x in ss.rows.labels])
    # 45 positive-weight (40 gold + ~5 confirmed) vs 50 negatives: positives scaled up, every
    # negative kept once
    assert (ss.copies[~pos] == 1).all()
    assert abs(int(ss.copies[pos].sum()) - int(ss.copies[~pos].sum())) <= 0.2 * ss.copies[pos].sum()
    assert ss.summary["per_source"]["_class_scale"]["negative"] == 1.0
    again = build_student_set("t", lab, gold, other, cfg)
    assert np.array_equal(ss.copies, again.copies)
    unbalanced = build_student_set("t", lab, gold, other, StudentSetConfig())
    assert (unbalanced.copies == 1).all() and unbalanced.summary["lines"] == len(unbalanced)


def test_both_students_train_through_one_core(tmp_path):
    """The per-task and the multi-label student write fastText's training file through one core
    (distill.fit): the same rows and copies give the same bytes and buckets, each row written
    ``copies`` times, cut and normalized; their predictions agree on a binary model."""
    from retriever.distill.labels import fasttext_text
    from retriever.distill.multilabel import MultiLabelDistiller, predict_tasks
    from retriever.distill.train import predict_positive

    cfg = DistillConfig(
        epoch=2,
        dim=8,
        seed=3,
        max_chars=60,
        normalization="words",
        training_set="gold+confirmed",
        weights={"gold": 2.0, "confirmed": 0.5},
    )
    lab, gold, other = _labels(), _gold(), _gold(source="other-gold", seed=2)
    ss = build_student_set("t", lab, gold, other, cfg.student_set())
    rows, idx = ss.rows, np.arange(len(ss))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    m1, b1 = FastTextDistiller(cfg).fit(ss, idx, tmp_path / "a")
    lines = [(rows.texts[i], [rows.labels[i]], {"t"}, int(ss.copies[i])) for i in idx]
    _, b2 = MultiLabelDistiller(cfg).fit_lines(lines, tmp_path / "b" / "train.txt", cfg.loss)
    written = (tmp_path / "a" / "train.txt").read_bytes()
    assert written == (tmp_path / "b" / "train.txt").read_bytes() and b1 == b2
    written_lines = written.decode().splitlines()
    assert len(written_lines) == int(ss.copies.sum()) and rows.row_source[0] == "gold"
    first = f"__label__positive {fasttext_text(rows.texts[0], 'words', 60)}"
    assert ss.copies[0] == 2 and written_lines.count(first) == 2
    head = {ln.split()[0] for ln in written_lines[: 2 * len(gold)]}  # the gold rows' copies
    assert head == {"__label__positive", "__label__negative"}  # shuffled, not in row order
    probe = rows.texts[:5]
    np.testing.assert_allclose(
        predict_positive(m1, probe, 60, "words"),
        predict_tasks(m1, probe, ["positive"], 60, "words")[:, 0],
    )


def test_conflicting_text_keeps_the_positive_and_is_counted():
    gold = _gold(n=5)
    other = gold_rows("t", ["o1", "o2", "o3"], [gold.texts[0], "x y z", "p q r"], "other-gold")
    ss = build_student_set("t", None, gold, other, StudentSetConfig("gold-only"))
    assert ss.summary["conflicts"] == 1 and len(ss) == 7
    assert ss.rows.labels[ss.rows.ids.index("g1-0")] == "positive"


def test_old_labels_without_source_column_are_inferred(tmp_path):
    rows = [
        {"id": "a", "text": "x", "task": "t", "label": "positive", "reason": "positive: candidate"},
        {
            "id": "b",
            "text": "y",
            "task": "t",
            "label": "negative",
            "reason": "negative: random non-candidate (similarity 0.1 < cut 0.4)",
        },
        {
            "id": "c",
            "text": "z",
            "task": "t",
            "label": "negative",
            "reason": "negative: candidate (top 10%); spearman -0.400 <= 0.0",
        },
        {"id": "d", "text": "w", "task": "t", "label": "negative", "reason": "hand label"},
        {"id": "e", "text": "v", "task": "t", "label": "uncertain", "reason": "uncertain: ..."},
    ]
    ls = load_labels(write_labels(tmp_path / "t.parquet", rows), "t")
    assert ls.row_source == ["confirmed", "random", "hard-negative", "random", "candidate"]
    assert "source" not in pq.read_table(tmp_path / "t.parquet").column_names
    # a file with the column is read as written
    rows[0]["source"] = "gold"
    ls = load_labels(write_labels(tmp_path / "u.parquet", rows), "t")
    assert ls.row_source[0] == "gold" and infer_source("positive", "") == "confirmed"


def test_split_by_source_holds_out_every_source():
    ss = build_student_set(
        "t",
        _labels(),
        _gold(),
        _gold(source="other-gold", seed=2),
        StudentSetConfig("gold+confirmed+hard"),
    )
    tr, te = split_by_source(ss.rows, 0.25, seed=0)
    assert len(set(tr) & set(te)) == 0 and len(tr) + len(te) == len(ss)
    src = np.array(ss.rows.row_source)
    for s, n in (("gold", 20), ("confirmed", 10), ("random", 30), ("hard-negative", 8)):
        assert (src[te] == s).sum() == round(n * 0.25)
    assert np.array_equal(te, split_by_source(ss.rows, 0.25, seed=0)[1])


def test_bucket_is_sized_to_the_data():
    small = bucket_for(["a b c d"] * 29, 2, 2_000_000)
    assert small == 4096
    big = bucket_for(
        [" ".join(f"w{i}" for i in range(j, j + 200)) for j in range(0, 40000, 200)], 2, 2_000_000
    )
    assert 2 * 39999 <= big <= 2 * 2 * 39999 and big & (big - 1) == 0
    assert bucket_for(["x y"] * 10, 2, 1000) == 1000
    # character n-grams share the buckets: 3-5 grams of 2,000 distinct words need more of them
    words = [" ".join(f"token{i:05d}" for i in range(j, j + 100)) for j in range(0, 2000, 100)]
    no_sub = bucket_for(words, 1, 2_000_000)
    sub = bucket_for(words, 1, 2_000_000, minn=3, maxn=5)
    assert no_sub == 4096 and sub >= 2 * 2000 * 3 and sub & (sub - 1) == 0


def test_subwords_carry_a_student_across_quote_styles(tmp_path):
    """Trained on JSON (double quotes), tested on Python dicts (single quotes): whitespace tokens
    share nothing, character n-grams do (the xLAM -> ELMB function-calling case)."""
    import fasttext

    from retriever.distill import predict_positive

    rng = random.Random(0)
    names = ["weather", "stock", "hotel", "flight", "email", "calendar", "search", "convert"]
    rows = [
        {
            "id": f"p{k}",
            "text": f'{{"name": "get_{names[k % 8]}", "parameters": {{"city": "c{k}"}}}}',
            "task": "t",
            "label": "positive",
        }
        for k in range(40)
    ]
    rows += [
        {"id": f"n{k}", "text": synthetic_doc(rng, False), "task": "t", "label": "negative"}
        for k in range(40)
    ]
    write_labels(tmp_path / "t.parquet", rows)
    probe_pos = [
        f"{{'name': 'get_{n}', 'parameters': {{'city': 'x{i}'}}}}" for i, n in enumerate(names)
    ]
    # negatives as unseen as the positives' tokens (pseudo-words): without subwords both are
    # all-unknown lines and score the same prior
    letters = "bdfhjklmpqrvwxyz"
    probe_neg = [
        " ".join("".join(rng.choice(letters) for _ in range(7)) for _ in range(6)) for _ in range(8)
    ]
    probs = {}
    for minn, maxn in ((0, 0), (3, 5)):
        out = tmp_path / f"m{minn}" / "filter.bin"
        cfg = DistillConfig(
            epoch=10, dim=16, seed=0, minn=minn, maxn=maxn, training_set="gold+confirmed"
        )
        rep = FastTextDistiller(cfg).run(tmp_path / "t.parquet", "t", out)
        m = fasttext.load_model(str(out))
        assert (m.f.getArgs().minn, m.f.getArgs().maxn) == (minn, maxn)
        assert rep.manifest["bucket"] >= 4096
        probs[minn] = predict_positive(m, probe_pos + probe_neg, 0, "newlines")
    sub_margin = probs[3][:8].min() - probs[3][8:].max()
    plain_margin = probs[0][:8].min() - probs[0][8:].max()
    assert sub_margin > 0 and plain_margin <= 0.05


def test_minn_maxn_are_validated():
    with pytest.raises(ConfigError, match="maxn"):
        DistillConfig(minn=4, maxn=3)
    with pytest.raises(ConfigError, match="maxn"):
        DistillConfig(minn=0, maxn=5)
    assert DistillConfig(minn=0, maxn=0).fasttext_args()["minn"] == 0


def _rows(y, sim, src):
    n = len(y)
    return LabelSet(
        "t",
        [str(i) for i in range(n)],
        ["x"] * n,
        ["positive" if v else "negative" for v in y],
        np.asarray(sim, float),
        np.full(n, np.nan),
        [],
        row_source=list(src),
    )


def test_checks_warn_when_the_student_loses_to_similarity():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(40, bool), np.zeros(60, bool)]
    src = ["gold"] * 40 + ["random"] * 60
    sim = np.where(y, 0.8, 0.2) + rng.normal(0, 0.01, 100)  # similarity separates perfectly
    good = np.where(y, 0.9, 0.1)
    r = student_checks(_rows(y, sim, src), np.arange(100), good)
    assert r["warnings"] == [] and r["comparison"]["gap"] == pytest.approx(0.0)
    chance = rng.random(100)
    r = student_checks(_rows(y, sim, src), np.arange(100), chance)
    assert any("below the similarity stage" in w for w in r["warnings"])
    bunched = 0.5 + rng.normal(0, 0.01, 100)
    r = student_checks(_rows(y, sim, src), np.arange(100), bunched)
    assert any("within 0.05 of the threshold" in w for w in r["warnings"])
    r = student_checks(_rows(y, sim, src), np.arange(100), np.where(y, 0.4, 0.1))
    assert any("F1 is 0" in w for w in r["warnings"])
    r = student_checks(_rows(y[35:45], sim[35:45], src[35:45]), np.arange(10), good[35:45])
    assert any("tiny held-out set" in w for w in r["warnings"])


@pytest.mark.slow
def test_distill_with_gold_indexes_end_to_end(tiny_indexes, tmp_path):
    """Real FAISS indexes + real fastText: gold rows enter the set, the held-out check compares
    the student with leave-one-out similarity, the model is small."""
    sims = index_similarity(tiny_indexes["tools"], [tiny_indexes["math"]])
    assert sims["gold"].shape == (6,) and (sims["gold"] < 0.999).all()  # itself left out
    assert sims["math"].shape == (6,) and (sims["math"] < sims["gold"].max()).all()
    rng = random.Random(0)
    web = _random_rows("tools", [synthetic_doc(rng, False) for _ in range(12)])
    write_labels(tmp_path / "labels" / "tools.parquet", web)
    out = tmp_path / "f" / "filter.bin"
    cfg = DistillConfig(epoch=10, dim=16, seed=1, test_fraction=0.34)
    rep = FastTextDistiller(cfg).run(tmp_path / "labels", "tools", out, indexes=tiny_indexes)
    man = json.loads(out.with_suffix(".json").read_text())
    per = man["training_set"]["per_source"]
    assert (
        per["gold"]["rows"] == 6 and per["other-gold"]["rows"] == 6 and per["random"]["rows"] == 12
    )
    # buckets sized to the word bigrams and the 3-5 character n-grams of 24 short texts
    assert 4096 <= man["bucket"] <= 65536 and man["model_bytes"] < 20_000_000
    c = rep.metrics["heldout_vs_similarity"]
    assert c["rows"].startswith("held-out gold") and c["n_positive"] == 2 and c["n_negative"] == 4
    assert c["similarity_auc"] is not None and c["student_auc"] is not None
    assert any("tiny held-out set" in w for w in rep.warnings)
    held = pq.read_table(out.with_suffix(".heldout.parquet")).to_pydict()
    assert set(held["source"]) == {"gold", "random", "other-gold"}
    ss = pq.read_table(out.with_suffix(".student_set.parquet")).to_pydict()
    assert set(ss["source"]) == {"gold", "random", "other-gold"} and sum(ss["copies"]) > 0


@pytest.mark.slow
def test_multilabel_student_learns_from_the_gold_indexes_too(tiny_indexes, tmp_path):
    """The one-pass student gets the same rows as the per-task ones: gold anchors of each task,
    the other tasks' gold as its negatives, the checks against similarity, and the report reads
    every task of it."""
    from retriever.distill.multilabel import MultiLabelDistiller
    from retriever.report.readers import distill_sections

    rng = random.Random(0)
    web_texts = [synthetic_doc(rng, False) for _ in range(12)]  # the same random sample per task
    for task in ("tools", "math"):
        web = _random_rows(task, web_texts)
        write_labels(tmp_path / "labels" / f"{task}.parquet", web)
    out = tmp_path / "f" / "multilabel" / "filter.bin"
    cfg = DistillConfig(epoch=15, dim=16, seed=1, test_fraction=0.34)
    rep = MultiLabelDistiller(cfg).run(
        tmp_path / "labels", ["tools", "math"], out, indexes=tiny_indexes
    )
    man = json.loads(out.with_suffix(".json").read_text())
    for task in ("tools", "math"):
        per = man["training_set"][task]["per_source"]
        assert per["gold"]["rows"] == 6 and per["other-gold"]["rows"] == 6
        c = rep.metrics[task]["heldout_vs_similarity"]
        assert c["rows"].startswith("held-out gold") and c["student_auc"] is not None
        assert any("tiny held-out set" in w for w in rep.warnings[task])
    # one split of the 24 distinct documents for both tasks (34%: 2 + 2 gold, 4 web held out),
    # so each task's held-out rows are the same 8 documents and the other 16 are trained on
    assert man["n_heldout"] == {"tools": 8, "math": 8} and man["n_train_lines"] == 16
    read = dict(distill_sections(out.with_suffix(".json")))
    assert set(read) == {"tools", "math"}
    assert read["tools"]["student_auc"] is not None and read["tools"]["warnings"]
    assert len(read["math"]["y"]) == len(read["math"]["p"]) == man["n_heldout"]["math"]


def test_multilabel_lines_merge_a_gold_exemplar_with_its_other_gold_copy():
    """Task A's gold is task B's other-gold negative: one line, labelled A only; a shared web
    negative is one ``none`` line; a held-out text is in no line; copies take the larger."""
    from retriever.distill.multilabel import training_lines

    web = ["a walk in the park", "bread and butter recipes"]
    gold = {"a": ["call get_weather(city)", "call send_email(to)"], "b": ["2 + 2 = 4", "3 * 3 = 9"]}
    sets = {}
    for t, other in (("a", "b"), ("b", "a")):
        g = gold_rows(t, [f"{t}{i}" for i in range(2)], gold[t], "gold")
        og = gold_rows(t, [f"{other}/{i}" for i in range(2)], gold[other], "other-gold")
        lab = LabelSet(
            t,
            ["w0", "w1"],
            web,
            ["negative"] * 2,
            np.full(2, 0.1),
            np.full(2, np.nan),
            [],
            row_source=["random"] * 2,
        )
        w = {"gold": 3} if t == "a" else {}
        cfg = StudentSetConfig(sources="gold-only", weights=w)
        sets[t] = build_student_set(t, lab, g, og, cfg)
    rows = {t: np.arange(len(ss.rows)) for t, ss in sets.items()}
    lines = training_lines(sets, rows, exclude={text_key("bread and butter recipes")})
    by_text = {x[0]: x for x in lines}
    assert set(by_text) == {*gold["a"], *gold["b"], "a walk in the park"}
    assert all(by_text[x][1] == ["a"] and by_text[x][2] == {"a", "b"} for x in gold["a"])
    assert all(by_text[x][1] == ["b"] for x in gold["b"])
    assert by_text[gold["a"][0]][3] == 3  # a's gold weight 3 beats b's single other-gold copy
    assert by_text[gold["b"][0]][3] == 1
    assert by_text["a walk in the park"][1] == ["none"]


def test_report_shows_a_red_flag_for_a_warned_student(tmp_path):
    from retriever.report.readers import distill_section
    from retriever.report.render import render_report

    man = tmp_path / "filter.json"
    man.write_text(
        json.dumps(
            {
                "task": "rag",
                "metrics": {
                    "precision": 0.2,
                    "recall": 0.1,
                    "f1": 0.13,
                    "roc_auc": 0.6,
                    "threshold": 0.5,
                    "heldout_vs_similarity": {
                        "student_auc": 0.61,
                        "similarity_auc": 0.99,
                        "rows": "held-out gold vs held-out random",
                    },
                },
                "warnings": ["student AUC 0.610 is 0.380 below the similarity stage's 0.990"],
            }
        )
    )
    task, pr = distill_section(man)
    assert pr["student_auc"] == 0.61 and len(pr["warnings"]) == 1
    html = render_report(pr={task: pr})
    assert 'class="flag"' in html and "0.380 below the similarity" in html
    ok = dict(pr, warnings=[])
    assert 'class="flag"' not in render_report(pr={task: ok})


def test_words_normalization_splits_punctuation_and_the_filter_applies_the_models_own(tmp_path):
    from retriever.batch_filter.scorer import FastTextScorer
    from retriever.distill.labels import fasttext_text, model_normalization

    assert fasttext_text('{"Name": x}\nB', "words").split() == [
        "{",
        '"',
        "name",
        '"',
        ":",
        "x",
        "}",
        "b",
    ]
    assert fasttext_text('{"Name": x}\nB') == '{"Name": x} B'  # the old default, unchanged
    # xLAM-style JSON in training, ELMB-style Python dicts at test time: same tokens once split
    write_labels(tmp_path / "t.parquet", _json_call_rows(seed=0))
    out = tmp_path / "m" / "filter.bin"
    cfg = DistillConfig(
        epoch=10, dim=16, seed=0, normalization="words", training_set="gold+confirmed"
    )
    FastTextDistiller(cfg).run(tmp_path / "t.parquet", "t", out)
    assert model_normalization(out) == "words"
    assert model_normalization(tmp_path / "none.bin") == "newlines"
    probe = ["{'name': 'g', 'parameters': {'y': 3}}", "a painter by the river in autumn"]
    p = FastTextScorer({"t": str(out)}).score_texts(probe).probs[:, 0]
    assert p[0] > 0.5 > p[1]
    import fasttext

    m = fasttext.load_model(str(out))
    from retriever.distill import predict_positive

    assert np.allclose(p, predict_positive(m, probe, 0, "words"), atol=1e-5)  # filter = distiller


def test_both_normalization_round_trips_through_the_manifest_and_the_filter(tmp_path):
    import fasttext

    from retriever.batch_filter.scorer import FastTextScorer
    from retriever.distill import predict_positive
    from retriever.distill.labels import fasttext_text, model_normalization

    # both tokenizations on one line: the newlines text, then the words text
    assert fasttext_text('{"Name": x}\nB', "both") == fasttext_text(
        '{"Name": x}\nB'
    ) + " " + fasttext_text('{"Name": x}\nB', "words")
    write_labels(tmp_path / "t.parquet", _json_call_rows(seed=1))
    out = tmp_path / "m" / "filter.bin"
    FastTextDistiller(
        DistillConfig(epoch=10, dim=16, seed=0, normalization="both", training_set="gold+confirmed")
    ).run(tmp_path / "t.parquet", "t", out)
    assert model_normalization(out) == "both"
    assert json.loads(out.with_suffix(".json").read_text())["text_normalization"] == "both"
    probe = ["{'name': 'g', 'parameters': {'y': 3}}", "a painter by the river in autumn"]
    p = FastTextScorer({"t": str(out)}).score_texts(probe).probs[:, 0]
    assert p[0] > 0.5 > p[1]
    m = fasttext.load_model(str(out))
    assert np.allclose(p, predict_positive(m, probe, 0, "both"), atol=1e-5)  # filter = distiller
    assert not np.allclose(p, predict_positive(m, probe, 0, "newlines"), atol=1e-5)
