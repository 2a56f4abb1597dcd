"""``build-dataset``: sample the filtered pools to a token budget and write a training set.

Three steps, each resumable:

1. **Scan** every pool file once into a small index (id and text hashes, token count, score,
   cluster) cached as parquet under ``scan_cache`` and keyed by the file's fingerprint and the token
   counter, so a second build (another mixture, another budget) skips tokenizing
   (:mod:`retriever.dataset.scan`).
2. **Select** with :func:`~retriever.dataset.select.select_budgeted` (pure numpy, seconds for
   millions of documents).
3. **Write** the selection in parts of about ``part_tokens`` tokens, each part an LMFlow
   ``text_only`` json and/or a parquet file written atomically; a killed build resumes at the first
   missing part (:mod:`retriever.dataset.parts`). ``summary.json`` is written last: a folder
   without it is not a finished build.

This module holds the stage object (settings, manifest, the three steps in order, the summary).

Layout of ``OUT``::

    manifest.json          settings (pools and their fingerprints, mixture, budget, order, counter)
    selection.parquet      one row per chosen document: pool, file, row, id, tokens, score, part
    duplicates.parquet     documents two pools chose: id, pool (skipped it), kept_by (took it)
    lmflow/part_NNNNN.json {"type": "text_only", "instances": [{"text": ...}, ...]}
    parquet/part_NNNNN.parquet  id, text, pool, score, n_tokens, cluster, source
    summary.json           tokens per pool and per pool x cluster, counts, parts; marks completion
    scan/                  the scan cache (unless scan_cache points elsewhere)
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from retriever.corpus.readers import ReaderConfig
from retriever.dataset.config import DATASET_FORMATS as DATASET_FORMATS
from retriever.dataset.config import DEFAULT_SCORE_KEYS as DEFAULT_SCORE_KEYS
from retriever.dataset.config import MAX_BUDGET as MAX_BUDGET
from retriever.dataset.config import DatasetConfig
from retriever.dataset.config import parse_budget as parse_budget
from retriever.dataset.mixture import is_domain_mixture
from retriever.dataset.parts import duplicates_table, selection_table, write_parts
from retriever.dataset.pools import list_pool_files, reader_changes
from retriever.dataset.scan import PoolScan, PoolScanner, contamination_check
from retriever.dataset.select import (
    Selection,
    check_tiers,
    select_budgeted,
    split_budget,
)
from retriever.errors import ConfigError, InputError
from retriever.io import AtomicWriter, disk_guard, read_json, sweep_temp, write_json_atomic
from retriever.lock import OutputLock
from retriever.manifest import check_or_write_manifest, file_fingerprint
from retriever.names import canonical_score_name
from retriever.stats import Stats
from retriever.tokens import TokenCounter

log = logging.getLogger(__name__)


class DatasetBuilder:
    """Samples per-task pools to a token budget; writes LMFlow json and parquet with a manifest.

    Args:
        pools: pool name -> folder or file (the filter stage's ``DIR/<task>`` folders, plus any
            general-quality pool).
        mixture: pool name -> weight (normalized here); pools not named take nothing. A mixture
            over domains (``domain/<domain>`` keys, :func:`~retriever.dataset.mixture.
            is_domain_mixture`) splits the budget between domains instead: each domain's
            documents from every pool given form one pool named by its key (domains from
            ``domains``, else the records' ``cluster_id``); domains not named take nothing.
        budget: total tokens (each pool gets ``floor(budget * weight)``).
        config: how to sample (:class:`~retriever.dataset.config.DatasetConfig`: order, seed,
            tiers, token counting, formats, part size, score keys, scan cache and workers,
            decontamination, domains, the corpus pools' reader).
        corpus_pools: the pools that are corpus files (a general pool of corpus shards, or links
            to them), read with ``config.reader``; the others are a stage's pool records.
        progress: tqdm bars (``None``: only on a terminal).
        settings: :class:`~retriever.dataset.config.DatasetConfig` fields as keywords, over
            ``config`` (``DatasetBuilder(pools, mix, budget, order="weighted")``).
    """

    name = "build-dataset"

    def __init__(
        self,
        pools: dict[str, str],
        mixture: dict[str, float],
        budget: int,
        config: DatasetConfig | None = None,
        *,
        corpus_pools: Iterable[str] = (),
        progress: bool | None = None,
        **settings: Any,
    ):
        c = config or DatasetConfig()
        if settings:  # DatasetConfig fields (an unknown one is a TypeError)
            c = replace(c, **settings)
        self.config = c
        if not pools:
            raise ConfigError("no pool given; pass --pools DIR and/or --pool NAME=PATH")
        self.over = "domains" if is_domain_mixture(mixture) else "pools"
        unknown = sorted(set(mixture) - set(pools)) if self.over == "pools" else []
        if unknown:
            raise ConfigError(
                f"the mixture names pools that do not exist: {', '.join(unknown)} "
                f"(pools: {', '.join(sorted(pools))}); check the spelling"
            )
        self.pools = dict(pools)
        self.corpus_pools = frozenset(corpus_pools)
        if self.corpus_pools - set(pools):
            raise ConfigError(
                f"corpus pools {sorted(self.corpus_pools - set(pools))} are not among the pools "
                f"({', '.join(sorted(pools))})"
            )
        names = list(pools) if self.over == "pools" else list(mixture)
        self.budgets = split_budget(int(budget), {k: float(mixture.get(k, 0.0)) for k in names})
        total_w = sum(mixture.values())
        self.mixture = {k: float(mixture.get(k, 0.0)) / total_w for k in names}
        self._sources: dict[str, PoolScan] | None = None  # the pools' scans, over domains
        self.budget = int(budget)
        self.order = c.order
        self.seed = int(c.seed)
        self.tiers = check_tiers(c.tiers)
        self.domains = c.domains
        if self.domains is not None and not Path(self.domains).exists():
            raise InputError(f"domains {self.domains} does not exist (run `retriever domains`)")
        self.counter = TokenCounter(c.tokenizer, use_token_count=c.use_token_count)
        self.formats = c.formats
        self.part_tokens = int(c.part_tokens)
        self.score_keys = c.score_keys
        self.scan_cache = c.scan_cache
        self.workers = int(c.workers)
        self.progress = progress
        self.decontaminate = dict(c.decontaminate)
        self._eval_fp: Any = None
        self._eval_spec: dict | None = None
        if self.decontaminate:
            self._eval_fp, self._eval_spec = contamination_check(self.decontaminate)

    # -- public -----------------------------------------------------------------------------------
    def build(self, out_dir: str | os.PathLike) -> dict:
        """Build the training set in ``out_dir`` (or finish a killed build there).

        Returns:
            The summary (also written to ``out_dir/summary.json``).

        Raises:
            ResumeError: ``out_dir`` holds a build with other settings.
            OutputError: the disk filled up or the folder is not writable.
        """
        out = Path(out_dir)
        with disk_guard(str(out)):
            out.mkdir(parents=True, exist_ok=True)
        with OutputLock(out):  # one writer per folder: a second build is refused, naming this one
            sweep_temp(out)  # what a killed build left half written
            return self._build_locked(out)

    def _build_locked(self, out: Path) -> dict:
        t0 = time.perf_counter()
        if self.over == "pools":
            used = [k for k in self.pools if self.budgets[k] > 0]
        else:  # over domains: every pool's documents of the named domains
            used = list(self.pools)
        files = {k: list_pool_files(self.pools[k]) for k in used}
        domains_spec = (
            None
            if self.domains is None
            else [self.domains, file_fingerprint(_domains_file(self.domains))]
        )
        settings: dict[str, Any] = {
            "stage": self.name,
            "pools": {k: self.pools[k] for k in used},
            "pool_files": {k: [[f, file_fingerprint(f)] for f in files[k]] for k in used},
            "mixture": self.mixture,
            "budget": self.budget,
            "order": self.order,
            "seed": self.seed if self.order == "weighted" else None,
            **(
                {"tiers": [list(t) for t in self.tiers], "domains": domains_spec}
                if self.order == "stratified"
                else {}
            ),
            # only over domains: a pool mixture's manifest stays as it was
            **({"over": "domains", "domains": domains_spec} if self.over == "domains" else {}),
            "token_counter": self.counter.spec,
            "score_keys": _recorded_score_keys(out, self.score_keys),
            "formats": list(self.formats),
            "part_tokens": self.part_tokens,
        }
        if self._eval_spec is not None:  # only when set: older manifests stay valid
            settings["decontaminate"] = self._eval_spec
        read_as_corpus = sorted(k for k in used if k in self.corpus_pools)
        if read_as_corpus and (changed := reader_changes(self.config.reader)):
            settings["reader"] = {"pools": read_as_corpus, **changed}  # only when set, as above
        with disk_guard(str(out / "manifest.json")):
            out.mkdir(parents=True, exist_ok=True)
            check_or_write_manifest(out, settings)
        if (out / "summary.json").exists():
            log.info("%s is a finished build; nothing to do", out)
            return read_json(out / "summary.json")
        cache = Path(self.scan_cache) if self.scan_cache is not None else out / "scan"
        scans = {k: self.scan_pool(k, files[k], cache) for k in used}
        for k, scan in scans.items():
            c = scan.stats.counts
            if c["seen"] and not len(scan.table):
                reasons = {r: v for r, v in c.items() if r.startswith("rejected/")}
                need = (
                    f"corpus records need a {self.config.reader.text_field!r} field (set the "
                    "reader's text field: --text-field, [corpus] text_field; a stage's output, "
                    "read as written, is told by its manifest.json in the folder or above it)"
                    if k in self.corpus_pools
                    else "pool records need a 'text' field (the filter stage's output)"
                )
                raise InputError(
                    f"pool {k!r} ({self.pools[k]}): all {c['seen']} records were rejected "
                    f"({reasons}); {need}"
                )
        domain_of = None
        if self.domains is not None:
            from retriever.domains import read_domains

            domain_of = read_domains(self.domains)
        scans = {k: scan.with_domains(domain_of) for k, scan in scans.items()}  # looked up once
        if self.over == "domains":
            self._sources = scans
            scans = self._domain_scans(scans)
            used = list(scans)
        selection = select_budgeted(
            {k: scans[k].candidates() for k in used},
            {k: self.budgets[k] for k in used},
            order=self.order,
            seed=self.seed,
            tiers=self.tiers,
        )
        chosen = selection_table(scans, selection, self.part_tokens)
        with disk_guard(str(out / "selection.parquet")):
            with AtomicWriter(out / "selection.parquet") as tmp:
                pq.write_table(chosen, tmp)
            with AtomicWriter(out / "duplicates.parquet") as tmp:
                pq.write_table(duplicates_table(scans, selection), tmp)
        # the corpus pools' files are read back as they were scanned: with the reader
        readers = {
            f: self.config.reader for k, fs in files.items() if k in self.corpus_pools for f in fs
        }
        parts = write_parts(out, chosen, self.formats, self.progress, readers)
        summary = self._summary(scans, selection, chosen, parts, time.perf_counter() - t0)
        with disk_guard(str(out / "summary.json")):
            write_json_atomic(out / "summary.json", summary)
        return summary

    def scan_pool(self, pool: str, files: list[str], cache: Path) -> PoolScan:
        """Scan index of one pool, from the cache where each file's entry is up to date
        (:class:`~retriever.dataset.scan.PoolScanner` with this build's settings)."""
        return self.scanner().scan(pool, files, cache, self.pool_reader(pool))

    def pool_reader(self, pool: str) -> ReaderConfig | None:
        """How ``pool``'s files are read: ``config.reader`` for a corpus pool, ``None`` for a
        stage's pool records."""
        return self.config.reader if pool in self.corpus_pools else None

    def scanner(self) -> PoolScanner:
        """The scan step with this build's token counter, score keys, decontamination and
        workers."""
        return PoolScanner(
            self.counter,
            self.score_keys,
            contamination=self._eval_fp,
            contamination_spec=self._eval_spec,
            workers=self.workers,
            progress=self.progress,
        )

    def _domain_scans(self, scans: dict[str, PoolScan]) -> dict[str, PoolScan]:
        """One scan per domain of the mixture (``domain/<domain>``): the rows of every pool's
        scan (:meth:`~retriever.dataset.scan.PoolScan.with_domains`) whose document is in that
        domain, with ``file`` indices into one joint file list.

        Raises:
            ConfigError: the mixture gives tokens to a domain no pool document is in.
        """
        want = [k for k in self.mixture if self.budgets[k] > 0]
        files: list[str] = []
        rows: dict[str, list[pa.Table]] = {k: [] for k in want}
        seen: set[str] = set()
        for scan in scans.values():
            t = scan.table
            t = t.set_column(
                t.schema.get_field_index("file"),
                "file",
                pc.add(t.column("file"), len(files)).cast(pa.int32()),
            )
            files += scan.files
            keys, key_of_row = scan.domain_keys()  # [n]
            seen.update(keys)
            # the rows of each key, in table order: one stable sort, not a pass per domain
            order = np.argsort(key_of_row, kind="stable")
            bounds = np.searchsorted(key_of_row[order], np.arange(len(keys) + 1))
            for j, k in enumerate(keys):
                if k in rows:
                    rows[k].append(t.take(pa.array(order[bounds[j] : bounds[j + 1]])))
        missing = [k for k in want if not rows[k]]
        if missing:
            known = ", ".join(sorted(seen)[:12]) + (" ..." if len(seen) > 12 else "")
            raise ConfigError(
                f"the mixture gives tokens to domain(s) {', '.join(missing)} that no pool document "
                f"is in (domains of the pools: {known}); check --domains and the mixture"
            )
        out = {}
        for k in want:
            t = pa.concat_tables(rows[k])
            st = Stats()
            st.counts["seen"] = st.counts["candidates"] = len(t)
            st.counts["no_score"] = int(np.isnan(t.column("score").to_numpy()).sum())
            out[k] = PoolScan(table=t, files=files, stats=st, methods=Counter())
        return out

    def _summary(
        self,
        scans: dict[str, PoolScan],
        selection: Selection,
        chosen: pa.Table,
        parts: list[dict],
        seconds: float,
    ) -> dict:
        total = Stats()
        pools: dict[str, Any] = {}
        methods: Counter = Counter()
        by_cluster_all: Counter = Counter()
        for scan in (self._sources or {}).values():
            methods.update(scan.methods)  # over domains: counted once per pool document
        for k, scan in scans.items():
            ps = selection.pools[k]
            st = Stats()
            st.counts["seen"] = scan.stats.counts["seen"]
            st.counts["kept"] = len(ps.selected)
            st.counts["dropped/duplicate"] = len(ps.duplicates)
            st.counts["dropped/budget"] = len(ps.budget_dropped)
            for key, v in scan.stats.counts.items():
                if key.startswith("rejected/") or key == "dropped/contaminated":
                    st.counts[key] = v
            total += st
            if self._sources is None:
                methods.update(scan.methods)
            mine = chosen.filter(pc.equal(chosen.column("pool"), k))
            by_cluster = _sum_by(mine, "cluster")
            by_cluster_all.update(by_cluster)
            pools[k] = {
                "path": self.pools.get(k),  # None: a domain of a mixture over domains
                "weight": self.mixture[k],
                "budget": ps.budget,
                "tokens": ps.tokens,
                "shortfall": ps.shortfall,
                "available_tokens": scan.tokens,
                "docs": len(ps.selected),
                "tokens_per_cluster": by_cluster,
                "tokens_per_source": _sum_by(mine, "source"),
                "duplicates_kept_by": dict(Counter(ps.duplicate_of)),
                "no_score": scan.stats.counts["no_score"],
                "counts": st.to_dict()["counts"],
                "balanced": st.balanced(),
            }
            if ps.shortfall > ps.budget * 0.01 and len(ps.budget_dropped) == 0:
                log.warning(
                    "pool %s holds %d usable tokens, short of its budget %d by %d",
                    k,
                    ps.tokens,
                    ps.budget,
                    ps.shortfall,
                )
        extra: dict[str, Any] = {}
        if self._sources is not None:
            extra = {"over": "domains", "sources": _source_summary(self.pools, self._sources)}
        return {
            "complete": True,
            **extra,
            "budget": self.budget,
            "tokens": selection.tokens,
            "docs": len(chosen),
            "mixture": self.mixture,
            "order": self.order,
            "token_counting": {
                "spec": self.counter.spec,
                "docs_by_method": dict(methods),
                "estimate": "ceil(utf-8 bytes / 4)" if methods.get("estimate") else None,
            },
            "pools": pools,
            "unused_pools": sorted(set(self.pools) - set(scans)) if self._sources is None else [],
            "tokens_per_cluster": dict(sorted(by_cluster_all.items())),
            "counts": total.to_dict()["counts"],
            "balanced": total.balanced(),
            "parts": parts,
            "seconds": round(seconds, 3),
        }


def pool_token_counts(
    pools: dict[str, str],
    tokenizer: str | os.PathLike | None = None,
    scan_cache: str | os.PathLike | None = None,
    workers: int = 1,
    progress: bool | None = None,
    *,
    reader: ReaderConfig | None = None,
    corpus_pools: Iterable[str] = (),
) -> dict[str, int]:
    """Tokens available in each pool (scanning them, through the same cache as builds).

    This is the prior of the RegMix proposals (``retriever mix propose --pools``). ``reader``,
    ``corpus_pools``: the pools that are corpus files and how they are read, as the builder's
    (:class:`DatasetBuilder`), so they count the documents a build takes.
    """
    scans = _scan_pools(pools, tokenizer, scan_cache, workers, progress, reader, corpus_pools)
    return {k: s.tokens for k, s in scans.items()}


def domain_token_counts(
    pools: dict[str, str],
    domains: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    scan_cache: str | os.PathLike | None = None,
    workers: int = 1,
    progress: bool | None = None,
    *,
    reader: ReaderConfig | None = None,
    corpus_pools: Iterable[str] = (),
) -> dict[str, int]:
    """Tokens of the pools' documents per domain, keyed ``domain/<domain>`` (the RegMix prior of
    a mixture over domains, ``retriever mix propose --over domains``).

    Domains come from ``domains`` (a ``retriever domains`` folder: id -> domain), else from the
    records' ``cluster_id``; a document in several pools counts once. Largest domain first.
    ``reader``, ``corpus_pools``: as :func:`pool_token_counts`.
    """
    domain_of = None
    if domains is not None:
        from retriever.domains import read_domains

        domain_of = read_domains(domains)
    scans = _scan_pools(pools, tokenizer, scan_cache, workers, progress, reader, corpus_pools)
    tokens: Counter = Counter()
    seen: set[int] = set()
    for scan in scans.values():
        keys, key_of_row = scan.with_domains(domain_of).domain_keys()
        t = scan.table
        for h, j, n in zip(
            t.column("id_hash").to_pylist(),
            key_of_row.tolist(),
            t.column("n_tokens").to_pylist(),
            strict=True,
        ):
            if h not in seen:
                seen.add(h)
                tokens[keys[j]] += int(n)
    return dict(sorted(tokens.items(), key=lambda kv: (-kv[1], kv[0])))


def _scan_pools(
    pools: dict[str, str],
    tokenizer: str | os.PathLike | None,
    scan_cache: str | os.PathLike | None,
    workers: int,
    progress: bool | None,
    reader: ReaderConfig | None,
    corpus_pools: Iterable[str],
) -> dict[str, PoolScan]:
    b = DatasetBuilder(
        pools,
        {k: 1.0 for k in pools},
        len(pools),
        tokenizer=tokenizer,
        workers=workers,
        reader=reader or ReaderConfig(),
        corpus_pools=corpus_pools,
        progress=progress,
    )
    with ExitStack() as stack:
        if scan_cache is None:
            import tempfile

            scan_cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="retriever-scan-"))
        cache = Path(scan_cache)
        return {k: b.scan_pool(k, list_pool_files(p), cache) for k, p in pools.items()}


def _source_summary(paths: dict[str, str], scans: dict[str, PoolScan]) -> dict[str, Any]:
    """Per pool a mixture over domains draws from: records seen, rejected, tokens available."""
    out = {}
    for k, scan in scans.items():
        c = scan.stats.counts
        out[k] = {
            "path": paths[k],
            "seen": c["seen"],
            "candidates": c["candidates"],
            "rejected": {r: v for r, v in c.items() if r.startswith("rejected/")},
            "available_tokens": scan.tokens,
        }
    return out


def _sum_by(t: pa.Table, col: str) -> dict[str, int]:
    """Tokens of ``t`` grouped by ``col`` (an empty value is reported as ``none``)."""
    if len(t) == 0:
        return {}
    g = t.group_by(col).aggregate([("n_tokens", "sum")])
    keys = g.column(col).to_pylist()
    sums = g.column("n_tokens_sum").to_pylist()
    return {(k or "none"): int(v) for k, v in sorted(zip(keys, sums, strict=True))}


def _domains_file(path: str) -> Path:
    p = Path(path)
    return p / "domains.parquet" if p.is_dir() else p


def _recorded_score_keys(out: Path, keys: tuple[str, ...]) -> list[str]:
    """``keys`` as the manifest records them: as an existing manifest spelled them when they are
    the same score names (a folder built before the one naming scheme resumes)."""
    path = out / "manifest.json"
    old = read_json(path).get("settings", {}).get("score_keys") if path.is_file() else None
    if isinstance(old, list) and [canonical_score_name(str(k)) for k in old] == [
        canonical_score_name(k) for k in keys
    ]:
        return [str(k) for k in old]
    return list(keys)
