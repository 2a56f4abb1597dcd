"""Counters every stage keeps: ``seen``, ``kept``, ``dropped/<reason>``, ``rejected/<reason>``.

The invariant every run checks: ``seen == kept + dropped + rejected``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    """Named counters plus wall time; merge with ``+=`` across shards and workers."""

    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def inc(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def __iadd__(self, other: Stats) -> Stats:
        self.counts.update(other.counts)
        self.seconds += other.seconds
        return self

    def total(self, prefix: str) -> int:
        return sum(v for k, v in self.counts.items() if k == prefix or k.startswith(prefix + "/"))

    def balanced(self) -> bool:
        """True when every record seen was kept, dropped or rejected, exactly once."""
        return self.counts["seen"] == self.counts["kept"] + self.total("dropped") + self.total(
            "rejected"
        )

    def to_dict(self) -> dict:
        return {"counts": dict(sorted(self.counts.items())), "seconds": round(self.seconds, 3)}

    @classmethod
    def from_dict(cls, d: dict) -> Stats:
        return cls(Counter(d.get("counts", {})), d.get("seconds", 0.0))
