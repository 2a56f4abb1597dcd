"""Perplexity-correlation estimators: pure numpy, vectorized over documents.

Every estimator takes ``bpb[n_docs, n_models]`` (bits per byte of each document under each model of
the panel) and ``err[n_models]`` (each model's benchmark error on the task, ``1 - accuracy``; lower
is better) and returns ``[n_docs]``. A **positive** value means "models with lower loss on this
document are the models with lower error on the task": the document predicts the skill
(Thrush et al. 2024, "Improving Pretraining Data Using Perplexity Correlations").

- :func:`spearman`: Spearman rank correlation between a document's BPB and the errors (average
  ranks for ties, so it equals ``scipy.stats.spearmanr``).
- :func:`concordance`: PreSelect's predictive strength (Shum et al. 2025): the fraction of model
  pairs ordered the same way by error and by BPB (0.5 = no signal, 1 = perfect).
- :func:`product`, :func:`sign`, :func:`sign_cdf`, :func:`sign_sign`, :func:`spearmanr`: the
  estimators of the ``perplexity-correlations`` package, same definitions (its ``X`` is our
  ``bpb.T``, its ``y`` our ``err``), with its loops over model pairs replaced by matrix products.
- :func:`project_linear`, :func:`project_l2`: the package's projections of an estimate onto a
  sampling distribution (sums to 1) under per-document caps ``tau``.

A row holding NaN (a model that produced NaN on that document) gives NaN for that row, never a
value computed from the remaining models silently: the caller decides (see :func:`correlate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retriever.errors import ConfigError, InputError

ESTIMATORS = ("spearman", "concordance", "product", "sign", "sign_cdf", "sign_sign")


def _check(bpb: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bpb = np.asarray(bpb, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    if bpb.ndim != 2:
        raise InputError(f"bpb must be [n_docs, n_models], got shape {bpb.shape}")
    if err.ndim != 1 or err.shape[0] != bpb.shape[1]:
        raise InputError(
            f"err must be [n_models] = [{bpb.shape[1]}] to match bpb {bpb.shape}, got {err.shape}"
        )
    if bpb.shape[1] < 2:
        raise InputError(f"a correlation needs at least 2 models, got {bpb.shape[1]}")
    if not np.all(np.isfinite(err)):
        raise InputError(f"model errors must be finite, got {err.tolist()}")
    return bpb, err


def center_per_model(bpb: np.ndarray) -> np.ndarray:
    """``bpb`` minus each model's median BPB over the documents (NaN ignored): ``[n_docs,
    n_models]``.

    Without it, a model that is better on *every* document, and also better on the task, makes
    every document correlate with the task: the panel's general quality swamps the per-document
    signal (with a small panel every correlation then sits near 1). Centred, a document correlates
    only when the skilled models do better on it *than they do on the other documents*.
    """
    bpb = np.asarray(bpb, dtype=np.float64)
    if bpb.size == 0:
        return bpb
    with np.errstate(all="ignore"):
        med = np.nanmedian(bpb, axis=0, keepdims=True)  # [1, n_models]
    return bpb - med


def rank_rows(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) along the last axis.

    Args:
        x: ``[..., n]`` values.

    Returns:
        ``[..., n]`` float64 ranks, as ``scipy.stats.rankdata(method="average")`` per row.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    order = np.argsort(x, axis=-1, kind="stable")  # [..., n]
    xs = np.take_along_axis(x, order, axis=-1)
    # ties: for each sorted position, the first and last index of its run of equal values
    new_run = np.ones(xs.shape, dtype=bool)
    new_run[..., 1:] = xs[..., 1:] != xs[..., :-1]
    idx = np.broadcast_to(np.arange(n), xs.shape)
    first = np.maximum.accumulate(np.where(new_run, idx, 0), axis=-1)
    end_run = np.ones(xs.shape, dtype=bool)
    end_run[..., :-1] = new_run[..., 1:]
    last = np.flip(
        np.minimum.accumulate(np.flip(np.where(end_run, idx, n - 1), axis=-1), axis=-1), axis=-1
    )
    ranks_sorted = (first + last) / 2.0 + 1.0
    ranks = np.empty_like(ranks_sorted)
    np.put_along_axis(ranks, order, ranks_sorted, axis=-1)
    return ranks


def spearman(bpb: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Spearman correlation of each document's BPB with the model errors.

    Args:
        bpb: ``[n_docs, n_models]`` bits per byte.
        err: ``[n_models]`` benchmark errors (lower is better).

    Returns:
        ``[n_docs]`` in [-1, 1]; NaN where a row has NaN or is constant.
    """
    bpb, err = _check(bpb, err)
    rx = rank_rows(bpb)  # [n_docs, n_models]
    ry = rank_rows(err)  # [n_models]
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = ry - ry.mean()
    num = rx @ ry  # [n_docs]
    den = np.sqrt((rx * rx).sum(axis=1) * (ry @ ry))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~np.isfinite(bpb).all(axis=1) | (den == 0)] = np.nan
    return out


