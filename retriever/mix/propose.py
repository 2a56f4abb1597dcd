"""RegMix proposals: candidate mixtures sampled from Dirichlets around the pools' token shares.

As in RegMix (Liu et al. 2024, ``mixture_config/synthesize_mixture.py``): the prior is the token
share of each pool, smoothed with a temperature (``prior ** t``, renormalized); each candidate
draws a concentration strength from 15 log-spaced values in ``[min_strength, max_strength]`` (small:
mixtures near a corner, large: near the prior) and samples ``Dirichlet(prior * strength)``.
Candidates breaking a pool's upper bound (more tokens than the pool can give, counting
``max_epochs`` repeats) are rejected; weights below ``minimum`` become zero; weights are rounded to
the ``minimum`` grid and near-identical candidates removed, then ``n`` are drawn at random.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retriever.dataset.mixture import WEIGHT_PREFIX
from retriever.errors import ConfigError
from retriever.io import AtomicWriter, is_special, resolve_target, write_json_atomic

if TYPE_CHECKING:
    from retriever.mix.run import MixRunConfig

N_STRENGTHS = 15


def smooth_prior(shares: Mapping[str, float], temperature: float = 0.5) -> np.ndarray:
    """Token shares -> the Dirichlet centre ``[n_pools]`` (``shares ** temperature``, normalized).

    Raises:
        ConfigError: a negative share, or no positive share.
    """
    p = np.asarray([float(v) for v in shares.values()], dtype=np.float64)
    if p.size == 0 or np.any(~np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise ConfigError(f"token shares {shares} must be >= 0 with at least one positive")
    if not 0 < temperature <= 1:
        raise ConfigError(f"temperature {temperature} must be in (0, 1]")
    p = p / p.sum()
    p = np.where(p > 0, p**temperature, 0.0)
    return p / p.sum()


def upper_bounds(
    pool_tokens: Mapping[str, float], budget: int | None, max_epochs: float = 4.0
) -> np.ndarray | None:
    """Largest weight each pool can take: ``min(1, tokens * max_epochs / budget)`` (``None``
    without a budget)."""
    if budget is None:
        return None
    if budget <= 0 or max_epochs <= 0:
        raise ConfigError("budget and max_epochs must be positive")
    t = np.asarray([float(v) for v in pool_tokens.values()])
    return np.minimum(1.0, t * max_epochs / budget)


def sample_dirichlet(
    prior: np.ndarray,
    n: int,
    rng: np.random.Generator,
    min_strength: float = 0.1,
    max_strength: float = 5.0,
) -> np.ndarray:
    """``n`` raw Dirichlet samples ``[n, n_pools]`` around ``prior`` with RegMix's random strength.

    Pools with a zero prior stay at zero. Rows that underflow to all zeros (tiny concentrations)
    are dropped, so fewer than ``n`` rows may come back.
    """
    strengths = np.logspace(np.log10(min_strength), np.log10(max_strength), N_STRENGTHS)
    s = rng.choice(strengths, size=n)  # [n]
    alpha = prior[None, :] * s[:, None]  # [n, n_pools]
    g = np.zeros_like(alpha)
    pos = alpha > 0
    g[pos] = rng.gamma(alpha[pos])  # Dirichlet = normalized independent gammas
    tot = g.sum(axis=1)
    ok = tot > 0
    return g[ok] / tot[ok, None]


def propose_mixtures(
    shares: Mapping[str, float],
    n: int = 64,
    *,
    seed: int = 0,
    temperature: float = 0.5,
    min_strength: float = 0.1,
    max_strength: float = 5.0,
    minimum: float = 1e-3,
    upper: np.ndarray | None = None,
    oversample: int = 100,
) -> list[dict[str, float]]:
    """``n`` distinct candidate mixtures over the pools of ``shares`` (see the module doc).

    Args:
        shares: token share (or token count) of each pool: the centre of the proposals.
        n: number of mixtures (proxy runs) to propose.
        seed: random seed; the same arguments give the same proposals.
        temperature: smoothing of the shares (RegMix uses 0.5).
        min_strength, max_strength: range of the Dirichlet concentration multiplier.
        minimum: weights below it become 0; weights are rounded to multiples of it.
        upper: ``[n_pools]`` largest weight per pool (:func:`upper_bounds`), or ``None``.
        oversample: candidates drawn per requested mixture before rejection and deduplication.

    Raises:
        ConfigError: fewer than ``n`` distinct mixtures satisfy the bounds.
    """
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    names = list(shares)
    prior = smooth_prior(shares, temperature)
    if int(np.sum(prior > 0)) < 2:
        from retriever.dataset.mixture import DOMAIN_PREFIX

        if all(k.startswith(DOMAIN_PREFIX) for k in names):
            raise ConfigError(
                f"a mixture over domains needs documents in at least two domains; shares: "
                f"{shares} (domain/none: documents no domain names): assign domains with "
                "`retriever domains` (--domains DIR, or a [domains] section in a run) or use a "
                "corpus with cluster_id"
            )
        raise ConfigError(
            f"a mixture needs at least two non-empty pools; shares: {shares} "
            "(add a task, or a general-quality pool with --pool general=PATH)"
        )
    rng = np.random.default_rng(seed)
    w = sample_dirichlet(prior, n * oversample, rng, min_strength, max_strength)  # [m, n_pools]
    if upper is not None:
        w = w[np.all(w <= np.asarray(upper)[None, :] + 1e-12, axis=1)]
    w = np.where(w < minimum, 0.0, w)
    w = w[w.sum(axis=1) > 0]
    w = w / w.sum(axis=1, keepdims=True)
    w = np.round(w / minimum) * minimum
    w = w[w.sum(axis=1) > 0]
    w = np.unique(np.round(w, 10), axis=0)  # exact duplicates after rounding to the grid
    if len(w) < n:
        raise ConfigError(
            f"only {len(w)} distinct mixtures satisfy the bounds, {n} asked: lower --n, raise "
            "--max-epochs or lower --budget (a pool too small for its share caps it)"
        )
    pick = rng.choice(len(w), size=n, replace=False)
    w = w[np.sort(pick)]
    rng.shuffle(w)
    return [{k: float(round(v, 6)) for k, v in zip(names, row, strict=True)} for row in w]


def propose(
    shares: Mapping[str, float],
    config: MixRunConfig,
    budget: int | None = None,
    n: int | None = None,
) -> tuple[list[dict[str, float]], np.ndarray | None]:
    """``n`` (default ``config.n``) mixtures of :func:`propose_mixtures` with ``config``'s
    proposal settings (``seed``, ``temperature``, the strengths, ``minimum``), each pool capped
    for ``budget`` by :func:`upper_bounds` (``max_epochs``); returns the mixtures and the caps."""
    upper = upper_bounds(shares, budget, config.max_epochs)
    mixes = propose_mixtures(
        shares,
        config.n if n is None else n,
        seed=config.seed,
        temperature=config.temperature,
        min_strength=config.min_strength,
        max_strength=config.max_strength,
        minimum=config.minimum,
        upper=upper,
    )
    return mixes, upper


def write_proposals(path: str | os.PathLike, mixtures: list[dict[str, float]], info: dict) -> None:
    """``path`` (CSV: ``mix_id``, ``weight/<pool>``...) and ``path.json`` (the settings)."""
    from retriever.io import disk_guard

    path = Path(path)
    names = list(mixtures[0])
    with disk_guard(str(path)):
        with AtomicWriter(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["mix_id", *[WEIGHT_PREFIX + k for k in names]])
            for i, m in enumerate(mixtures):
                w.writerow([i, *[f"{m[k]:.6g}" for k in names]])
        info = {**info, "pools": names, "n": len(mixtures)}
        if not is_special(path):  # `-o /dev/stdout`: no settings file beside a device
            write_json_atomic(
                resolve_target(path).with_name(resolve_target(path).name + ".json"), info
            )
