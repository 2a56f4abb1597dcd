"""``score_corpus``: the one library call behind ``retriever score``."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from retriever.errors import InputError
from retriever.io import check_writable, read_json, sweep_temp, write_json_atomic
from retriever.lock import OutputLock
from retriever.score.job import (
    DocSampler,
    SampleSpec,
    ScoreJob,
    parse_sample,
    resolve_sample,
    shard_outputs,
)
from retriever.score.select import summarize

log = logging.getLogger(__name__)


def score_corpus(
    index_dirs: list[str],
    corpus: list[str],
    out_dir: str | os.PathLike,
    top_fraction: float | None = None,
    thresholds: dict[str, float] | None = None,
    store: str | None = "default",
    ann_min_rows: int = 100_000,
    executor: str = "inline",
    workers: int | None = None,
    progress: bool = False,
    executor_settings: dict[str, Any] | None = None,
    sample: Any = None,
    seed: int = 0,
    **job_kwargs: Any,
) -> dict[str, Any]:
    """Score every corpus document against every task index, then summarize and fill the store.

    Args:
        index_dirs: ``indexes/<task>`` folders.
        corpus: shard files, folders or Hub ids.
        out_dir: output folder (resumable: rerun the same call to finish a killed run).
        top_fraction, thresholds: candidate rule per task (see :mod:`retriever.score.select`).
        store: ``"default"`` (``<out_dir>/store``), a LanceDB URI, or ``None`` for no store.
        ann_min_rows: build an ANN index on the store once it has this many rows.
        executor: ``inline`` (this process), or a datatrove executor ``local`` / ``slurm`` / ``ray``
            (through :func:`retriever.executors.run_sharded`), which spreads shards over workers.
        workers: parallel workers for datatrove executors.
        sample: embed a seeded random sample only: a fraction (0.01, ``"1%"``), a document count
            (2_000_000, ``"2M"``: the fraction is count / corpus size, from parquet metadata or a
            prefix estimate, logged and recorded), or a :class:`~retriever.score.job.SampleSpec`.
        seed: the sample's hash key.
        **job_kwargs: :class:`ScoreJob` options (k, batch_size, text_field, detokenizer, ...).

    Returns:
        The summary dict (also written to ``<out_dir>/summary.json``).
    """
    created = not Path(out_dir).exists()
    check_writable(out_dir)
    with OutputLock(out_dir):  # one writer per folder: a second run is refused, naming this one
        sweep_temp(out_dir)
        try:
            sampler = sampler_for(sample, corpus, out_dir, seed)
            job = ScoreJob(
                index_dirs=list(index_dirs),
                corpus=list(corpus),
                out_dir=str(out_dir),
                sample=sampler,
                **job_kwargs,
            )
            shards = job.prepare()
            _run_shards(job, shards, executor, workers, progress, executor_settings)
            if store is not None:
                ingest_store(out_dir, None if store == "default" else store, ann_min_rows)
            summary = _summary(out_dir, top_fraction, thresholds)
        except BaseException:
            # a run that failed before finishing any shard leaves nothing behind (no manifest that
            # a corrected rerun would then refuse); a partial run stays, to be resumed
            if created and not any((Path(out_dir) / "done").glob("*.json")):
                shutil.rmtree(out_dir, ignore_errors=True)
            raise
    return summary


def _run_shards(
    job: ScoreJob,
    shards: list[str],
    executor: str,
    workers: int | None,
    progress: bool,
    executor_settings: dict[str, Any] | None,
) -> None:
    """Score the unfinished ``shards``, in this process or through a datatrove executor."""
    if executor == "inline":
        job.run(progress=progress)
        return
    from retriever.executors import run_sharded

    # the executor keeps its own markers under logs/; done/<shard>.json written by the job
    # itself stays the one record of a finished shard
    result = run_sharded(
        job.score_shard,
        shards,
        executor=executor,
        workers=workers,
        logging_dir=str(job.out / "logs"),
        progress=progress,
        **(executor_settings or {}),
    )
    for shard in result.per_shard:  # finished now: an earlier failure no longer stands
        job.failed_path(shard).unlink(missing_ok=True)
    for shard, error in result.failed.items():
        write_json_atomic(job.failed_path(shard), {"shard": shard, "error": error})
    if result.submitted:
        log.info(
            "submitted to %s; rerun the same command once the jobs are done to summarize",
            executor,
        )


def _summary(
    out_dir: str | os.PathLike, top_fraction: float | None, thresholds: dict[str, float] | None
) -> dict[str, Any]:
    """The folder's summary with its duplicate ids (written once, to ``summary.json``).

    Raises:
        InputError: records were read and none could be scored.
    """
    dups = duplicate_ids(out_dir)
    if dups is not None and dups["ids"]:
        log.warning(
            "%d document id(s) occur in more than one record (%d extra records), "
            "e.g. %s: later stages tell documents apart by id; give unique ids "
            "(--id-field) or drop the duplicates",
            dups["ids"],
            dups["extra_records"],
            dups["examples"][:3],
        )
    summary = summarize(out_dir, top_fraction, thresholds, duplicates=dups)
    if summary["docs_in"] and not summary["scored"]:
        reasons = summary["rejected_by_reason"]
        raise InputError(
            f"none of the {summary['docs_in']} records could be scored ({reasons}); "
            + (
                "the records have no text field: pass --text-field NAME (or --tokens-field and "
                "--detokenizer for token ids), with a new --out"
                if "no_text" in reasons
                else f"see {Path(out_dir) / 'rejected'}"
            )
        )
    return summary


def sampler_for(
    sample: Any, corpus: list[str], out_dir: str | os.PathLike, seed: int = 0
) -> DocSampler | None:
    """The sampler of a score run; a count becomes a fraction of the corpus size (see
    :func:`score_corpus`). A resumed run reuses the fraction its manifest recorded, so a corpus that
    grew since does not change which documents are sampled."""
    spec = (
        sample if sample is None or isinstance(sample, SampleSpec) else parse_sample(sample, seed)
    )
    if spec is None or spec.fraction is not None:
        return resolve_sample(spec)
    man = Path(out_dir) / "manifest.json"
    prior = read_json(man)["settings"].get("sample") if man.exists() else None
    if prior and prior.get("requested") == spec.describe() and prior.get("seed") == spec.seed:
        return DocSampler(**prior)
    from retriever.corpus.sharding import list_shards
    from retriever.corpus.size import corpus_size

    size = corpus_size(list_shards(corpus))
    if not size.docs:
        raise InputError(
            f"cannot tell the size of {corpus} ({size.method}) to turn a sample count "
            "into a fraction; pass the sample as a fraction"
        )
    sampler = resolve_sample(spec, size.docs, size.method)
    if sampler is not None:
        log.info("sample: %s", sampler.basis)
    return sampler


def ingest_store(
    out_dir: str | os.PathLike, uri: str | None = None, ann_min_rows: int = 100_000
) -> int:
    """Put finished shards' vectors into the LanceDB store (single writer); returns rows added.

    A shard goes in when it has no ingest marker for this store (never ingested, or rescored:
    :func:`~retriever.store.forget_ingested`): its rows are deleted, then its scores appended, then
    its marker written. A kill anywhere leaves the shard without a marker, so the next ingest
    deletes what of it got in and adds it again: no duplicate, no lost row. The other shards' rows
    are not rewritten.

    The default store belongs to this folder: afterwards it must hold the rows the markers record.
    When it does not (rows lost to a failed write, rows of a shard that is no longer done), the
    shards whose rows differ are put right, found by one scan of the ``shard`` column.
    """
    from retriever.store import CorpusStore, default_store_uri

    out = Path(out_dir)
    settings = read_json(out / "manifest.json")["settings"]
    own = uri is None
    store = CorpusStore(uri or default_store_uri(out), settings["model"], settings["dim"])
    outputs = shard_outputs(out)
    ingested = _ingest_markers(out, outputs, store.uri)
    if store.repaired:  # its table was unreadable and dropped: every shard goes in again
        ingested = {}
    todo = [n for n in outputs if n not in ingested]
    added = _replace_shards(store, out, outputs, todo, ingested)
    if own and store.count() != sum(ingested.values()):
        counts = store.shard_counts()
        stray = sorted(set(counts) - set(outputs))
        differ = [n for n in outputs if counts.get(n, 0) != ingested[n]]
        log.warning(
            "store %s holds %d rows, the ingested shards %d: replacing %d shard(s) whose rows "
            "differ, dropping %d no longer scored",
            store.uri,
            sum(counts.values()),
            sum(ingested.values()),
            len(differ),
            len(stray),
        )
        store.delete_shards(stray)
        added += _replace_shards(store, out, outputs, differ, ingested)
    store.ensure_ann_index(min_rows=ann_min_rows)
    write_json_atomic(
        out / "store.json",
        {
            "uri": store.uri,
            "model": store.model,
            "dim": store.dim,
            "rows": (total := store.count()),
            "ann_index": store.has_ann_index(),
        },
    )
    log.info("store %s: +%d rows, %d in all", store.uri, added, total)
    return added


def _ingest_markers(out: Path, names, uri: str) -> dict[str, int]:
    """Rows of each shard in ``names`` whose ingest marker is readable and names the store at
    ``uri`` (a marker of another store says nothing of this one)."""
    from retriever.store import ingest_marker

    found: dict[str, int] = {}
    for name in names:
        mark = ingest_marker(out, name)
        if not mark.exists():
            continue
        try:
            doc = read_json(mark)
            rows = int(doc["rows"])
        except (InputError, KeyError, TypeError, ValueError):
            continue  # unreadable: that shard is ingested again
        if _same_store(doc.get("uri"), uri):
            found[name] = rows
    return found


def _same_store(a: Any, b: str) -> bool:
    if not isinstance(a, str):
        return False
    if a == b or "://" in a or "://" in b:
        return a == b
    return os.path.abspath(a) == os.path.abspath(b)  # one local folder, spelled two ways


def _replace_shards(
    store, out: Path, outputs: dict[str, Path], names: list[str], ingested: dict[str, int]
) -> int:
    """Delete the rows of shards ``names``, then add each from its scores parquet and write its
    marker (recorded in ``ingested``); returns rows added. Their markers go first, so a kill leaves
    every shard not yet marked to the next ingest."""
    from retriever.store import forget_ingested, ingest_marker

    if not names:
        return 0
    for name in names:
        forget_ingested(out, name)
        ingested.pop(name, None)
    store.delete_shards(names)
    added = 0
    for name in names:
        n = store.add_shard(name, outputs[name])
        write_json_atomic(ingest_marker(out, name), {"rows": n, "uri": store.uri})
        ingested[name] = n
        added += n
    return added


def duplicate_ids(out_dir: str | os.PathLike, max_rows: int = 50_000_000) -> dict[str, Any] | None:
    """Ids that more than one scored record carries (within or across shards), counted.

    Reads only the ``id`` column; ``None`` (not checked) above ``max_rows`` scored records, where
    holding every id would cost gigabytes.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    paths = list(shard_outputs(out_dir).values())
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    if rows > max_rows:
        return None
    if not rows:
        return {"ids": 0, "extra_records": 0, "examples": []}
    ids = pa.chunked_array(
        [pq.read_table(p, columns=["id"]).column("id").combine_chunks() for p in paths]
    )
    counts = pc.value_counts(ids)
    n = counts.field("counts").to_numpy()
    dup = n > 1
    values = counts.field("values").filter(pa.array(dup))
    return {
        "ids": int(dup.sum()),
        "extra_records": int((n[dup] - 1).sum()),
        "examples": values.to_pylist()[:10],
    }
