"""``build-dataset``: sample the filtered pools to a token budget and write a training set.

Three steps, each resumable:

1. **Scan** every pool file once into a small index (id and text hashes, token count, score,
   cluster) cached as parquet under ``scan_cache`` and keyed by the file's fingerprint and the token
   counter, so a second build (another mixture, another budget) skips tokenizing.
2. **Select** with :func:`~retriever.dataset.select.select_budgeted` (pure numpy, seconds for
   millions of documents).
3. **Write** the selection in parts of about ``part_tokens`` tokens, each part an LMFlow
   ``text_only`` json and/or a parquet file written atomically; a killed build resumes at the first
   missing part. ``summary.json`` is written last: a folder without it is not a finished build.

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
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from retriever.corpus.sharding import shard_name
from retriever.data import Doc, Rejected
from retriever.dataset.mixture import domain_key, is_domain_mixture
from retriever.dataset.pools import list_pool_files, read_pool_shard
from retriever.dataset.select import (
    DEFAULT_TIERS,
    ORDERS,
    Candidates,
    Selection,
    check_tiers,
    id_key,
    select_budgeted,
    split_budget,
    text_key,
)
from retriever.errors import ConfigError, InputError
from retriever.io import (
    AtomicWriter,
    LMFlowStream,
    RejectWriter,
    disk_guard,
    read_json,
    sweep_temp,
    write_json_atomic,
)
from retriever.lock import OutputLock
from retriever.manifest import check_or_write_manifest, file_fingerprint, fingerprint
from retriever.progress import progress_bar
from retriever.stats import Stats
from retriever.tokens import TokenCounter

log = logging.getLogger(__name__)

DATASET_FORMATS = ("lmflow", "parquet")
DEFAULT_SCORE_KEYS = ("prob/{pool}", "sim/{pool}", "score", "quality")
SCAN_VERSION = 1
SCAN_BATCH = 256  # documents tokenized at a time (memory: 256 x mean document size)
MAX_BUDGET = 10**13  # far above any training set; catches unit mistakes (10T tokens)

SCAN_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("id_hash", pa.uint64()),
        ("text_hash", pa.uint64()),
        ("n_tokens", pa.int64()),
        ("score", pa.float64()),
        ("cluster", pa.string()),
        ("source", pa.string()),
    ]
)
OUT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("pool", pa.string()),
        ("score", pa.float64()),
        ("n_tokens", pa.int64()),
        ("cluster", pa.string()),
        ("source", pa.string()),
    ]
)


@dataclass
class PoolScan:
    """The scan index of one pool: one table row per document, plus counters."""

    table: pa.Table  # SCAN_SCHEMA + "file" (int32 index into files)
    files: list[str]
    stats: Stats
    methods: Counter

    def candidates(self, domain_of: dict[str, str] | None = None) -> Candidates:
        """The pool's candidates; ``domain`` codes from ``domain_of`` (id -> domain, e.g. the
        ``retriever domains`` output) or else from the records' ``cluster_id``."""
        t = self.table
        if domain_of is not None:
            names = pa.array(
                [domain_of.get(i, "") for i in t.column("id").to_pylist()], pa.string()
            )
        else:
            names = (
                t.column("cluster").combine_chunks() if t.num_rows else pa.array([], pa.string())
            )
        codes = pc.dictionary_encode(names).indices.to_numpy(zero_copy_only=False)
        return Candidates(
            n_tokens=t.column("n_tokens").to_numpy(),
            score=t.column("score").to_numpy(zero_copy_only=False).astype(np.float64),
            id_hash=t.column("id_hash").to_numpy(),
            text_hash=t.column("text_hash").to_numpy(),
            domain=codes.astype(np.int64),
        )

    @property
    def tokens(self) -> int:
        return int(pc.sum(self.table.column("n_tokens")).as_py() or 0)


