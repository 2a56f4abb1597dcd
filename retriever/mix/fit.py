"""RegMix fit: regress proxy-run scores on mixture weights, check it on held-out runs, and search
the mixture the fitted model likes best.

Models (all map ``X [n_runs, n_pools]`` of weights summing to one to a score):

- ``linear``: ridge ``y = X b`` (no intercept: the weights sum to one, so ``b[i]`` is the predicted
  score of pool ``i`` alone). Its optimum is always a corner.
- ``quadratic``: Scheffe's quadratic mixture model ``y = sum b_i x_i + sum_{i<j} b_ij x_i x_j``
  (ridge), the classic model of mixture experiments; it has interior optima.
- ``gbm``: gradient-boosted trees (scikit-learn; RegMix uses LightGBM), for anything else.

Fit quality is the Spearman rank correlation between held-out predictions (k-fold) and the
observed scores, as in RegMix; ``auto`` picks the model with the best one (the simpler on near
ties). The search samples many mixtures around the proposals' centre (never beyond the largest
weight any proxy run used: the model is not trusted outside what it saw), ranks them with the
model and returns the mean of the ``top_k`` best (RegMix's final step).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retriever._deps import require
from retriever.dataset.mixture import WEIGHT_PREFIX
from retriever.errors import ConfigError, InputError
from retriever.mix.propose import sample_dirichlet

MODELS = ("linear", "quadratic", "gbm")
TIE = 0.02  # Spearman difference under which the simpler model wins


# -- models --------------------------------------------------------------------------------------
class LinearMix:
    """Ridge regression on the weights, without intercept."""

    name = "linear"

    def __init__(self, alpha: float = 1e-3, seed: int = 0):
        self.alpha = alpha

    def features(self, X: np.ndarray) -> np.ndarray:
        return X

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearMix:
        F = self.features(X)  # [n, f]
        self.mean_ = float(y.mean())
        A = F.T @ F + self.alpha * np.eye(F.shape[1])
        self.coef_ = np.linalg.solve(A, F.T @ (y - self.mean_))  # [f]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.features(X) @ self.coef_ + self.mean_


class QuadraticMix(LinearMix):
    """Scheffe quadratic mixture model: linear terms plus every pairwise product ``x_i x_j``."""

    name = "quadratic"

    def features(self, X: np.ndarray) -> np.ndarray:
        i, j = np.triu_indices(X.shape[1], k=1)
        return np.concatenate([X, X[:, i] * X[:, j]], axis=1)  # [n, p + p(p-1)/2]


class GbmMix:
    """Gradient-boosted trees (``sklearn.ensemble.GradientBoostingRegressor``)."""

    name = "gbm"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> GbmMix:
        ensemble = require("sklearn.ensemble")
        self.model_ = ensemble.GradientBoostingRegressor(
            n_estimators=300,
            learning_rate=0.05,
            max_depth=3,
            subsample=0.8,
            min_samples_leaf=max(1, min(5, len(y) // 10)),
            random_state=self.seed,
        )
        self.model_.fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X)


def make_model(name: str, seed: int = 0):
    if name == "linear":
        return LinearMix(seed=seed)
    if name == "quadratic":
        return QuadraticMix(seed=seed)
    if name == "gbm":
        return GbmMix(seed=seed)
    raise ConfigError(f"unknown model {name!r}; use one of auto, {', '.join(MODELS)}")


def gbm_available() -> bool:
    try:
        require("sklearn.ensemble")
    except ImportError:
        return False
    return True


# -- data ----------------------------------------------------------------------------------------
@dataclass
class ProxyResults:
    """Proxy runs read from a results CSV.

    Attributes:
        pools: pool names (from the ``weight/<pool>`` columns).
        ids: ``mix_id`` of each run.
        X: ``[n_runs, n_pools]`` weights, each row normalized to sum to one.
        targets: score column -> ``[n_runs]`` values (NaN where a run has no value).
    """

    pools: list[str]
    ids: list[str]
    X: np.ndarray
    targets: dict[str, np.ndarray] = field(default_factory=dict)


def read_results(path: str | os.PathLike) -> ProxyResults:
    """Read ``mix_id, weight/<pool>..., <score columns>...`` (the proposals CSV with the proxy
    runs' validation scores added as columns; empty cells are missing values).

    Raises:
        InputError: the file does not exist.
        ConfigError: no weight or no score column, or a non-numeric value.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"results file {path} does not exist")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = list(reader.fieldnames or [])
        rows = list(reader)
    wcols = [c for c in cols if c.startswith(WEIGHT_PREFIX)]
    tcols = [c for c in cols if c not in wcols and c != "mix_id"]
    if not wcols:
        raise ConfigError(
            f"{path} has no '{WEIGHT_PREFIX}<pool>' column; start from `retriever mix propose`'s "
            "CSV"
        )
    if not tcols:
        raise ConfigError(
            f"{path} has no score column: add one column per validation score of the proxy runs "
            "(e.g. score/total, score/function-calling)"
        )
    if not rows:
        raise ConfigError(f"{path} holds no run")

    def num(v: str, where: str) -> float:
        if v is None or v.strip() == "":
            return math.nan
        try:
            return float(v)
        except ValueError:
            raise ConfigError(f"{path}: {where} is {v!r}, not a number") from None

    X = np.array([[num(r[c], f"row {i + 1} {c}") for c in wcols] for i, r in enumerate(rows)])
    if np.any(~np.isfinite(X)) or np.any(X < 0):
        raise ConfigError(f"{path}: every weight must be a number >= 0")
    s = X.sum(axis=1, keepdims=True)
    if np.any(s <= 0):
        raise ConfigError(f"{path}: a run has all weights zero")
    targets = {
        c: np.array([num(r[c], f"row {i + 1} {c}") for i, r in enumerate(rows)]) for c in tcols
    }
    ids = [r.get("mix_id") or str(i) for i, r in enumerate(rows)]
    return ProxyResults([c[len(WEIGHT_PREFIX) :] for c in wcols], ids, X / s, targets)