def concordance(bpb: np.ndarray, err: np.ndarray) -> np.ndarray:
    """PreSelect predictive strength: fraction of concordant model pairs.

    A pair (i, j) of models with ``err[i] < err[j]`` (i is better on the task) is concordant on a
    document when ``bpb[i] < bpb[j]`` (the better model also has the lower loss). Pairs with equal
    errors carry no order and are left out; a pair with equal BPB counts as not concordant.

    Args:
        bpb: ``[n_docs, n_models]``.
        err: ``[n_models]``.

    Returns:
        ``[n_docs]`` in [0, 1] (count / number of ordered pairs); NaN for rows with NaN.
    """
    bpb, err = _check(bpb, err)
    return concordant_pairs(bpb, err) / _n_ordered_pairs(err)


def concordant_pairs(bpb: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Number of concordant model pairs per document (see :func:`concordance`), float64 for NaN."""
    bpb, err = _check(bpb, err)
    if _n_ordered_pairs(err) == 0:
        raise InputError("all models have the same error on the task: no pair orders them")
    count = np.zeros(bpb.shape[0])  # [n_docs]
    for i in range(bpb.shape[1]):
        worse = err > err[i]  # [n_models]: models j that model i beats
        if worse.any():
            count += (bpb[:, i : i + 1] < bpb[:, worse]).sum(axis=1)
    count[~np.isfinite(bpb).all(axis=1)] = np.nan
    return count


def _n_ordered_pairs(err: np.ndarray) -> int:
    return int((err[:, None] < err[None, :]).sum())


def _pair_sign_weights(err: np.ndarray) -> np.ndarray:
    """``c[j] = sum_i sign(err[j] - err[i])``: turns the pairwise U-statistics into one product.

    ``sum_{i<j} sign(y_j - y_i) (x_j - x_i) = sum_j x_j c_j`` because the sign is antisymmetric.
    """
    return np.sign(err[:, None] - err[None, :]).sum(axis=1)  # [n_models]


def product(bpb: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Plan et al. (2016) single-index estimator: ``mean_k bpb[:, k] * err[k]`` (package
    ``product``)."""
    bpb, err = _check(bpb, err)
    return bpb @ err / bpb.shape[1]


def sign(bpb: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Chen & Banerjee (2017): mean over model pairs of ``sign(err_j - err_i) (bpb_j - bpb_i)``."""
    bpb, err = _check(bpb, err)
    n = bpb.shape[1]
    return bpb @ _pair_sign_weights(err) * 2.0 / (n * (n - 1))


def sign_cdf(bpb: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Thrush et al. (2024): :func:`sign` on the empirical CDF of a document's BPB over the models.

    As in the package, the CDF of a model's BPB on a document is its rank among the panel's BPBs
    on that document divided by the number of models, which makes the estimate robust to outliers.
    """
    bpb, err = _check(bpb, err)
    n = bpb.shape[1]
    cdf = rank_rows(bpb) / n  # [n_docs, n_models]
    return cdf @ _pair_sign_weights(err) * 2.0 / (n * (n - 1))


def sign_sign(bpb: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Mean over model pairs of ``sign(err_j - err_i) * sign(bpb_j - bpb_i)`` (Kendall-like)."""
    bpb, err = _check(bpb, err)
    n = bpb.shape[1]
    total = np.zeros(bpb.shape[0])  # [n_docs]
    for i in range(n - 1):
        sy = np.sign(err[i + 1 :] - err[i])  # [n - i - 1]
        total += (np.sign(bpb[:, i + 1 :] - bpb[:, i : i + 1]) * sy).sum(axis=1)
    return total * 2.0 / (n * (n - 1))


def spearmanr(bpb: np.ndarray, err: np.ndarray) -> np.ndarray:
    """The package's ``spearmanr`` estimator (same value as :func:`spearman` when nothing ties)."""
    return spearman(bpb, err)


_FUNCS = {
    "spearman": spearman,
    "concordance": concordance,
    "product": product,
    "sign": sign,
    "sign_cdf": sign_cdf,
    "sign_sign": sign_sign,
}


@dataclass(frozen=True)
class Correlations:
    """Every estimator for the documents of one task.

    Attributes:
        values: estimator name -> ``[n_docs]`` float64 (NaN where not computed).
        n_models: ``[n_docs]`` number of models with a finite BPB for the document.
        models: the panel models used (column order of the BPB matrix).
    """

    values: dict[str, np.ndarray]
    n_models: np.ndarray
    models: tuple[str, ...]


def correlate(
    bpb: np.ndarray,
    err: np.ndarray,
    models: list[str] | tuple[str, ...] = (),
    estimators: tuple[str, ...] = ESTIMATORS,
    min_models: int = 3,
) -> Correlations:
    """All estimators at once; rows whose BPB is not finite for every model get NaN.

    A document a model could not score (NaN) is not averaged over the other models: dropping a
    model for some rows only would mix estimates made on different panels. Such rows are NaN, and
    :attr:`Correlations.n_models` says why.

    Args:
        bpb: ``[n_docs, n_models]``.
        err: ``[n_models]`` errors (lower is better).
        models: model names, for the record.
        estimators: names from :data:`ESTIMATORS`.
        min_models: fewer models than this is an error (a rank correlation over 2 models is a coin).

    Raises:
        ConfigError: unknown estimator, or fewer than ``min_models`` models.
    """
    unknown = [e for e in estimators if e not in _FUNCS]
    if unknown:
        raise ConfigError(f"unknown estimator(s) {unknown}; choose from {list(ESTIMATORS)}")
    bpb, err = _check(bpb, err)
    if bpb.shape[1] < min_models:
        raise ConfigError(
            f"the panel has {bpb.shape[1]} usable model(s) for this task; at least {min_models} "
            "are needed for a meaningful correlation (add models with scores to the panel)"
        )
    finite = np.isfinite(bpb)
    ok = finite.all(axis=1)  # [n_docs]
    values: dict[str, np.ndarray] = {}
    for name in estimators:
        out = np.full(bpb.shape[0], np.nan)
        if ok.any():
            out[ok] = _FUNCS[name](bpb[ok], err)
        values[name] = out
    return Correlations(values=values, n_models=finite.sum(axis=1), models=tuple(models))


# -- projections onto a sampling distribution ------------------------------------------------------
def _check_tau(estimate: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    estimate = np.asarray(estimate, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    if estimate.ndim != 1 or tau.shape != estimate.shape:
        raise InputError(
            f"estimate and tau must be 1-D of one length, got {estimate.shape}, {tau.shape}"
        )
    if not np.all(np.isfinite(estimate)):
        raise InputError("estimate holds NaN/inf: drop the documents without a correlation first")
    if np.any(tau <= 0):
        raise InputError("every cap tau must be > 0 (leave documents out instead of a zero cap)")
    if tau.sum() < 1:
        raise InputError(
            f"caps sum to {tau.sum():.4g} < 1: no distribution fits under them (raise the caps or "
            "add documents)"
        )
    return estimate, tau


def project_linear(estimate: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Maximize ``<w, estimate>`` s.t. ``sum(w) = 1``, ``0 <= w <= tau`` (package ``linear``).

    Fills documents from the highest estimate down, each up to its cap, until the mass is 1; so only
    the ranks of ``estimate`` matter.

    Args:
        estimate: ``[n_docs]`` from any estimator.
        tau: ``[n_docs]`` caps (e.g. the share of the budget a document can fill without repeats).

    Returns:
        ``[n_docs]`` float64 sampling weights summing to 1.
    """
    estimate, tau = _check_tau(estimate, tau)
    order = np.argsort(-estimate, kind="stable")
    cum = np.cumsum(tau[order])
    k = int(np.argmax(cum >= 1))  # first document whose cap completes the mass
    w = np.zeros_like(estimate)
    w[order[:k]] = tau[order[:k]]
    w[order[k]] = 1.0 - w.sum()
    return w


def project_l2(estimate: np.ndarray, tau: np.ndarray, atol: float = 1e-12) -> np.ndarray:
    """Euclidean projection onto ``{w: sum(w) = 1, 0 <= w <= tau}`` (package ``l2``).

    The solution is ``clip(estimate + c, 0, tau)`` for the offset ``c`` found by bisection.

    Args:
        estimate: ``[n_docs]``.
        tau: ``[n_docs]`` caps.
        atol: bisection tolerance on the offset.

    Returns:
        ``[n_docs]`` float64 weights.
    """
    estimate, tau = _check_tau(estimate, tau)
    lo, hi = -estimate.max(), (tau - estimate).max()
    w = np.clip(estimate + hi, 0, tau)
    while hi - lo > atol:
        mid = (lo + hi) / 2
        w = np.clip(estimate + mid, 0, tau)
        if w.sum() > 1:
            hi = mid
        else:
            lo = mid
    return w
