"""Sampled scoring: which documents get embedded, decided per document by a seeded hash of its id.

``keep(id)`` is ``hash(seed, id) < fraction x 2^64``: no global pass, no shared state, so every
shard and every worker agrees on its own, a rerun picks the same documents, and adding shards (or
raising the fraction) never reshuffles the documents already chosen (a larger fraction keeps a
superset). The sample is uniform over documents because the hash is (blake2b, 64 bits).

``[score] sample`` is a fraction in (0, 1] (a float, or ``"5%"``) or a document count (an int, or
``"2M"``): a count becomes the fraction ``count / corpus documents``, with the corpus size read from
the shards' parquet metadata or estimated from a prefix (:func:`retriever.corpus.size.corpus_size`).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

from retriever.errors import ConfigError

_SCALE = 2**64
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}


@dataclass(frozen=True)
class SampleSpec:
    """What the user asked for: a ``fraction`` or a ``count`` (exactly one), and the seed."""

    fraction: float | None = None
    count: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.count is None):
            raise ConfigError("a sample is either a fraction or a document count")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ConfigError(f"sample fraction must be in (0, 1], got {self.fraction}")
        if self.count is not None and self.count < 1:
            raise ConfigError(f"sample count must be >= 1, got {self.count}")

    def describe(self) -> str:
        return (
            f"{self.fraction:g} of documents"
            if self.fraction is not None
            else f"{self.count:,} documents"
        )


def parse_sample(value: Any, seed: int = 0) -> SampleSpec | None:
    """``None`` -> no sampling; float in (0, 1] or ``"5%"`` -> fraction; int or ``"2M"`` -> count.

    Raises:
        ConfigError: anything else (a negative number, ``"abc"``, a float above 1).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"sample must be a fraction or a document count, got {value!r}")
    if isinstance(value, int):
        return SampleSpec(count=value, seed=seed)
    if isinstance(value, float):
        if value > 1 and value.is_integer():
            return SampleSpec(count=int(value), seed=seed)
        return SampleSpec(fraction=value, seed=seed)
    if isinstance(value, str):
        v = value.strip().lower().replace("_", "").replace(",", "")
        if v.endswith("%"):
            try:
                return SampleSpec(fraction=float(v[:-1]) / 100, seed=seed)
            except ValueError:
                pass
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmbg]?)", v)
        if m:
            num, suf = float(m.group(1)), m.group(2)
            if not suf and "." in m.group(1) and num <= 1:
                return SampleSpec(fraction=num, seed=seed)
            return SampleSpec(count=int(round(num * _SUFFIX[suf])), seed=seed)
    raise ConfigError(
        f'sample must be a fraction in (0, 1] (0.01, "1%") or a document count (2000000, "2M"), '
        f"got {value!r}"
    )


def hash_unit(doc_id: str, seed: int = 0) -> int:
    """A uniform 64-bit integer of ``(seed, doc_id)``: the same on every machine and run."""
    h = hashlib.blake2b(
        doc_id.encode("utf-8", "surrogatepass"),
        digest_size=8,
        key=seed.to_bytes(8, "little", signed=True),
    )
    return int.from_bytes(h.digest(), "little")


@dataclass(frozen=True)
class DocSampler:
    """Keeps a document when ``hash(seed, id) < fraction x 2^64`` (see module docstring).

    Attributes:
        fraction: share of documents kept, in (0, 1].
        seed: the hash key (``[run] seed``).
        requested: what the user asked for (``"2,000,000 documents"``), for the record.
        basis: how a count became the fraction (corpus size and how it was found), or ``""``.
    """

    fraction: float
    seed: int = 0
    requested: str = ""
    basis: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"sample fraction must be in (0, 1], got {self.fraction}")

    @property
    def cut(self) -> int:
        return min(_SCALE, math.floor(self.fraction * _SCALE))

    def keep(self, doc_id: str) -> bool:
        return self.fraction >= 1 or hash_unit(doc_id, self.seed) < self.cut

    def settings(self) -> dict[str, Any]:
        """What a score folder's manifest records (a resume must sample the same way)."""
        return {
            "fraction": self.fraction,
            "seed": self.seed,
            "requested": self.requested,
            "basis": self.basis,
        }


def resolve_sample(
    spec: SampleSpec | None, n_docs: int | None = None, basis: str = ""
) -> DocSampler | None:
    """The sampler of ``spec``; a count needs the corpus size ``n_docs`` (exact or estimated).

    Raises:
        ConfigError: a count without a corpus size.
    """
    if spec is None:
        return None
    if spec.fraction is not None:
        return DocSampler(spec.fraction, spec.seed, spec.describe())
    if not n_docs:
        raise ConfigError("a sample count needs the corpus size; pass a fraction instead")
    frac = min(1.0, (spec.count or 0) / n_docs)
    return DocSampler(
        frac,
        spec.seed,
        spec.describe(),
        f"{spec.count:,} of ~{n_docs:,} documents ({basis or 'corpus size'}) -> fraction "
        f"{frac:.6g}",
    )
