"""Budgeted selection across pools: the pure array core of ``build-dataset`` (no I/O).

Each pool ranks its candidates (highest score first, or score-weighted sampling without
replacement), then the pools take documents in turns, always the pool that has filled the smallest
share of its budget. A document already taken by another pool (same id, or same normalized text)
is skipped as a duplicate and the pool that took it is recorded. A pool stops at the first document
that would overflow its budget, so no pool ever exceeds it (it ends short by less than one
document) and the order stays strictly the ranking order.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field

import numpy as np

from retriever.dataset.config import DEFAULT_TIERS, ORDERS, check_tiers
from retriever.errors import ConfigError


def text_key(text: str) -> int:
    """64-bit hash of the normalized text (lower case, whitespace runs collapsed, stripped)."""
    norm = " ".join(text.lower().split())  # str.split(): any whitespace run, 5x faster than a regex
    return int.from_bytes(hashlib.blake2b(norm.encode("utf-8"), digest_size=8).digest(), "little")


def id_key(doc_id: str) -> int:
    """64-bit hash of a document id."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "little")


@dataclass
class Candidates:
    """The candidates of one pool, one row per document (rejected records excluded).

    Attributes:
        n_tokens: ``[n]`` int64 token counts.
        score: ``[n]`` float64 scores; NaN when the record has none (ranked last).
        id_hash: ``[n]`` uint64 :func:`id_key` of the ids.
        text_hash: ``[n]`` uint64 :func:`text_key` of the texts.
        domain: ``[n]`` int domain codes (ClimbLab cluster or k-means domain), for the
            ``stratified`` order; ``None``: one domain.
    """

    n_tokens: np.ndarray
    score: np.ndarray
    id_hash: np.ndarray
    text_hash: np.ndarray
    domain: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.n_tokens)
        if not (len(self.score) == len(self.id_hash) == len(self.text_hash) == n):
            raise ValueError("Candidates arrays must have the same length")
        if self.domain is not None and len(self.domain) != n:
            raise ValueError("Candidates.domain must have one code per candidate")

    def __len__(self) -> int:
        return len(self.n_tokens)


@dataclass
class PoolSelection:
    """What one pool contributed.

    Attributes:
        selected: indices into the pool's candidates, in the order they were taken.
        duplicates: indices skipped because another (or the same) pool already took the document.
        duplicate_of: for each duplicate, the name of the pool that took it.
        budget_dropped: indices never reached because the budget was full (or the pool closed).
        tokens: tokens taken; ``budget``: tokens asked for.
    """

    selected: np.ndarray
    duplicates: np.ndarray
    duplicate_of: list[str]
    budget_dropped: np.ndarray
    tokens: int
    budget: int

    @property
    def shortfall(self) -> int:
        return max(0, self.budget - self.tokens)


@dataclass
class Selection:
    pools: dict[str, PoolSelection] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.pools.values())


