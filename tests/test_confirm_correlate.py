"""Correlation estimators and projections: hand-computed cases, scipy, and the package itself."""

from __future__ import annotations

import numpy as np
import pytest

from retriever.confirm import correlate as C
from retriever.errors import ConfigError, InputError

# 3 documents x 4 models; model errors: model 0 best ... model 3 worst
ERR = np.array([0.1, 0.2, 0.3, 0.4])
BPB = np.array(
    [
        [1.0, 2.0, 3.0, 4.0],  # "task-like": better models have lower loss -> +1
        [4.0, 3.0, 2.0, 1.0],  # the opposite -> -1
        [1.0, 3.0, 2.0, 4.0],  # one swapped pair
    ]
)


def test_spearman_hand_cases():
    # row 3: ranks (1,3,2,4) vs (1,2,3,4): d^2 = 0+1+1+0 = 2 -> 1 - 6*2/(4*15) = 0.8
    np.testing.assert_allclose(C.spearman(BPB, ERR), [1.0, -1.0, 0.8])


def test_concordance_counts_pairs_the_better_model_wins():
    # 6 ordered pairs; row 3 has one discordant pair (models 1 and 2)
    np.testing.assert_array_equal(C.concordant_pairs(BPB, ERR), [6, 0, 5])
    np.testing.assert_allclose(C.concordance(BPB, ERR), [1.0, 0.0, 5 / 6])