def parse_budget(value: str | int | float) -> int:
    """``"10B"``, ``"500M"``, ``"2.5k"``, ``"1e9"`` or a number -> tokens.

    Raises:
        ConfigError: not a positive number of tokens.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        n = float(value)
    else:
        s = str(value).strip().replace("_", "").replace(",", "")
        mult = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}.get(s[-1:].lower(), 1.0)
        if mult != 1.0:
            s = s[:-1]
        try:
            n = float(s) * mult
        except ValueError:
            raise ConfigError(
                f"budget {value!r} is not a number of tokens; write e.g. 10B, 500M, 2.5k or 1000000"
            ) from None
    if not math.isfinite(n) or n < 1 or n > MAX_BUDGET:
        raise ConfigError(f"budget {value!r} must be between 1 and {MAX_BUDGET:.0e} tokens")
    return int(n)


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
        order: ``top`` (highest score first) or ``weighted`` (score-weighted sampling).
        seed: seed of the weighted order.
        tokenizer: local tokenizer folder or tokenizer.json for exact counts (see
            :mod:`retriever.tokens`).
        use_token_count: trust records' ``token_count`` when there is no tokenizer.
        formats: any of ``lmflow`` and ``parquet``.
        part_tokens: tokens per output part (memory while writing: one parquet row group).
        score_keys: metadata keys tried in order for a document's score; ``{pool}`` is replaced
            by the pool name.
        scan_cache: folder of the scan cache (default ``OUT/scan``); share it across builds of
            the same pools (a RegMix sweep) to tokenize once.
        workers: processes scanning pool files in parallel (the scan is the costly step: read,
            hash and count every pool document once).
        progress: tqdm bars (``None``: only on a terminal).
        decontaminate: evaluation files (``{task: path}``, jsonl of ELMB-style records or
            ``text``) whose records must not leak into the training set: a pool document sharing
            a 13-gram of words with one of them (or equal to one) is dropped, counted as
            ``dropped/contaminated`` (:mod:`retriever.evaluation.decontam`).
    """

    name = "build-dataset"

    def __init__(
        self,
        pools: dict[str, str],
        mixture: dict[str, float],
        budget: int,
        *,
        order: str = "top",
        seed: int = 0,
        tokenizer: str | os.PathLike | None = None,
        use_token_count: bool = True,
        formats: tuple[str, ...] = DATASET_FORMATS,
        part_tokens: int = 25_000_000,
        score_keys: tuple[str, ...] = DEFAULT_SCORE_KEYS,
        scan_cache: str | os.PathLike | None = None,
        workers: int = 1,
        progress: bool | None = None,
        decontaminate: dict[str, str] | None = None,
        tiers=DEFAULT_TIERS,
        domains: str | os.PathLike | None = None,
    ):
        if not pools:
            raise ConfigError("no pool given; pass --pools DIR and/or --pool NAME=PATH")
        self.over = "domains" if is_domain_mixture(mixture) else "pools"
        unknown = sorted(set(mixture) - set(pools)) if self.over == "pools" else []
        if unknown:
            raise ConfigError(
                f"the mixture names pools that do not exist: {', '.join(unknown)} "
                f"(pools: {', '.join(sorted(pools))}); check the spelling"
            )
        if order not in ORDERS:
            raise ConfigError(f"order {order!r} is not one of {', '.join(ORDERS)}")
        bad = [f for f in formats if f not in DATASET_FORMATS]
        if bad or not formats:
            raise ConfigError(
                f"formats {list(formats)} invalid; choose from {', '.join(DATASET_FORMATS)}"
            )
        if part_tokens < 1:
            raise ConfigError("part_tokens must be >= 1")
        self.pools = dict(pools)
        names = list(pools) if self.over == "pools" else list(mixture)
        self.budgets = split_budget(int(budget), {k: float(mixture.get(k, 0.0)) for k in names})
        total_w = sum(mixture.values())
        self.mixture = {k: float(mixture.get(k, 0.0)) / total_w for k in names}
        self._sources: dict[str, PoolScan] | None = None  # the pools' scans, over domains
        self.budget = int(budget)
        self.order = order
        self.seed = int(seed)
        self.tiers = check_tiers(tiers)
        self.domains = str(domains) if domains is not None else None
        if self.domains is not None and not Path(self.domains).exists():
            raise InputError(f"domains {self.domains} does not exist (run `retriever domains`)")
        self.counter = TokenCounter(tokenizer, use_token_count=use_token_count)
        self.formats = tuple(formats)
        self.part_tokens = int(part_tokens)
        self.score_keys = tuple(score_keys)
        self.scan_cache = scan_cache
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.workers = int(workers)
        self.progress = progress
        self.decontaminate = {k: str(v) for k, v in (decontaminate or {}).items()}
        self._eval_fp = None
        self._eval_spec = None
        if self.decontaminate:
            from retriever.evaluation.decontam import N, fingerprint_files

            for task, path in self.decontaminate.items():
                if not Path(path).is_file():
                    raise InputError(
                        f"decontaminate: evaluation file for {task!r} ({path}) does not exist"
                    )
            self._eval_fp = fingerprint_files(self.decontaminate)
            self._eval_spec = {
                "n": N,
                "files": {
                    k: [v, file_fingerprint(v, full=True)]
                    for k, v in sorted(self.decontaminate.items())
                },
            }

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
            "score_keys": list(self.score_keys),
            "formats": list(self.formats),
            "part_tokens": self.part_tokens,
        }
        if self._eval_spec is not None:  # only when set: older manifests stay valid
            settings["decontaminate"] = self._eval_spec
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
                raise InputError(
                    f"pool {k!r} ({self.pools[k]}): all {c['seen']} records were rejected "
                    f"({reasons}); pool records need a 'text' field (the filter stage's output)"
                )
        domain_of = None
        if self.domains is not None:
            from retriever.domains import read_domains

            domain_of = read_domains(self.domains)
        if self.over == "domains":
            self._sources = scans
            scans = self._domain_scans(scans, domain_of)
            used = list(scans)
        selection = select_budgeted(
            {k: scans[k].candidates(domain_of) for k in used},
            {k: self.budgets[k] for k in used},
            order=self.order,
            seed=self.seed,
            tiers=self.tiers,
        )
        chosen = self._selection_table(scans, selection)
        with disk_guard(str(out / "selection.parquet")):
            with AtomicWriter(out / "selection.parquet") as tmp:
                pq.write_table(chosen, tmp)
            with AtomicWriter(out / "duplicates.parquet") as tmp:
                pq.write_table(_duplicates_table(scans, selection), tmp)
        parts = self._write_parts(out, chosen, scans)
        summary = self._summary(scans, selection, chosen, parts, time.perf_counter() - t0)
        with disk_guard(str(out / "summary.json")):
            write_json_atomic(out / "summary.json", summary)
        return summary

    def scan_pool(self, pool: str, files: list[str], cache: Path) -> PoolScan:
        """Scan index of one pool, from the cache where each file's entry is up to date.

        Files not in the cache are scanned by ``workers`` processes (one file per task).
        """
        keys = [k.format(pool=pool) for k in self.score_keys]
        bases = []
        for path in files:
            fp = fingerprint(
                {
                    "file": file_fingerprint(path),
                    "counter": self.counter.spec,
                    "keys": keys,
                    "v": SCAN_VERSION,
                    **({"decontaminate": self._eval_spec} if self._eval_spec else {}),
                }
            )
            bases.append(cache / pool / f"{shard_name(path)}-{fp}")
        todo = [(p, b) for p, b in zip(files, bases, strict=True) if not _done(b).exists()]
        with disk_guard(str(cache / pool)):
            if self.workers > 1 and len(todo) > 1:
                from concurrent.futures import ProcessPoolExecutor

                # spawn: a fork would copy a loaded tokenizer's threads into the children
                ctx = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(min(self.workers, len(todo)), mp_context=ctx) as ex:
                    futs = [ex.submit(self._scan_file, p, keys, b) for p, b in todo]
                    for f in progress_bar(
                        futs, desc=f"scan {pool}", unit="file", progress=self.progress
                    ):
                        f.result()
            else:
                for p, b in progress_bar(
                    todo, desc=f"scan {pool}", unit="file", progress=self.progress
                ):
                    self._scan_file(p, keys, b)
        tables: list[pa.Table] = []
        stats, methods = Stats(), Counter[str]()
        for fi, base in enumerate(bases):
            info = read_json(_done(base))
            t = pq.read_table(base.with_name(base.name + ".parquet"))
            tables.append(t.append_column("file", pa.array(np.full(len(t), fi, dtype=np.int32))))
            stats += Stats.from_dict(info["stats"])
            methods.update(info["methods"])
        table = pa.concat_tables(tables) if tables else SCAN_SCHEMA.empty_table()
        return PoolScan(table=table, files=files, stats=stats, methods=methods)

    def _domain_scans(
        self, scans: dict[str, PoolScan], domain_of: dict[str, str] | None
    ) -> dict[str, PoolScan]:
        """One scan per domain of the mixture (``domain/<domain>``): the rows of every pool's
        scan whose document is in that domain, with ``file`` indices into one joint file list.

        Raises:
            ConfigError: the mixture gives tokens to a domain no pool document is in.
        """
        want = [k for k in self.mixture if self.budgets[k] > 0]
        files: list[str] = []
        rows: dict[str, list[pa.Table]] = {k: [] for k in want}
        seen: Counter = Counter()
        for scan in scans.values():
            t = scan.table
            t = t.set_column(
                t.schema.get_field_index("file"),
                "file",
                pc.add(t.column("file"), len(files)).cast(pa.int32()),
            )
            files += scan.files
            raw = (
                [domain_of.get(i) for i in t.column("id").to_pylist()]
                if domain_of is not None
                else t.column("cluster").to_pylist()
            )
            keys = np.asarray([domain_key(d) for d in raw], dtype=object)  # [n]
            seen.update(keys.tolist())
            for k in want:
                mask = keys == k
                if mask.any():
                    rows[k].append(t.filter(pa.array(mask)))
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

    # -- steps ------------------------------------------------------------------------------------
    def _scan_file(self, path: str, keys: list[str], base: Path) -> None:
        cols: dict[str, list] = {f.name: [] for f in SCAN_SCHEMA}
        stats, methods = Stats(), Counter[str]()
        rejects = RejectWriter(base.with_name(base.name + ".rejected.jsonl"))
        batch: list[Doc] = []
        sname = shard_name(path)

        def flush() -> None:
            counts, how = self.counter.count(batch)
            methods.update(how)
            for d, n in zip(batch, counts, strict=True):
                score = _first_score(d.metadata, keys)
                if score is None:
                    stats.inc("no_score")
                cols["row"].append(d.metadata["pool_row"])
                cols["id"].append(d.id)
                cols["id_hash"].append(id_key(d.id))
                cols["text_hash"].append(text_key(d.text))
                cols["n_tokens"].append(int(n))
                cols["score"].append(np.nan if score is None else score)
                cid = d.metadata.get("cluster_id")
                cols["cluster"].append("" if cid is None else str(cid))
                cols["source"].append(str(d.metadata.get("shard", sname)))
            batch.clear()

        for rec in read_pool_shard(path):
            stats.inc("seen")
            if isinstance(rec, Rejected):
                rejects.add(rec)
                stats.inc(f"rejected/{rec.reason}")
                continue
            if self._eval_fp is not None and self._eval_fp.contaminated(rec.text):
                stats.inc("dropped/contaminated")
                continue
            batch.append(rec)
            if len(batch) >= SCAN_BATCH:
                flush()
        if batch:
            flush()
        stats.inc("candidates", len(cols["row"]))
        with AtomicWriter(base.with_name(base.name + ".parquet")) as tmp:
            pq.write_table(pa.table(cols, schema=SCAN_SCHEMA), tmp)
        rejects.close()
        # the .json marker goes last: its presence says the scan of this file is complete
        write_json_atomic(
            base.with_name(base.name + ".json"),
            {
                "file": path,
                "stats": stats.to_dict(),
                "methods": dict(methods),
                "rejects": rejects.counts(),
            },
        )

    def _selection_table(self, scans: dict[str, PoolScan], selection: Selection) -> pa.Table:
        """Chosen documents sorted by (pool, file, row), each with its output part."""
        tables = []
        for k, scan in scans.items():
            idx = np.sort(selection.pools[k].selected)
            t = scan.table.take(pa.array(idx)).select(
                ["file", "row", "id", "n_tokens", "score", "cluster", "source"]
            )
            paths = pa.array([scan.files[i] for i in t.column("file").to_pylist()], pa.string())
            t = t.append_column("path", paths).append_column(
                "pool", pa.array([k] * len(t), pa.string())
            )
            tables.append(t.sort_by([("file", "ascending"), ("row", "ascending")]))
        t = pa.concat_tables(tables) if tables else None
        if t is None or len(t) == 0:
            empty = {
                "pool": pa.string(),
                "path": pa.string(),
                "row": pa.int64(),
                "id": pa.string(),
                "n_tokens": pa.int64(),
                "score": pa.float64(),
                "cluster": pa.string(),
                "source": pa.string(),
                "part": pa.int32(),
            }
            return pa.schema(empty).empty_table()
        cum = np.cumsum(t.column("n_tokens").to_numpy())  # [n]
        # a part closes once it holds part_tokens; a document longer than that makes a part of
        # its own, and part numbers stay dense (no empty part)
        raw = (cum - 1) // self.part_tokens  # [n], non-decreasing
        part = np.unique(raw, return_inverse=True)[1].astype(np.int32)
        t = t.append_column("part", pa.array(part))
        return t.select(
            ["pool", "path", "row", "id", "n_tokens", "score", "cluster", "source", "part"]
        )

    def _write_parts(self, out: Path, chosen: pa.Table, scans: dict[str, PoolScan]) -> list[dict]:
        parts: list[dict] = []
        if len(chosen) == 0:
            return parts
        part_col = chosen.column("part").to_numpy()
        n_parts = int(part_col.max()) + 1
        bounds = np.searchsorted(part_col, np.arange(n_parts + 1))  # part p: bounds[p]:bounds[p+1]
        reader = _PoolFiles()
        for p in progress_bar(
            range(n_parts), desc="write parts", unit="file", progress=self.progress
        ):
            rows = chosen.slice(bounds[p], bounds[p + 1] - bounds[p])
            paths = {
                f: out / f / f"part_{p:05d}.{'json' if f == 'lmflow' else 'parquet'}"
                for f in self.formats
            }
            info = {
                "part": p,
                "docs": len(rows),
                "tokens": int(pc.sum(rows.column("n_tokens")).as_py()),
                "files": {f: str(paths[f].relative_to(out)) for f in self.formats},
            }
            parts.append(info)
            if all(pth.exists() for pth in paths.values()):
                continue  # finished by an earlier run
            with disk_guard(str(paths[self.formats[0]])):
                self._write_part(rows, paths, reader)
        return parts

    def _write_part(self, rows: pa.Table, paths: dict[str, Path], reader: _PoolFiles) -> None:
        # every format of a part is renamed into place only when all of them are written
        with ExitStack() as stack:
            tmps = {f: stack.enter_context(AtomicWriter(p)) for f, p in paths.items()}
            with ExitStack() as files:
                lm = (
                    LMFlowStream(files.enter_context(open(tmps["lmflow"], "wb")))
                    if "lmflow" in tmps
                    else None
                )
                pw = None
                if "parquet" in tmps:
                    pw = files.enter_context(pq.ParquetWriter(tmps["parquet"], OUT_SCHEMA))
                buf: list[dict] = []
                for rec in _read_rows(rows, reader):
                    if lm is not None:
                        lm.write(rec["text"])
                    if pw is not None:
                        buf.append(rec)
                        if len(buf) >= 4096:
                            pw.write_table(pa.Table.from_pylist(buf, schema=OUT_SCHEMA))
                            buf.clear()
                if pw is not None and buf:
                    pw.write_table(pa.Table.from_pylist(buf, schema=OUT_SCHEMA))
                if lm is not None:
                    lm.close()

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
) -> dict[str, int]:
    """Tokens available in each pool (scanning them, through the same cache as builds).

    This is the prior of the RegMix proposals (``retriever mix propose --pools``).
    """
    scans = _scan_pools(pools, tokenizer, scan_cache, workers, progress)
    return {k: s.tokens for k, s in scans.items()}