def pick_target(res: ProxyResults, target: str | None) -> tuple[str, np.ndarray]:
    """The target column: ``target``, else ``score/total`` or ``total``, else the only score
    column, else the mean of all score columns (named ``mean(...)``)."""
    if target is not None:
        if target not in res.targets:
            raise ConfigError(f"no column {target!r}; score columns: {', '.join(res.targets)}")
        return target, res.targets[target]
    for name in ("score/total", "total"):
        if name in res.targets:
            return name, res.targets[name]
    if len(res.targets) == 1:
        return next(iter(res.targets.items()))
    Y = np.stack(list(res.targets.values()), axis=1)  # [n_runs, n_targets]
    return f"mean({', '.join(res.targets)})", Y.mean(axis=1)


# -- fit and search --------------------------------------------------------------------------------
def cross_validate(name: str, X: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> dict:
    """Held-out fit quality of model ``name``: k-fold predictions pooled over folds.

    Returns:
        ``{"spearman", "pearson", "mae", "n"}`` on the held-out predictions.
    """
    stats = require("scipy.stats")
    n = len(y)
    k = max(2, min(folds, n))
    perm = np.random.default_rng(seed).permutation(n)
    pred = np.empty(n)
    for f in range(k):
        test = perm[f::k]
        train = np.setdiff1d(perm, test)
        pred[test] = make_model(name, seed).fit(X[train], y[train]).predict(X[test])
    if np.ptp(pred) == 0 or np.ptp(y) == 0:
        rho, r = 0.0, 0.0
    else:
        rho = float(stats.spearmanr(pred, y).statistic)
        r = float(np.corrcoef(pred, y)[0, 1])
    return {"spearman": rho, "pearson": r, "mae": float(np.mean(np.abs(pred - y))), "n": n}


def min_runs(n_pools: int) -> int:
    """Fewest proxy runs worth fitting: one more than the linear model's parameters, at least 6."""
    return max(6, n_pools + 2)


def choose_model(cv: dict[str, dict], model: str = "auto") -> str:
    """``model``, or with ``auto`` the best held-out Spearman (simpler model within :data:`TIE`)."""
    if model != "auto":
        return model
    best = max(cv, key=lambda m: cv[m]["spearman"])
    for m in MODELS:  # simplest first
        if m in cv and cv[m]["spearman"] >= cv[best]["spearman"] - TIE:
            return m
    return best


def search_mixture(
    model,
    X_seen: np.ndarray,
    *,
    maximize: bool = True,
    n_samples: int = 100_000,
    top_k: int = 100,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """RegMix search: sample mixtures around the runs' mean weights, keep those within the largest
    weight seen per pool, and average the ``top_k`` best predicted.

    Returns:
        ``(weights [n_pools], predicted score of those weights)``.
    """
    rng = np.random.default_rng(seed)
    centre = X_seen.mean(axis=0)  # [n_pools]
    upper = X_seen.max(axis=0)  # [n_pools]
    cand = sample_dirichlet(centre, n_samples, rng)  # [m, n_pools]
    cand = np.concatenate([cand, X_seen], axis=0)
    cand = cand[np.all(cand <= upper[None, :] + 1e-9, axis=1)]
    pred = model.predict(cand)  # [m]
    order = np.argsort(-pred if maximize else pred, kind="stable")
    w = cand[order[: max(1, top_k)]].mean(axis=0)
    w = w / w.sum()
    return w, float(model.predict(w[None, :])[0])


def fit_mixture(
    results: ProxyResults,
    target: str | None = None,
    *,
    model: str = "auto",
    maximize: bool = True,
    folds: int = 5,
    n_samples: int = 100_000,
    top_k: int = 100,
    seed: int = 0,
) -> dict:
    """Fit every score column (fit quality per column), then search the best mixture for
    ``target`` with the chosen model.

    Returns:
        A JSON-able dict: ``weights`` (what ``build-dataset --mixture`` reads), ``target``,
        ``goal``, ``model``, ``predicted``, ``fit`` (held-out quality per target and model),
        ``best_observed`` (the best proxy run), ``n_runs``, ``skipped_runs``, ``search``.

    Raises:
        ConfigError: too few runs with a value for the target, or an unknown model.
    """
    if model != "auto" and model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; use one of auto, {', '.join(MODELS)}")
    names = [m for m in MODELS if m != "gbm" or gbm_available()]
    if model == "gbm" and "gbm" not in names:
        require("sklearn.ensemble")  # raises with the install hint
    if model != "auto":
        names = [model]  # a chosen model: only its held-out check (gbm's costs seconds per fold)
    tname, y_all = pick_target(results, target)
    fit_report: dict[str, dict] = {}
    all_targets = dict(results.targets)
    all_targets.setdefault(tname, y_all)
    for col, y in all_targets.items():
        ok = np.isfinite(y)
        if ok.sum() >= min_runs(len(results.pools)):
            fit_report[col] = {
                m: cross_validate(m, results.X[ok], y[ok], folds, seed) for m in names
            }
    ok = np.isfinite(y_all)
    if ok.sum() < min_runs(len(results.pools)):
        raise ConfigError(
            f"{int(ok.sum())} proxy runs have a value for {tname!r}; fitting {len(results.pools)} "
            f"pools needs at least {min_runs(len(results.pools))} (RegMix uses hundreds of cheap "
            "runs)"
        )
    X, y = results.X[ok], y_all[ok]
    chosen = choose_model(fit_report[tname], model)
    fitted = make_model(chosen, seed).fit(X, y)
    w, predicted = search_mixture(
        fitted, X, maximize=maximize, n_samples=n_samples, top_k=top_k, seed=seed
    )
    best = int(np.argmax(y) if maximize else np.argmin(y))
    ids = [i for i, good in zip(results.ids, ok, strict=True) if good]
    return {
        "weights": {p: round(float(v), 6) for p, v in zip(results.pools, w, strict=True)},
        "target": tname,
        "goal": "max" if maximize else "min",
        "model": chosen,
        "predicted": predicted,
        "fit": fit_report,
        "held_out_spearman": fit_report[tname][chosen]["spearman"],
        "best_observed": {
            "mix_id": ids[best],
            "value": float(y[best]),
            "weights": {p: float(v) for p, v in zip(results.pools, X[best], strict=True)},
        },
        "n_runs": int(ok.sum()),
        "skipped_runs": [i for i, good in zip(results.ids, ok, strict=True) if not good],
        "search": {"n_samples": n_samples, "top_k": top_k, "seed": seed, "folds": folds},
    }