def test_concordance_skips_pairs_with_equal_error_and_counts_bpb_ties_as_not_concordant():
    err = np.array([0.1, 0.1, 0.5])  # models 0 and 1 tie: 2 ordered pairs remain
    bpb = np.array([[1.0, 9.0, 2.0], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(C.concordance(bpb, err), [0.5, 0.0])


def test_product_sign_and_sign_sign_by_hand():
    np.testing.assert_allclose(C.product(BPB, ERR), BPB @ ERR / 4)
    # sign: mean over the 6 pairs (i<j) of sign(err_j - err_i) * (bpb_j - bpb_i)
    row = BPB[2]
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    want = np.mean([np.sign(ERR[j] - ERR[i]) * (row[j] - row[i]) for i, j in pairs])
    assert C.sign(BPB, ERR)[2] == pytest.approx(want)
    want_ss = np.mean([np.sign(ERR[j] - ERR[i]) * np.sign(row[j] - row[i]) for i, j in pairs])
    assert C.sign_sign(BPB, ERR)[2] == pytest.approx(want_ss)  # 4/6
    assert want_ss == pytest.approx(4 / 6)


def test_rank_rows_average_ties_match_scipy():
    from scipy.stats import rankdata

    x = np.random.default_rng(0).integers(0, 3, size=(17, 6)).astype(float)
    np.testing.assert_array_equal(C.rank_rows(x), rankdata(x, axis=1))


def test_spearman_matches_scipy_with_ties_and_nan_rows():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    bpb = rng.integers(0, 4, size=(40, 7)).astype(float)
    bpb[3, 2] = np.nan
    bpb[5] = 2.0  # constant row: undefined
    err = rng.random(7)
    got = C.spearman(bpb, err)
    for i in range(len(bpb)):
        if i in (3, 5):
            assert np.isnan(got[i])
        else:
            assert got[i] == pytest.approx(spearmanr(bpb[i], err)[0])


def test_correlate_leaves_rows_with_nan_as_nan_instead_of_dropping_a_model():
    bpb = BPB.copy()
    bpb[1, 0] = np.nan
    c = C.correlate(bpb, ERR, ["a", "b", "c", "d"])
    for name in C.ESTIMATORS:
        assert np.isnan(c.values[name][1]), name
        assert np.isfinite(c.values[name][[0, 2]]).all(), name
    np.testing.assert_array_equal(c.n_models, [4, 3, 4])


def test_correlate_bad_inputs_raise_typed_errors():
    with pytest.raises(ConfigError, match="at least 3"):
        C.correlate(BPB[:, :2], ERR[:2])
    with pytest.raises(ConfigError, match="unknown estimator"):
        C.correlate(BPB, ERR, estimators=("pearson",))
    with pytest.raises(InputError, match="err must be"):
        C.spearman(BPB, ERR[:3])
    with pytest.raises(InputError, match="finite"):
        C.spearman(BPB, np.array([0.1, np.nan, 0.2, 0.3]))
    with pytest.raises(InputError, match="same error"):
        C.concordance(BPB, np.full(4, 0.5))


def test_projections_hand_case():
    # the package's own test case
    tau = np.array([0.2, 0.5, 0.9, 0.4, 1])
    est = np.array([-0.3, 4, 1, 0.9, 0])
    np.testing.assert_allclose(C.project_linear(est, tau), [0, 0.5, 0.5, 0, 0], atol=1e-12)
    np.testing.assert_allclose(C.project_l2(est, tau), [0, 0.5, 0.3, 0.2, 0], atol=1e-9)


def test_projections_respect_caps_and_sum_to_one():
    rng = np.random.default_rng(2)
    est = rng.normal(size=50)
    tau = rng.random(50) * 0.1 + 0.01
    for w in (C.project_linear(est, tau), C.project_l2(est, tau)):
        assert w.sum() == pytest.approx(1.0, abs=1e-9)
        assert np.all(w >= -1e-12) and np.all(w <= tau + 1e-9)
    with pytest.raises(InputError, match="sum to"):
        C.project_linear(est, np.full(50, 0.001))
    with pytest.raises(InputError, match="> 0"):
        C.project_l2(est, np.zeros(50))


def test_estimators_match_the_perplexity_correlations_package():
    est_mod = pytest.importorskip("perplexity_correlations.estimation")
    proj_mod = pytest.importorskip("perplexity_correlations.projection")
    rng = np.random.default_rng(3)
    bpb = rng.random((300, 9)) + 0.5  # [n_docs, n_models], no ties
    err = rng.random(9)
    for name in ("product", "sign", "sign_cdf", "sign_sign", "spearmanr"):
        ours = getattr(C, name)(bpb, err)
        theirs = getattr(est_mod, name)(bpb.T, err)  # the package takes [n_models, n_docs]
        np.testing.assert_allclose(ours, theirs, atol=1e-12, err_msg=name)
    est = C.sign_cdf(bpb, err) + rng.random(300) * 1e-9  # break ties: ties order arbitrarily
    tau = rng.random(300) * 0.02 + 0.001
    np.testing.assert_allclose(C.project_linear(est, tau), proj_mod.linear(est, tau), atol=1e-6)
    np.testing.assert_allclose(C.project_l2(est, tau), proj_mod.l2(est, tau), atol=1e-9)


def test_centering_removes_the_general_quality_confound():
    """Model 0 is better on every document and best on the task: raw BPB makes every document
    correlate; centred BPB keeps only the documents the skilled models are *specifically* good
    at."""
    from retriever.confirm.correlate import center_per_model, spearman

    err = np.array([0.1, 0.2, 0.3, 0.4])  # model 0 most skilled
    general = np.array([1.0, 1.1, 1.2, 1.3])  # and better everywhere
    skill = np.array([-0.3, -0.1, 0.1, 0.3])  # task-like documents: the skilled models gain more
    task_docs = general + skill  # [4]
    other_docs = (
        general - 0.3 * skill
    )  # still best for model 0, but it gains less here than on average
    bpb = np.vstack([task_docs] * 3 + [other_docs] * 3)  # [6 docs, 4 models]
    raw = spearman(bpb, err)
    assert (raw > 0.99).all()  # the confound: everything looks positive
    cen = spearman(center_per_model(bpb), err)
    assert (cen[:3] > 0.99).all() and (cen[3:] < -0.99).all()
    np.testing.assert_allclose(center_per_model(bpb), bpb - np.median(bpb, axis=0), atol=1e-12)