def domain_token_counts(
    pools: dict[str, str],
    domains: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    scan_cache: str | os.PathLike | None = None,
    workers: int = 1,
    progress: bool | None = None,
) -> dict[str, int]:
    """Tokens of the pools' documents per domain, keyed ``domain/<domain>`` (the RegMix prior of
    a mixture over domains, ``retriever mix propose --over domains``).

    Domains come from ``domains`` (a ``retriever domains`` folder: id -> domain), else from the
    records' ``cluster_id``; a document in several pools counts once. Largest domain first.
    """
    domain_of = None
    if domains is not None:
        from retriever.domains import read_domains

        domain_of = read_domains(domains)
    scans = _scan_pools(pools, tokenizer, scan_cache, workers, progress)
    tokens: Counter = Counter()
    seen: set[int] = set()
    for scan in scans.values():
        t = scan.table
        raw = (
            [domain_of.get(i) for i in t.column("id").to_pylist()]
            if domain_of is not None
            else t.column("cluster").to_pylist()
        )
        for h, d, n in zip(
            t.column("id_hash").to_pylist(), raw, t.column("n_tokens").to_pylist(), strict=True
        ):
            if h not in seen:
                seen.add(h)
                tokens[domain_key(d)] += int(n)
    return dict(sorted(tokens.items(), key=lambda kv: (-kv[1], kv[0])))


