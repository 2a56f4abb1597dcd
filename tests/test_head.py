"""The learned head: calibrated logistic models stored without pickle, leave-one-out gold features,
and the score stage writing hybrid / head columns and ranking by the head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import MATH_GOLD, TOOLS_GOLD, WEB_TEXT, write_jsonl

from retriever.errors import InputError
from retriever.index.head import (
    DENSE,
    SCALARS,
    Features,
    HeadConfig,
    TaskHead,
    fit_linear,
    load_head,
    train_head,
)
from retriever.index.sparse import TermWeights

NO_WORDS = {"head": DENSE, "hybrid": SCALARS}


def _features(rng, n: int, shift: float, dim: int = 8) -> Features:
    v = rng.normal(size=(n, dim)) + shift
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    base = rng.normal(size=n) * 0.1 + 0.5 + shift * 0.1
    return Features(v.astype(np.float32), base, base - 0.05, base * 0.5, base * 0.4)


def _tools_and_math_indexes(tmp_path, embedder) -> list[str]:
    """Index folders for the tools and math gold under ``tmp_path / "idx"``."""
    from retriever.index import build_index

    dirs = []
    for task, texts in (("tools", TOOLS_GOLD), ("math", MATH_GOLD)):
        gold = write_jsonl(tmp_path / "gold" / f"{task}.jsonl", [{"text": t} for t in texts])
        build_index(task, gold=[str(gold)], indexes_dir=tmp_path / "idx", embedder=embedder)
        dirs.append(str(tmp_path / "idx" / task))
    return dirs


def test_head_is_calibrated_and_separates_shifted_classes():
    rng = np.random.default_rng(0)
    pos, neg = _features(rng, 300, 1.0), _features(rng, 900, -1.0)
    head = train_head("t", pos, neg, HeadConfig(c=0.1), models=NO_WORDS)
    assert set(head.models) == {"head", "hybrid"}
    info = head.models["head"].info
    assert info["n_positive"] == 300 and info["n_negative"] == 900 and info["cv_roc_auc"] > 0.95
    # fresh draws: the probability tracks the observed rate in its bins (balanced prior)
    tp, tn = _features(rng, 2000, 1.0), _features(rng, 2000, -1.0)
    p = np.r_[head.models["hybrid"].predict(tp), head.models["hybrid"].predict(tn)]
    y = np.r_[np.ones(2000), np.zeros(2000)]
    for lo, hi in ((0.0, 0.2), (0.2, 0.8), (0.8, 1.0)):
        m = (p >= lo) & (p < hi)
        if m.sum() > 50:
            assert abs(y[m].mean() - p[m].mean()) < 0.1, (lo, hi, y[m].mean(), p[m].mean())
    assert p[y == 1].mean() > 0.7 and p[y == 0].mean() < 0.3


def test_save_load_round_trip_without_pickle(tmp_path):
    rng = np.random.default_rng(1)
    head = train_head(
        "t",
        _features(rng, 50, 1.0),
        _features(rng, 80, -1.0),
        manifest={"gold_fingerprint": "abc"},
        models=NO_WORDS,
    )
    head.save(tmp_path / "head")
    back = load_head(tmp_path)
    assert isinstance(back, TaskHead) and back.manifest["gold_fingerprint"] == "abc"
    f = _features(rng, 20, 0.0)
    for name in head.models:
        np.testing.assert_allclose(
            back.models[name].predict(f), head.models[name].predict(f), rtol=1e-6
        )
    coef = np.load(tmp_path / "head" / "head.npy", allow_pickle=False)  # plain arrays only
    assert coef.dtype == np.float32 and coef.shape == (8 + 4,)


def _texts(rng, n: int, words: list[str]) -> list[str]:
    common = ["the", "a", "of", "and", "to", "in"]
    return [" ".join(rng.choice(common + words, size=12)) for _ in range(n)]


def test_words_carry_the_signal_when_the_vectors_do_not(tmp_path):
    rng = np.random.default_rng(3)
    pos_t = _texts(rng, 120, ["coin", "flips", "heads"])
    neg_t = _texts(rng, 240, ["museum", "tours", "roman"])
    vocab = TermWeights.fit(pos_t + neg_t, HeadConfig().vocabulary())
    # dense features: the same distribution for both classes (no signal)
    pos, neg = _features(rng, 120, 0.0), _features(rng, 240, 0.0)
    pos.words, neg.words = vocab.transform(pos_t), vocab.transform(neg_t)
    head = train_head("t", pos, neg, HeadConfig(folds=3), vocab=vocab)
    assert head.models["head"].uses_words and not head.models["hybrid"].uses_words
    assert head.models["head"].info["cv_roc_auc"] > 0.99
    assert head.models["hybrid"].info["cv_roc_auc"] < 0.75
    test = _features(rng, 2, 0.0)
    test.words = vocab.transform(["heads up: a coin flips", "roman museum tours"])
    p = head.models["head"].predict(test)
    assert p[0] > 0.9 > 0.1 > p[1]
    # round trip: the vocabulary travels with the head, predictions are the same
    head.save(tmp_path / "head")
    back = load_head(tmp_path)
    assert back.vocab is not None and back.vocab.terms == vocab.terms
    test.words = back.vocab.transform(["heads up: a coin flips", "roman museum tours"])
    np.testing.assert_allclose(back.models["head"].predict(test), p, rtol=1e-5)
    coef = np.load(tmp_path / "head" / "head.npy", allow_pickle=False)
    assert coef.shape == (8 + 4 + vocab.n_terms,)
    # a vocabulary swapped under the head is refused
    TermWeights(vocab.terms[::-1], vocab.idf, vocab.config).save(tmp_path / "head")
    with pytest.raises(InputError, match="not the one the head was trained with"):
        load_head(tmp_path)


def test_bad_head_input_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(2)
    with pytest.raises(InputError, match="at least 5 positives"):
        fit_linear(np.ones((8, 2)), np.r_[np.ones(3), np.zeros(5)], ("cos", "topk"))
    with pytest.raises(InputError, match="c and words_scale must be > 0"):
        train_head("t", _features(rng, 10, 1.0), _features(rng, 10, -1.0), HeadConfig(c=0))
    with pytest.raises(InputError, match="need a vocabulary"):
        train_head("t", _features(rng, 10, 1.0), _features(rng, 10, -1.0))  # words, no rows
    assert load_head(tmp_path) is None
    (tmp_path / "head").mkdir()
    with pytest.raises(InputError, match="no head"):
        TaskHead.load(tmp_path / "head")


@pytest.mark.slow
def test_train_heads_then_score_corpus_ranks_by_the_head(tmp_path, embedder):
    import pyarrow.parquet as pq

    from retriever.index.hybrid import load_extras, train_heads
    from retriever.score import score_corpus

    dirs = _tools_and_math_indexes(tmp_path, embedder)
    for d in dirs:
        assert (Path(d) / "sparse" / "manifest.json").is_file()
    heads = train_heads(dirs, WEB_TEXT * 2, embedder, HeadConfig(folds=3), k=3)
    assert set(heads) == {"tools", "math"}
    ex = load_extras(dirs[1])
    neg = ex.head.manifest["negatives"]
    assert ex.ranking() == "head" and neg["corpus"] + neg["corpus_dropped_as_task_like"] == 12
    corpus = write_jsonl(
        tmp_path / "corpus" / "c.jsonl",
        [
            {
                "id": "math",
                "text": "Question: Ann has 2 cats and gets 3 more. How many cats?\nAnswer: 2 + 3 = "
                "5 cats.",
            },
            {
                "id": "tools",
                "text": 'Question: Email Dan the slides.\n1. get_email_address("Dan")\n2. '
                'send_email(["$1"], "Slides", "")\n3. join()',
            },
            {
                "id": "web",
                "text": "The museum opens a new wing of Roman sculpture next spring, with guided "
                "tours.",
            },
        ],
    )
    score_corpus(dirs, [str(corpus)], tmp_path / "out", store=None, k=3)
    t = pq.read_table(next((tmp_path / "out" / "scores").glob("*.parquet"))).to_pydict()
    for task in ("tools", "math"):
        for c in ("score", "cos", "topk", "sparse", "sparse_topk", "hybrid", "head"):
            assert f"{c}_{task}" in t
        assert t[f"score_{task}"] == t[f"head_{task}"]  # the candidate ranking is the head
        assert all(0.0 <= p <= 1.0 for p in t[f"head_{task}"])
    row = {i: n for n, i in enumerate(t["id"])}
    assert t["head_math"][row["math"]] > t["head_math"][row["web"]]
    assert t["head_math"][row["math"]] > t["head_math"][row["tools"]]
    assert t["head_tools"][row["tools"]] > t["head_tools"][row["web"]]
    # scoring with another k than the head's is refused, not silently wrong
    with pytest.raises(InputError, match="trained with k=3"):
        score_corpus(dirs, [str(corpus)], tmp_path / "out2", store=None, k=10)


def test_reliable_negatives_cut_between_the_medians():
    from retriever.index.head import reliable_negatives

    keep, cut = reliable_negatives(np.array([0.8, 0.9, 1.0]), np.array([0.1, 0.2, 0.3, 0.85]))
    assert cut == pytest.approx((0.9 + 0.25) / 2) and keep.tolist() == [True, True, True, False]


@pytest.mark.slow
def test_task_documents_in_the_corpus_sample_are_not_trained_as_negatives(tmp_path, embedder):
    """`retriever run` samples negatives from the corpus it scores: a near-copy of the gold there
    must not be learned as a negative (else the head hides what the run should find)."""
    from retriever.index.hybrid import load_extras, train_heads
    from retriever.score.scorer import SimilarityScorer

    dirs = _tools_and_math_indexes(tmp_path, embedder)
    planted = [t.replace("Question:", "Q:") for t in MATH_GOLD[:2]]
    train_heads(dirs, WEB_TEXT * 2 + planted, embedder, HeadConfig(folds=2), k=3)
    ex = {t: load_extras(d) for t, d in zip(("tools", "math"), dirs, strict=True)}
    assert ex["math"].head.manifest["negatives"]["corpus_dropped_as_task_like"] >= 2
    from retriever.index import load_indexes

    scorer = SimilarityScorer(load_indexes(dirs), embedder, k=3, extras=ex)
    p = scorer.score_texts(planted + WEB_TEXT[:2]).extra["head"]["math"]
    assert min(p[:2]) > 0.5 > max(p[2:])


@pytest.mark.slow
def test_adding_gold_rebuilds_the_sparse_index_and_flags_the_stale_head(tmp_path, embedder):
    from retriever.index import add_to_index
    from retriever.index.hybrid import load_extras, train_heads

    dirs = _tools_and_math_indexes(tmp_path, embedder)
    train_heads(dirs, WEB_TEXT, embedder, HeadConfig(folds=2), k=3)
    n_before = load_extras(dirs[1]).sparse.n_gold
    add_to_index(dirs[1], texts=["Question: 7 times 6?\nAnswer: 7 * 6 = 42."], embedder=embedder)
    with pytest.raises(InputError, match="retrain it"):
        load_extras(dirs[1])
    train_heads(dirs, WEB_TEXT, embedder, HeadConfig(folds=2), k=3)
    assert load_extras(dirs[1]).sparse.n_gold == n_before + 1


def test_read_negatives_spreads_a_bounded_read_over_shards(tmp_path):
    from retriever.index.hybrid import read_negatives

    for s in range(30):
        write_jsonl(
            tmp_path / "c" / f"s{s:02d}.jsonl",
            [{"id": f"{s}-{i}", "text": f"shard {s} doc {i}"} for i in range(10)],
        )
    every = read_negatives([str(tmp_path / "c")], limit=1000)
    assert len(every) == 300
    some = read_negatives([str(tmp_path / "c")], limit=1000, max_read=40)
    assert len(some) == 40 and len({t.split()[1] for t in some}) == 20  # 2 docs from 20 shards
    assert some == read_negatives([str(tmp_path / "c")], limit=1000, max_read=40)
    assert len(read_negatives([str(tmp_path / "c")], limit=5, max_read=40)) == 5
