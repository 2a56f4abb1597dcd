"""The datasets of the arms, all built by the dataset stage (:class:`DatasetBuilder`) at one token
budget, so that arms differ only in *which* documents they hold.

- ``random``: the run's corpus as one pool, documents in a seeded uniform order (no score), read
  with the run's reader options (``[corpus]``), as the general pool of the others is.
- ``similarity``: one pool per task of the run's top documents by similarity (``score_<task>`` of
  the score folder; enough of them to fill the task's share of the budget three times over),
  taken best first under the run's mixture: similarity only, no confirmation, no filter.
- ``band``: the same, among the documents inside the perplexity band (``retriever band``'s
  ``band.parquet``, ``in_band``) only: what the band adds to similarity.
- ``prefilter``: the same, among the documents the keyword prefilter matches for the task
  (``retriever prefilter``'s ``kw_<task> >= min_matches``): what the patterns add to similarity.
- ``rating``: the same, less the documents the LLM rated below the rating threshold for the task
  (``retriever rate``'s ``labels/<task>.parquet``, ``negative``): what the ratings add as a
  filter. (Ratings cover a sample only, candidates plus some others, so an arm ranked by rating
  alone would fall short of the budget; unrated documents keep their similarity rank.)
- ``pipeline``: the run's filtered pools under the run's mixture and order, as its dataset step
  builds them (at the arms' budget).
- ``student:<variant>`` (``student:gold+confirmed``, ...): as ``pipeline``, with the run's pools
  refiltered by students trained on that label-source variant (:mod:`retriever.arms.student`).
- a user arm: any dataset folder (its ``parquet/`` parts) or pool / corpus folder, sampled
  uniformly to the budget.

Each dataset's fingerprint is the hash of the part files a proxy trains on: two arms that select
the same documents share their proxies, and a rebuilt arm that selects the same documents keeps
its cache.
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from retriever.arms.student import StudentSources, arm_folder, is_student_arm, student_pools
from retriever.corpus.readers import ReaderConfig
from retriever.corpus.sharding import list_shards, shard_name
from retriever.errors import ConfigError, InputError
from retriever.io import AtomicWriter, read_json, write_json_atomic
from retriever.manifest import file_fingerprint, fingerprint
from retriever.names import KEYWORDS, SCORE, score_name

log = logging.getLogger(__name__)

# arms that are the similarity arm restricted by an optional step's output
FILTERED_ARMS = ("band", "prefilter", "rating")
SIMILARITY_MARGIN = 3.0  # similarity pools hold this many times their share of the budget
# to size the similarity pools from n_chars (the dataset stage counts exactly)
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class ArmSources:
    """What the built-in arms are made from (a run folder's parts, or any folders).

    Attributes:
        corpus: corpus files / folders (``random``).
        scores: a ``retriever score`` folder (``similarity``).
        pools: the filter stage's output folder (``pipeline``).
        mixture: the dataset mixture spec over the pools (``equal``, inline, .json, .csv), or
            over domains (``domain/<d>`` keys): then the similarity arms size their task pools
            equally and every pool-based arm splits the budget between domains.
        order: the pipeline's dataset order (``top``, ``weighted`` or ``stratified``).
        domains: a ``retriever domains`` folder (stratified order and mixtures over domains;
            ``None``: the records' ``cluster_id``).
        general_pool: a general pool added to ``similarity`` and ``pipeline`` (as the run does).
        tokenizer: token counter of every arm (the run's ``[dataset] tokenizer``).
        seed: seed of the random orders.
        reader: how the corpus files read as pools (``random``'s corpus, the general pool) are
            read (the run's ``[corpus]`` reader options).
    """

    corpus: tuple[str, ...] = ()
    scores: str | None = None
    pools: str | None = None
    mixture: object = "equal"
    order: str = "top"
    general_pool: str | None = None
    tokenizer: str | None = None
    seed: int = 0
    band: str | None = None  # a `retriever band` folder (the band arm)
    prefilter: str | None = None  # a `retriever prefilter` folder (the prefilter arm)
    rate: str | None = None  # a `retriever rate` folder (the rating arm)
    domains: str | None = None
    student: StudentSources | None = None  # the run's distill / filter (the student arms)
    reader: ReaderConfig = ReaderConfig()

    @classmethod
    def from_run(cls, cfg) -> ArmSources:
        """The sources of a :class:`retriever.run.config.RunConfig`'s run folder."""
        d = cfg.dataset
        return cls(
            corpus=tuple(cfg.corpus.paths),
            scores=str(cfg.out / "scores"),
            pools=str(cfg.out / "pools"),
            mixture=d.mixture,
            order=d.order,
            general_pool=d.general_pool,
            tokenizer=d.tokenizer,
            seed=cfg.run.seed,
            band=str(cfg.out / "band"),
            prefilter=str(cfg.out / "prefilter"),
            rate=str(cfg.out / "rate"),
            domains=str(cfg.out / "domains") if cfg.domains is not None else None,
            student=StudentSources.from_run(cfg),
            reader=d.reader,
        )


@dataclass(frozen=True)
class ArmDataset:
    """A built arm dataset: its folder, the fingerprint of its parts, and its size."""

    arm: str
    path: Path
    fingerprint: str
    tokens: int
    documents: int

    def as_dict(self) -> dict:
        return {
            "arm": self.arm,
            "path": str(self.path),
            "fingerprint": self.fingerprint,
            "tokens": self.tokens,
            "documents": self.documents,
        }


def build_arm_dataset(
    arm: str,
    sources: ArmSources,
    budget: int,
    out_root: str | os.PathLike,
    *,
    user_datasets: dict[str, str] | None = None,
    progress: bool | None = False,
) -> ArmDataset:
    """Build (or reuse) the dataset of one arm under ``out_root/<arm>/``.

    Raises:
        ConfigError: an arm whose source is not configured (no corpus, scores or pools).
        InputError: a source folder that does not exist or holds nothing usable.
    """
    from retriever.dataset import (
        DatasetBuilder,
        corpus_pools,
        discover_pools,
        is_domain_mixture,
        parse_mixture,
    )
    from retriever.dataset.config import DEFAULT_SCORE_KEYS

    root = Path(out_root)
    out = root / arm_folder(arm)
    user_datasets = user_datasets or {}
    common: dict[str, Any] = {
        "tokenizer": sources.tokenizer,
        "seed": sources.seed,
        "progress": progress,
        "scan_cache": root / "_scan",
        "reader": sources.reader,
    }
    if arm in user_datasets:
        pool = _user_pool(user_datasets[arm])
        builder = DatasetBuilder(
            {arm: pool}, {arm: 1.0}, budget, order="weighted", score_keys=(), **common
        )
    elif arm == "random":
        if not sources.corpus:
            raise ConfigError("the random arm needs the corpus: set [corpus] paths in the config")
        corpus_pool = _link_corpus(sources.corpus, root / "_pools" / "random")
        builder = DatasetBuilder(
            {"corpus": str(corpus_pool)},
            {"corpus": 1.0},
            budget,
            order="weighted",
            score_keys=(),
            corpus_pools=("corpus",),
            **common,
        )
    elif arm in ("similarity", "pipeline") + FILTERED_ARMS or is_student_arm(arm):
        if is_student_arm(arm):  # the pipeline arm over pools refiltered by the arm's students
            work = root / "_pools" / arm_folder(arm)
            student = student_pools(arm, sources.student, work, out, progress)
            pools = discover_pools(student, _general(sources))
        elif arm == "pipeline":
            if not sources.pools or not Path(sources.pools).is_dir():
                raise InputError(
                    f"the pipeline arm needs the filter stage's pools ({sources.pools}): run "
                    "`retriever run CONFIG.toml` first"
                )
            pools = discover_pools(sources.pools, _general(sources))
        else:
            pools = None
        names = list(pools) if pools is not None else None
        if names is None:  # similarity: the same pool names as the pipeline's
            names = _score_tasks(sources) + list(_general(sources))
        mixture = (
            sources.mixture
            if isinstance(sources.mixture, dict)
            else parse_mixture(str(sources.mixture), names)
        )
        over_domains = is_domain_mixture(mixture)
        keys: tuple[str, ...]
        if arm in ("similarity",) + FILTERED_ARMS:
            # over domains: task pools of equal size, their union split between the domains
            pool_mix = {t: 1.0 for t in names} if over_domains else mixture
            tasks = [t for t in names if pool_mix.get(t, 0) > 0 and t not in _general(sources)]
            allowed: set[str] | dict[str, set[str]] | None = None
            excluded: dict[str, set[str]] | None = None
            if arm == "band":
                allowed = band_ids(sources.band)
            elif arm == "prefilter":
                allowed = prefilter_ids(sources.prefilter, tasks)
            elif arm == "rating":
                excluded = rated_low_ids(sources.rate, tasks)
            pools = similarity_pools(
                sources, pool_mix, budget, root / "_pools" / arm, allowed, excluded
            )
            order, keys = "top", (score_name(SCORE, "{pool}"), "score", "quality")
        else:
            order, keys = sources.order, DEFAULT_SCORE_KEYS
        if pools is None:  # not reached: the similarity arm has just set its pools
            raise ConfigError(f"arm {arm!r} has no pools")
        if not over_domains:
            mixture = {k: v for k, v in mixture.items() if k in pools}
        use_domains = over_domains or order == "stratified"
        builder = DatasetBuilder(
            pools,
            mixture,
            budget,
            order=order,
            score_keys=keys,
            domains=sources.domains if use_domains else None,
            # as the run's dataset step: the general pool read with the corpus reader when it is
            # corpus files, as written when it is a stage's output
            corpus_pools=corpus_pools(
                {k: pools[k] for k in _general(sources) if k in pools}, sources.reader
            ),
            **common,
        )
    else:
        raise ConfigError(
            f"unknown arm {arm!r}: use random, similarity, pipeline, {', '.join(FILTERED_ARMS)}, "
            "student:<variant> or a --dataset name"
        )
    summary = builder.build(out)
    return ArmDataset(
        arm,
        out,
        dataset_fingerprint(out),
        int(summary.get("tokens") or 0),
        int(summary.get("docs") or 0),
    )


def dataset_fingerprint(path: str | os.PathLike) -> str:
    """Hash of the data a proxy reads from a dataset folder (its LMFlow parts, else its parquet
    parts, else every data file), so that equal selections share one fingerprint."""
    p = Path(path)
    for sub in ("lmflow", "parquet"):
        files = sorted((p / sub).glob("part_*")) if (p / sub).is_dir() else []
        if files:
            return fingerprint([[f.name, file_fingerprint(f, full=True)] for f in files])
    files = [Path(f) for f in list_shards([str(p)])]
    if not files:
        raise InputError(f"dataset {p} holds no data file")
    return fingerprint(
        [
            [str(f.relative_to(p)) if f != p else f.name, file_fingerprint(f, full=True)]
            for f in files
        ]
    )


def band_ids(band_dir: str | os.PathLike | None) -> set[str]:
    """The ids inside the perplexity band of a ``retriever band`` folder.

    Raises:
        InputError: no band there.
    """
    from retriever.band import read_band

    if not band_dir or not (Path(band_dir) / "band.parquet").is_file():
        raise InputError(
            f"the band arm needs a perplexity band ({band_dir}/band.parquet): add a [band] "
            "section to the run config and run it, or `retriever band` first"
        )
    t = read_band(band_dir).select(["id", "in_band"]).to_pydict()
    return {i for i, keep in zip(t["id"], t["in_band"], strict=True) if keep}


def prefilter_ids(prefilter_dir: str | os.PathLike | None, tasks: list[str]) -> dict[str, set]:
    """Per task, the ids the keyword prefilter matches (``kw_<task> >= min_matches`` of its
    manifest): the prefilter arm's documents.

    Raises:
        InputError: no prefilter folder, or it has no counts for one of ``tasks``.
    """
    from retriever.prefilter import read_matches

    p = Path(prefilter_dir) if prefilter_dir else None
    if p is None or not (p / "manifest.json").is_file():
        raise InputError(
            f"the prefilter arm needs keyword match counts ({prefilter_dir}/matches): add a "
            "[prefilter] section to the run config and run it, or `retriever prefilter` first"
        )
    t = read_matches(p)
    need = int(read_json(p / "manifest.json")["settings"].get("min_matches", 1))
    missing = [x for x in tasks if score_name(KEYWORDS, x) not in t.column_names]
    if missing:
        raise InputError(
            f"the prefilter in {p} counted no patterns for task(s) {missing}; rerun it with "
            "those tasks"
        )
    ids = t.column("id").to_pylist()
    out = {}
    for x in tasks:
        counts = t.column(score_name(KEYWORDS, x)).to_numpy()
        out[x] = {i for i, c in zip(ids, counts, strict=True) if c >= need}
    return out


def rated_low_ids(rate_dir: str | os.PathLike | None, tasks: list[str]) -> dict[str, set]:
    """Per task, the ids the LLM rated below the rating threshold (``negative`` rows of
    ``retriever rate``'s ``labels/<task>.parquet``): what the rating arm leaves out.

    Raises:
        InputError: no rating labels for one of ``tasks``.
    """
    import pyarrow.parquet as pq

    out = {}
    for x in tasks:
        f = Path(rate_dir or "") / "labels" / f"{x}.parquet"
        if not rate_dir or not f.is_file():
            raise InputError(
                f"the rating arm needs LLM ratings of task {x!r} ({f}): add a [rate] section to "
                "the run config and run it, or `retriever rate` first"
            )
        t = pq.read_table(f, columns=["id", "label"]).to_pydict()
        out[x] = {i for i, lab in zip(t["id"], t["label"], strict=True) if lab == "negative"}
    return out


def similarity_pools(
    sources: ArmSources,
    mixture: dict[str, float],
    budget: int,
    out: Path,
    allowed: set[str] | dict[str, set[str]] | None = None,
    excluded: dict[str, set[str]] | None = None,
) -> dict[str, str]:
    """Write one pool per task of the top documents by similarity; return pool name -> folder.

    ``allowed``: only these ids are taken (the band arm), or per task (the prefilter arm);
    ``None``: every scored document. ``excluded``: per task, ids never taken (the rating arm).

    Each task pool holds its best documents by ``score_<task>`` until their estimated tokens reach
    ``SIMILARITY_MARGIN`` times the task's share of ``budget`` (documents another pool takes
    first are skipped by the dataset stage, hence the margin). Records carry ``score_<task>``, so
    the dataset stage ranks them by it. Reused while the score folder and the sizes are unchanged.
    """
    from retriever.score import iter_scored_docs, read_scores

    if not sources.scores or not (Path(sources.scores) / "manifest.json").exists():
        raise InputError(
            f"the similarity arm needs the run's score folder ({sources.scores}): run "
            "`retriever run CONFIG.toml` (or `retriever score`) first"
        )
    general = _general(sources)
    tasks = [t for t in _score_tasks(sources) if mixture.get(t, 0) > 0]
    total_w = sum(w for w in mixture.values() if w > 0)
    settings = {
        "scores": _score_fingerprint(Path(sources.scores)),
        "budget": budget,
        "mixture": {t: mixture[t] / total_w for t in tasks},
        "margin": SIMILARITY_MARGIN,
        **({"allowed": _ids_fingerprint(allowed)} if allowed is not None else {}),
        **({"excluded": _ids_fingerprint(excluded)} if excluded is not None else {}),
    }
    pools = {t: str(out / t) for t in tasks}
    done = out / "pools.json"
    if done.exists() and read_json(done).get("settings") == orjson.loads(orjson.dumps(settings)):
        return {**pools, **general}
    cols = ["id", "n_chars"] + [score_name(SCORE, t) for t in tasks]
    table = read_scores(sources.scores, columns=cols)
    ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    n_tok = table.column("n_chars").to_numpy().astype(np.float64) / CHARS_PER_TOKEN  # [n]
    chosen: dict[str, dict[str, float]] = {}
    for t in tasks:
        s = table.column(score_name(SCORE, t)).to_numpy(zero_copy_only=False)  # [n]
        s = s.astype(np.float64)
        order = np.argsort(-np.nan_to_num(s, nan=-np.inf), kind="stable")
        ok = allowed.get(t, set()) if isinstance(allowed, dict) else allowed
        if ok is not None:
            order = order[[ids[i] in ok for i in order]]
        if excluded is not None and excluded.get(t):
            order = order[[ids[i] not in excluded[t] for i in order]]
        want = SIMILARITY_MARGIN * budget * mixture[t] / total_w
        cum = np.cumsum(n_tok[order])
        k = int(min(len(order), np.searchsorted(cum, want) + 1))
        chosen[t] = {ids[i]: float(s[i]) for i in order[:k]}
    wanted = set().union(*chosen.values()) if chosen else set()
    rows: dict[str, list[bytes]] = {t: [] for t in tasks}
    for doc in iter_scored_docs(sources.scores, ids=wanted):
        md = {k: v for k, v in doc.metadata.items() if k in ("shard", "row", "cluster_id")}
        for t in tasks:
            if doc.id in chosen[t]:
                rec = {
                    "id": doc.id,
                    "text": doc.text,
                    "metadata": {**md, score_name(SCORE, t): chosen[t][doc.id]},
                }
                rows[t].append(orjson.dumps(rec))
    for t in tasks:
        if not rows[t]:
            raise InputError(f"the score folder {sources.scores} gave no document for task {t!r}")
        with AtomicWriter(out / t / "similarity.jsonl.gz") as tmp, gzip.open(tmp, "wb") as f:
            f.write(b"\n".join(rows[t]) + b"\n")
    write_json_atomic(done, {"settings": settings, "docs": {t: len(rows[t]) for t in tasks}})
    return {**pools, **general}


def _ids_fingerprint(ids: set[str] | dict[str, set[str]]) -> str:
    if isinstance(ids, dict):
        return fingerprint({k: sorted(v) for k, v in sorted(ids.items())})
    return fingerprint(sorted(ids))


def _general(sources: ArmSources) -> dict[str, str]:
    return {"general": sources.general_pool} if sources.general_pool else {}


def _score_tasks(sources: ArmSources) -> list[str]:
    from retriever.score.select import score_columns

    if not sources.scores or not Path(sources.scores).is_dir():
        raise InputError(f"score folder {sources.scores} not found: run the score step first")
    return list(score_columns(Path(sources.scores)))


def _score_fingerprint(score_dir: Path) -> str:
    from retriever.score.job import shard_outputs

    return fingerprint(
        sorted([n, file_fingerprint(p)] for n, p in shard_outputs(score_dir).items())
    )


def _link_corpus(corpus: tuple[str, ...], out: Path) -> Path:
    """A pool folder of symlinks to every corpus shard (the dataset stage reads pools, not lists
    of corpus paths); names carry the shard's position so two folders' ``part_0`` never clash."""
    shards = list_shards(list(corpus))
    if any(s.startswith("hf://") for s in shards):
        raise ConfigError("the random arm reads local corpus files; a Hub corpus is not supported")
    out.mkdir(parents=True, exist_ok=True)
    want = {}
    for i, s in enumerate(shards):
        suffix = Path(s).name[len(Path(s).name.split(".")[0]) :]
        # the absolute path, not the resolved one: the link's target keeps the shard's own
        # folder name, so an id-less record's `<shard>:<row>` id can be matched to the corpus's
        # (PoolScan.with_domains)
        want[f"{i:05d}_{shard_name(s)}{suffix}"] = Path(os.path.abspath(s))
    for f in out.iterdir():
        if f.name not in want or not f.is_symlink() or f.resolve() != want[f.name].resolve():
            f.unlink()
    for name, target in want.items():
        link = out / name
        if not link.exists():
            link.symlink_to(target)
    return out


def _user_pool(path: str) -> str:
    p = Path(path)
    if not p.exists():
        raise InputError(f"dataset {p} does not exist; check [evaluate] datasets / --dataset")
    if (p / "summary.json").exists() and (p / "parquet").is_dir():
        return str(p / "parquet")  # a build-dataset folder: its parquet parts, once
    if (p / "summary.json").exists() and (p / "lmflow").is_dir():
        return str(p / "lmflow")
    return str(p)
