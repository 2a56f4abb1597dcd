"""The sparse (TF-IDF) index: same rows as scikit-learn's TfidfVectorizer, blocked scoring equals
brute force, save/load keeps the scores, bad input is a one-line error."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MATH_GOLD, TOOLS_GOLD, WEB_TEXT

from retriever.errors import InputError
from retriever.index.sparse import TOKEN_PATTERN, SparseConfig, SparseIndex, load_sparse


def _reference(gold: list[str], texts: list[str], min_df: int) -> np.ndarray:
    """Cosine matrix [n_texts, n_gold] from scikit-learn's own TF-IDF with the same settings."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(
        ngram_range=(1, 2), min_df=min_df, sublinear_tf=True, token_pattern=TOKEN_PATTERN
    ).fit(gold)
    return (vec.transform(texts) @ vec.transform(gold).T).toarray()


@pytest.mark.parametrize("block", [1, 5, 17, 1024])
def test_scores_equal_scikit_learn_tfidf_in_any_block_size(block):
    gold = TOOLS_GOLD + MATH_GOLD
    texts = MATH_GOLD[:3] + WEB_TEXT + ["send_email to Ana: 3 + 5 = 8 apples"] * 4
    sp = SparseIndex.build(gold, SparseConfig(min_df=1))
    S = _reference(gold, texts, 1)  # [n, n_gold]
    smax, stopk = sp.score(texts, k=3, block=block)
    np.testing.assert_allclose(smax, S.max(axis=1), atol=1e-5)
    np.testing.assert_allclose(stopk, np.sort(S, axis=1)[:, ::-1][:, :3].mean(axis=1), atol=1e-5)
    # a gold text is its own nearest row; web text shares (almost) no gold word pair
    assert smax[:3] == pytest.approx(1.0, abs=1e-5)
    assert smax[3 : 3 + len(WEB_TEXT)].max() < 0.3


def test_leave_one_out_excludes_each_rows_own_gold():
    gold = MATH_GOLD + [MATH_GOLD[0]]  # a duplicate: its twin is still there when it is left out
    sp = SparseIndex.build(gold, SparseConfig(min_df=1))
    smax, _ = sp.score_rows(sp.gold, k=2, exclude=np.arange(len(gold)))
    S = _reference(gold, gold, 1)
    np.fill_diagonal(S, -np.inf)
    np.testing.assert_allclose(smax, S.max(axis=1), atol=1e-5)
    assert smax[0] == pytest.approx(1.0, abs=1e-5) and smax[1] < 0.9


def test_min_df_drops_one_off_terms_and_save_load_keeps_scores(tmp_path):
    sp = SparseIndex.build(TOOLS_GOLD, SparseConfig(min_df=2))
    assert "question" in sp.terms and "join" in sp.terms
    assert "notes" not in sp.terms  # in one exemplar only
    sp.save(tmp_path / "sparse")
    back = load_sparse(tmp_path)
    assert back is not None and back.terms == sp.terms
    texts = TOOLS_GOLD + WEB_TEXT
    for a, b in zip(sp.score(texts, 3), back.score(texts, 3), strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.manifest["n_terms"] == len(sp.terms) and back.config == sp.config


def test_empty_and_unknown_texts_score_zero():
    sp = SparseIndex.build(MATH_GOLD, SparseConfig(min_df=1))
    smax, stopk = sp.score(["", "zzzz qqqq"], k=2)
    assert smax.tolist() == [0.0, 0.0] and stopk.tolist() == [0.0, 0.0]


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="zero gold texts"):
        SparseIndex.build([])
    with pytest.raises(InputError, match="no word occurs"):
        SparseIndex.build(["a b", "c d"], SparseConfig(ngram_max=1, min_df=2))
    with pytest.raises(InputError, match="must be >= 1"):
        SparseIndex.build(MATH_GOLD, SparseConfig(min_df=0))
    assert load_sparse(tmp_path) is None  # an index built before hybrid scoring
    (tmp_path / "sparse").mkdir()
    with pytest.raises(InputError, match="no sparse index"):
        SparseIndex.load(tmp_path / "sparse")
    sp = SparseIndex.build(MATH_GOLD, SparseConfig(min_df=1))
    sp.save(tmp_path / "s2")
    (tmp_path / "s2" / "vocab.json").write_text('{"terms": ["only"]}')
    with pytest.raises(InputError, match="inconsistent"):
        SparseIndex.load(tmp_path / "s2")


def test_one_cut_shared_by_indexes_gives_the_same_rows():
    from retriever.index.sparse import TermWeights, analyze, unigrams

    docs = [*MATH_GOLD, *TOOLS_GOLD, "", "Ünïcode wörds and CAPS, numbers 12 345"]
    sp = SparseIndex.build(MATH_GOLD + TOOLS_GOLD, SparseConfig(min_df=1))
    cut = analyze(docs, sp.config)
    assert (sp.transform_terms(cut) != sp.transform(docs)).nnz == 0
    words = TermWeights.fit(docs, SparseConfig(ngram_max=1, min_df=1))
    assert unigrams(cut) == analyze(docs, words.config)
    assert (words.transform_terms(unigrams(cut)) != words.transform(docs)).nnz == 0