def _scan_pools(
    pools: dict[str, str],
    tokenizer: str | os.PathLike | None,
    scan_cache: str | os.PathLike | None,
    workers: int,
    progress: bool | None,
) -> dict[str, PoolScan]:
    b = DatasetBuilder(
        pools,
        {k: 1.0 for k in pools},
        len(pools),
        tokenizer=tokenizer,
        workers=workers,
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


class _PoolFiles:
    """Sequential access to pool files for writing parts: parts are consecutive in (file, row)
    order, so the file a part ends in is kept open for the next part instead of re-read."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.it: Iterator[Doc | Rejected] | None = None
        self.next_row = 0  # pool row the open iterator yields next

    def docs_from(self, path: str, row: int) -> Iterator[Doc]:
        """Docs of ``path`` from pool row ``row`` on (rows before it are skipped)."""
        if self.path != path or self.it is None or self.next_row > row:
            self.path, self.it, self.next_row = path, iter(read_pool_shard(path)), 0
        for rec in self.it:
            self.next_row += 1
            if isinstance(rec, Doc) and rec.metadata["pool_row"] >= row:
                yield rec


def _read_rows(rows: pa.Table, files: _PoolFiles | None = None) -> Iterator[dict]:
    """The records of ``rows`` (sorted by path, row), read back from the pool files in order."""
    files = files or _PoolFiles()
    paths = rows.column("path").to_pylist()
    want_rows = rows.column("row").to_pylist()
    ids = rows.column("id").to_pylist()
    meta = rows.select(["pool", "score", "n_tokens", "cluster", "source"]).to_pylist()
    i = 0
    while i < len(paths):
        path = paths[i]
        j = i
        while j < len(paths) and paths[j] == path:
            j += 1
        need = dict(zip(want_rows[i:j], range(i, j), strict=True))
        last = want_rows[j - 1]
        found = 0
        for rec in files.docs_from(path, want_rows[i]):
            r = rec.metadata["pool_row"]
            k = need.get(r)
            if k is not None:
                if rec.id != ids[k]:
                    raise InputError(
                        f"pool file {path} changed during the build (row {r} is now {rec.id!r}, "
                        f"was {ids[k]!r}); rerun build-dataset into a new --out folder"
                    )
                found += 1
                yield {"id": rec.id, "text": rec.text, **meta[k]}
            if r >= last:
                break
        if found != j - i:
            raise InputError(
                f"pool file {path} lost rows since it was scanned; rerun into a new --out folder"
            )
        i = j


def _duplicates_table(scans: dict[str, PoolScan], selection: Selection) -> pa.Table:
    ids, pool, kept_by = [], [], []
    for k, scan in scans.items():
        ps = selection.pools[k]
        if len(ps.duplicates):
            ids.extend(scan.table.column("id").take(pa.array(ps.duplicates)).to_pylist())
            pool.extend([k] * len(ps.duplicates))
            kept_by.extend(ps.duplicate_of)
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "pool": pa.array(pool, pa.string()),
            "kept_by": pa.array(kept_by, pa.string()),
        }
    )


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


def _done(base: Path) -> Path:
    """The marker of a finished scan file: its presence says the scan entry is complete."""
    return base.with_name(base.name + ".json")


def _first_score(meta: dict, keys: list[str]) -> float | None:
    for k in keys:
        v = meta.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None