def split_budget(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Token budget per pool: ``floor(total * w)`` with weights normalized to sum to one.

    Raises:
        ConfigError: a negative or non-finite weight, or all weights zero.
    """
    if total < 0:
        raise ConfigError(f"the token budget must be positive, got {total}")
    for k, w in weights.items():
        if not np.isfinite(w) or w < 0:
            raise ConfigError(f"mixture weight of {k!r} is {w}; weights must be >= 0")
    s = float(sum(weights.values()))
    if s <= 0:
        raise ConfigError("every mixture weight is zero; give at least one pool a positive weight")
    return {k: int(total * (w / s)) for k, w in weights.items()}


def stratified_order(c: Candidates, tiers=DEFAULT_TIERS) -> np.ndarray:
    """Indices of ``c`` filling the pool by quality tiers within domains.

    Each document's tier comes from its rank *within its domain* (score descending): with the
    default tiers, the top 10% of every domain form tier 0 and supply 70% of the tokens, the next
    40% (10-50%) tier 1 with 30%. Within a tier, documents are ordered by that within-domain rank,
    so every domain contributes in proportion to its size; tiers are interleaved so each has taken
    its share of the tokens whenever the pool stops. Documents below the last cut (and documents
    of a zero-share tier) come last, best first.
    """
    tiers = check_tiers(tiers)
    n = len(c)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    score = np.where(np.isnan(c.score), -np.inf, c.score)
    dom = np.zeros(n, dtype=np.int64) if c.domain is None else np.asarray(c.domain, dtype=np.int64)
    # within-domain rank fraction q in [0, 1): 0 = the domain's best document
    by = np.lexsort((np.arange(n), -score, dom))  # domain, then score desc, then position
    d_sorted = dom[by]
    starts = np.r_[0, np.flatnonzero(np.diff(d_sorted)) + 1]
    sizes = np.diff(np.r_[starts, n])
    pos = np.arange(n) - np.repeat(starts, sizes)
    q = np.empty(n, dtype=np.float64)
    q[by] = pos / np.repeat(sizes, sizes)
    cuts = np.array([a for a, _ in tiers])
    share = np.array([b for _, b in tiers])
    tier = np.searchsorted(cuts, q, side="right")  # [n]; len(tiers) = below the last cut
    key = np.full(n, np.inf)
    for j, w in enumerate(share):
        idx = np.flatnonzero(tier == j)
        if not len(idx) or w <= 0:
            continue
        idx = idx[np.lexsort((idx, -score[idx], q[idx]))]
        before = np.cumsum(c.n_tokens[idx]) - c.n_tokens[idx]  # tokens of the tier taken before
        key[idx] = before / w
    head = np.flatnonzero(np.isfinite(key))
    head = head[np.lexsort((head, key[head]))]
    rest = np.flatnonzero(~np.isfinite(key))
    rest = rest[np.lexsort((rest, -score[rest], q[rest]))]
    return np.concatenate([head, rest]).astype(np.int64)


def rank(
    c: Candidates, order: str = "top", rng: np.random.Generator | None = None, tiers=DEFAULT_TIERS
) -> np.ndarray:
    """Indices of ``c`` in the order a pool takes them.

    ``top``: score descending (NaN last, ties by position). ``weighted``: a weighted random order
    without replacement, P(first) proportional to the score (Efraimidis-Spirakis keys
    ``log(u) / w``; scores are clipped to ``[1e-6, inf)``, NaN counts as 1e-6). ``stratified``:
    quality tiers within domains (:func:`stratified_order`).
    """
    if order not in ORDERS:
        raise ConfigError(f"unknown order {order!r}; use one of {', '.join(ORDERS)}")
    if order == "stratified":
        return stratified_order(c, tiers)
    score = np.where(np.isnan(c.score), -np.inf, c.score)  # [n]
    if order == "top":
        return np.argsort(-score, kind="stable")
    rng = rng if rng is not None else np.random.default_rng(0)
    w = np.clip(np.where(np.isfinite(score), score, 0.0), 1e-6, None)
    keys = np.log(rng.random(len(c))) / w  # [n], larger is earlier
    return np.argsort(-keys, kind="stable")


def select_budgeted(
    pools: dict[str, Candidates],
    budgets: dict[str, int],
    order: str = "top",
    seed: int = 0,
    tiers=DEFAULT_TIERS,
) -> Selection:
    """Choose documents per pool under per-pool token budgets, deduplicated across pools.

    Args:
        pools: candidates per pool name.
        budgets: tokens per pool name (a pool missing here or at 0 takes nothing).
        order: ``top``, ``weighted`` or ``stratified`` (see :func:`rank`).
        tiers: the ``stratified`` order's ``(cut, share)`` tiers.
        seed: seed of the weighted order (one stream per pool, by pool position in ``pools``).

    Returns:
        A :class:`Selection`; for every pool, selected + duplicates + budget_dropped are exactly its
        candidates.
    """
    names = list(pools)
    curs = []
    for k, name in enumerate(names):
        rng = np.random.default_rng([seed, k])
        curs.append(_Cursor(pools[name], rank(pools[name], order, rng, tiers)))
    budget = [int(budgets.get(n, 0)) for n in names]
    filled = [0] * len(names)
    sel: list[list[int]] = [[] for _ in names]
    dup: list[list[int]] = [[] for _ in names]
    dup_of: list[list[str]] = [[] for _ in names]
    owner_id: dict[int, int] = {}  # hash -> pool: memory ~200 bytes per selected document
    owner_text: dict[int, int] = {}
    heap = [(0.0, k) for k in range(len(names)) if budget[k] > 0 and curs[k].n]
    heapq.heapify(heap)
    while heap:
        _, k = heapq.heappop(heap)
        cur = curs[k]
        # skip duplicates until this pool's next new document (or its end)
        while cur.ptr < cur.n:
            i, _, ih, th = cur.current()
            owner = owner_id.get(ih)
            if owner is None:
                owner = owner_text.get(th)
            if owner is None:
                break
            dup[k].append(i)
            dup_of[k].append(names[owner])
            cur.ptr += 1
        if cur.ptr >= cur.n:
            continue  # exhausted: the pool ends short of its budget
        i, nt, ih, th = cur.current()
        if filled[k] + nt > budget[k]:
            continue  # full: this document and the rest are budget drops
        cur.ptr += 1
        filled[k] += nt
        sel[k].append(i)
        owner_id[ih] = k
        owner_text[th] = k
        if cur.ptr < cur.n and filled[k] < budget[k]:
            heapq.heappush(heap, (filled[k] / budget[k], k))
    out = Selection()
    for k, name in enumerate(names):
        out.pools[name] = PoolSelection(
            selected=np.asarray(sel[k], dtype=np.int64),
            duplicates=np.asarray(dup[k], dtype=np.int64),
            duplicate_of=dup_of[k],
            budget_dropped=np.asarray(curs[k].order[curs[k].ptr :], dtype=np.int64),
            tokens=filled[k],
            budget=budget[k],
        )
    return out


class _Cursor:
    """Walks one pool's ranking, converting blocks of it to Python ints on demand (a pool of
    tens of millions of candidates never becomes four Python lists at once)."""

    BLOCK = 1 << 16

    def __init__(self, c: Candidates, order: np.ndarray):
        self.c = c
        self.order = order
        self.n = len(order)
        self.ptr = 0
        self._block = -1

    def current(self) -> tuple[int, int, int, int]:
        """(candidate index, tokens, id hash, text hash) at ``ptr``."""
        b, j = divmod(self.ptr, self.BLOCK)
        if b != self._block:
            idx = self.order[b * self.BLOCK : (b + 1) * self.BLOCK]
            self._i = idx.tolist()
            self._t = self.c.n_tokens[idx].tolist()
            self._h = self.c.id_hash[idx].tolist()
            self._x = self.c.text_hash[idx].tolist()
            self._block = b
        return self._i[j], self._t[j], self._h[j], self._x[j]
