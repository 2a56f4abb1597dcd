"""Mixture specs: which share of the token budget each pool gets.

A mixture is a ``{pool: weight}`` dict (weights >= 0, normalized where used). It is given as:

- inline ``function-calling=0.6,reasoning=0.4``;
- ``equal``: the same weight for every pool;
- a JSON file: ``{"weights": {...}}`` (what ``retriever mix fit`` writes) or a flat ``{pool: w}``;
- a CSV file of proposals (``retriever mix propose``): columns ``mix_id`` and ``weight/<pool>``;
  pick the row with ``mix_id``.

A mixture *over domains* names ``domain/<domain>`` keys instead of pools
(``domain/k003=0.2,domain/k007=0.8``; ``retriever mix propose --over domains`` writes such
columns): the budget is split between the corpus domains (``retriever domains``, or the records'
``cluster_id``) of the documents of every pool given; see :func:`is_domain_mixture`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from retriever.errors import ConfigError, InputError
from retriever.io import read_json_object

WEIGHT_PREFIX = "weight/"
DOMAIN_PREFIX = "domain/"  # mixture keys of a mixture over domains
NO_DOMAIN = "none"  # the domain of a document the domain assignment does not name


def domain_key(domain: str | None) -> str:
    """The mixture key of a domain: ``domain/<domain>`` (``domain/none`` for no domain)."""
    return DOMAIN_PREFIX + (str(domain) if domain not in (None, "") else NO_DOMAIN)


def is_domain_mixture(weights: dict[str, float]) -> bool:
    """True when every key is a ``domain/<domain>`` key, False when none is.

    Raises:
        ConfigError: the mixture names pools and domains together.
    """
    doms = [k for k in weights if k.startswith(DOMAIN_PREFIX)]
    if doms and len(doms) != len(weights):
        others = [k for k in weights if not k.startswith(DOMAIN_PREFIX)]
        raise ConfigError(
            f"the mixture names domains ({doms[0]}, ...) and pools ({', '.join(others)}) together:"
            " a mixture is over pools or over domains (`domain/<name>` keys), not both"
        )
    return bool(doms)


def parse_mixture(
    spec: str, pools: list[str] | None = None, mix_id: str | int | None = None
) -> dict[str, float]:
    """Read a mixture spec (see the module doc) into ``{pool: weight}``.

    Args:
        spec: inline weights, ``equal``, or a .json / .csv file.
        pools: the pool names (needed for ``equal``).
        mix_id: the row of a proposals CSV.

    Raises:
        ConfigError: malformed spec, unknown row, negative or non-numeric weight.
    """
    spec = spec.strip()
    if spec == "equal":
        if not pools:
            raise ConfigError("mixture 'equal' needs the pools (pass --pools)")
        return {p: 1.0 for p in pools}
    path = Path(spec)
    if spec.endswith(".json"):
        weights = read_json_object(spec, "mixture file", "weights", '{"weights": {pool: weight}}')
        return _check(weights, spec)
    if spec.endswith(".csv"):
        if not path.is_file():
            raise InputError(f"mixture file {spec} does not exist")
        rows = read_weight_csv(path)
        if mix_id is None:
            if len(rows) != 1:
                raise ConfigError(f"{spec} holds {len(rows)} mixtures; pick one with --mix-id")
            return rows[0][1]
        for rid, w in rows:
            if rid == str(mix_id):
                return w
        raise ConfigError(
            f"{spec} has no mixture with mix_id {mix_id} (ids: {rows[0][0]}..{rows[-1][0]})"
        )
    if "=" in spec:
        out = {}
        for part in spec.split(","):
            name, sep, val = part.partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"mixture {spec!r}: write pool=weight pairs separated by commas")
            out[name.strip()] = val.strip()
        return _check(out, spec)
    raise ConfigError(
        f"mixture {spec!r} not understood: use pool=weight,..., 'equal', a .json or a .csv file"
    )


def read_weight_csv(path: str | Path) -> list[tuple[str, dict[str, float]]]:
    """Rows of a proposals / results CSV as ``(mix_id, {pool: weight})``."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = [c for c in (reader.fieldnames or []) if c.startswith(WEIGHT_PREFIX)]
        if not cols:
            raise ConfigError(
                f"{path} has no '{WEIGHT_PREFIX}<pool>' column (columns: {reader.fieldnames}); "
                "start from the CSV that `retriever mix propose` writes"
            )
        rows = []
        for i, rec in enumerate(reader):
            w = {c[len(WEIGHT_PREFIX) :]: rec[c] for c in cols}
            rows.append((str(rec.get("mix_id", i)), _check(w, f"{path} row {i + 1}")))
    if not rows:
        raise ConfigError(f"{path} holds no mixture row")
    return rows


def _check(weights: dict, where: str) -> dict[str, float]:
    out = {}
    for k, v in weights.items():
        try:
            w = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: weight of {k!r} is {v!r}, not a number") from None
        if not math.isfinite(w) or w < 0:
            raise ConfigError(f"{where}: weight of {k!r} is {v!r}; weights must be >= 0")
        out[str(k)] = w
    if not out or sum(out.values()) <= 0:
        raise ConfigError(
            f"{where}: every weight is zero; give at least one pool a positive weight"
        )
    return out
