"""Assign every scored document a domain, and describe each domain (size, top terms, samples).

Input: a ``retriever score`` folder (its parquet files hold each document's unit embedding, so
nothing is re-embedded). Output ``OUT/``:

- ``domains.parquet``: ``id, shard, row, domain`` (str), ``distance`` (squared L2 to the centroid;
  NaN for cluster ids);
- ``domains.json``: the settings, and per domain its size, share, top terms (by how much more often
  a word appears in the domain's previews than in all of them) and three sample previews;
- ``centroids.npy`` (k-means only): ``[k, dim]`` float32, so new documents can be assigned later.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from retriever._deps import require
from retriever.errors import ConfigError, InputError
from retriever.io import AtomicWriter, read_json, write_json_atomic

SOURCES = ("auto", "cluster", "kmeans")
_WORD = re.compile(r"[a-z][a-z'-]{2,}")
_STOP = frozenset(
    "the and for are but not you all any can had her was one our out has have been were from this "
    "that with they will would there their what which when your more also into than then them "
    "its it's about some such only other these those each".split()
)


@dataclass(frozen=True)
class DomainConfig:
    """Settings of :func:`assign_domains`.

    Attributes:
        source: ``auto`` (cluster ids when present, else k-means), ``cluster`` or ``kmeans``.
        k: number of k-means domains.
        niter: k-means iterations.
        seed: k-means seed (the same seed gives the same domains).
        max_train: vectors k-means trains on (a seeded sample; all are assigned).
        top_terms, samples: how much of each domain the description shows.
    """

    source: str = "auto"
    k: int = 16
    niter: int = 20
    seed: int = 0
    max_train: int = 200_000
    top_terms: int = 8
    samples: int = 3

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"domain source {self.source!r}: use one of {', '.join(SOURCES)}")
        for name in ("k", "niter", "max_train"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"domains {name} must be an integer >= 1, got {v!r}")


def assign_domains(
    score_dir: str | os.PathLike, out: str | os.PathLike, config: DomainConfig | None = None
) -> dict:
    """Write the domains of every document of ``score_dir`` to ``out``; returns ``domains.json``.

    Raises:
        InputError: the score folder has no finished shard, or ``source="cluster"`` and it has
            no ``cluster_id`` column.
        ConfigError: k-means asked for more domains than there are documents.
    """
    from retriever.score import read_scores

    config = config or DomainConfig()
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    table = read_scores(score_dir, with_vectors=True)
    n = table.num_rows
    names = table.column_names
    has_cluster = "cluster_id" in names and table.column("cluster_id").null_count < n
    if config.source == "cluster" and not has_cluster:
        raise InputError(f"{score_dir} has no cluster_id column: use --source kmeans")
    use_cluster = config.source == "cluster" or (config.source == "auto" and has_cluster)
    previews = table.column("preview").to_pylist() if "preview" in names else [""] * n
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if use_cluster:
        domain = [cluster_domain(c) for c in table.column("cluster_id").to_pylist()]
        distance = np.full(n, np.nan, dtype=np.float32)
        method = "cluster_id"
    else:
        if config.k > n:
            raise ConfigError(
                f"k-means with k={config.k} needs at least {config.k} documents; "
                f"{score_dir} has {n}"
            )
        x = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)  # [n, dim]
        centroids, labels, distance = _kmeans(x, config)
        domain = [f"k{int(i):03d}" for i in labels]
        with AtomicWriter(out / "centroids.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, centroids)
        method = "kmeans"
    result = pa.table(
        {
            "id": table.column("id"),
            "shard": table.column("shard"),
            "row": table.column("row"),
            "domain": pa.array(domain, pa.string()),
            "distance": pa.array(distance, pa.float32()),
        }
    )
    with AtomicWriter(out / "domains.parquet") as tmp:
        pq.write_table(result, tmp)
    summary = {
        "settings": {**asdict(config), "score_dir": str(score_dir)},
        "method": method,
        "n_docs": n,
        "domains": describe_domains(domain, previews, config),
    }
    write_json_atomic(out / "domains.json", summary)
    return summary


def cluster_domain(cluster_id: object) -> str:
    """The domain a record's ``cluster_id`` gives: the id as a string, ``""`` (no domain) for
    none; the ``cluster`` of a dataset scan row is the same."""
    return "" if cluster_id is None else str(cluster_id)


def _kmeans(x: np.ndarray, config: DomainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    faiss = require("faiss")
    rng = np.random.default_rng(config.seed)
    train = (
        x if len(x) <= config.max_train else x[rng.choice(len(x), config.max_train, replace=False)]
    )
    km = faiss.Kmeans(
        x.shape[1],
        config.k,
        niter=config.niter,
        seed=config.seed,
        verbose=False,
        min_points_per_centroid=1,
    )
    km.train(np.ascontiguousarray(train))
    dist, labels = km.index.search(np.ascontiguousarray(x), 1)
    return km.centroids.astype(np.float32), labels[:, 0], dist[:, 0].astype(np.float32)


def describe_domains(domain: list[str], previews: list[str], config: DomainConfig) -> list[dict]:
    """Per domain (largest first): size, share, top terms and sample previews."""
    n = len(domain)
    words_all: Counter = Counter()
    words_by: dict[str, Counter] = {}
    members: dict[str, list[int]] = {}
    for i, (d, p) in enumerate(zip(domain, previews, strict=True)):
        ws = set(_WORD.findall((p or "").lower())) - _STOP
        words_all.update(ws)
        words_by.setdefault(d, Counter()).update(ws)
        members.setdefault(d, []).append(i)
    out = []
    for d, idx in sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        m = len(idx)
        wc = words_by[d]
        # lift of a word in the domain over the corpus, for words in at least 2 (or all) members
        lift = {w: (c / m) / (words_all[w] / n) for w, c in wc.items() if c >= min(2, m)}
        terms = sorted(lift, key=lambda w: (-lift[w], -wc[w], w))[: config.top_terms]
        out.append(
            {
                "domain": d,
                "size": m,
                "share": m / n if n else 0.0,
                "top_terms": terms,
                "samples": [previews[i][:200] for i in idx[: config.samples]],
            }
        )
    return out


def read_domains(path: str | os.PathLike) -> dict[str, str]:
    """``{document id: domain}`` from a domains folder (or its ``domains.parquet``)."""
    pq = require("pyarrow.parquet")
    p = Path(path)
    f = p / "domains.parquet" if p.is_dir() else p
    if not f.is_file():
        raise InputError(f"{path} holds no domains.parquet (run `retriever domains` first)")
    t = pq.read_table(f, columns=["id", "domain"])
    return dict(zip(t.column("id").to_pylist(), t.column("domain").to_pylist(), strict=True))


def domains_summary(path: str | os.PathLike) -> dict:
    return read_json(Path(path) / "domains.json")
