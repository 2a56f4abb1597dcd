"""batch_filter: multi-task filtering of shards with real fastText models, accounting, formats,
thresholds, resume after a failed shard or a kill, bad input, and the datatrove filter."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_distill import synthetic_doc, synthetic_label_rows

from retriever.batch_filter import (
    BatchFilter,
    FastTextScorer,
    FilterConfig,
    TokenCounter,
    resolve_models,
    threshold_for_fraction,
)
from retriever.corpus import ReaderConfig
from retriever.distill import DistillConfig, FastTextDistiller, predict_positive, write_labels
from retriever.errors import ConfigError, InputError, ModelMismatchError, ResumeError

REPO = Path(__file__).resolve().parents[1]
TASKS = ("fc", "prose")
BAD_LINES = [b"{not json", b'{"title": "no text"}', b'{"text": ""}', b"\xff\xfe broken"]


# -- fixtures: two real (tiny) fastText models and a small corpus with bad records ----------------
@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """``fc`` keeps tool-call talk; ``prose`` keeps the opposite (labels flipped)."""
    root = tmp_path_factory.mktemp("models")
    rows = synthetic_label_rows("fc", 60, 60, 10, seed=0)
    flip = {"positive": "negative", "negative": "positive", "uncertain": "uncertain"}
    rows += [
        {**r, "task": "prose", "label": flip[r["label"]]}
        for r in synthetic_label_rows("prose", 60, 60, 10, seed=0)
    ]
    write_labels(root / "labels" / "all.parquet", rows)
    cfg = DistillConfig(bucket=50_000, dim=16, epoch=15, lr=0.5, training_set="gold+confirmed")
    out = {}
    for t in TASKS:
        path = root / "indexes" / t / "filter.bin"
        FastTextDistiller(cfg).run(root / "labels" / "all.parquet", t, path)
        out[t] = str(path)
    return out


def fc_only(models: dict[str, str]) -> dict[str, str]:
    return {"fc": models["fc"]}


def write_corpus(
    folder: Path, n_shards: int = 3, n_docs: int = 40, seed: int = 0, bad: bool = True
) -> list[Path]:
    """Shards in three formats; each jsonl shard carries the four kinds of bad line (``bad``)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(n_shards):
        recs = [
            {"id": f"s{s}-{i}", "text": synthetic_doc(rng, rng.random() < 0.4), "cluster_id": s}
            for i in range(n_docs)
        ]
        kind = s % 3
        if kind == 2:
            p = folder / f"part{s}.parquet"
            pq.write_table(pa.Table.from_pylist(recs), p)
        else:
            lines = [json.dumps(r).encode() for r in recs]
            lines[5:5] = BAD_LINES if bad else []
            data = b"\n".join(lines) + b"\n"
            p = folder / (f"part{s}.jsonl.gz" if kind == 1 else f"part{s}.jsonl")
            p.write_bytes(gzip.compress(data) if kind == 1 else data)
        paths.append(p)
    return paths


def corpus_docs(paths: list[Path]) -> dict[str, str]:
    from retriever.corpus import CorpusReader
    from retriever.data import Doc

    return {r.id: r.text for p in paths for r in CorpusReader().read(str(p)) if isinstance(r, Doc)}


def read_pool(folder: Path) -> dict[str, dict]:
    out = {}
    for f in sorted(folder.iterdir()):
        if f.name.endswith(".jsonl.gz"):
            with gzip.open(f, "rb") as fh:
                for line in fh:
                    rec = json.loads(line)
                    assert rec["id"] not in out, f"duplicate {rec['id']}"
                    out[rec["id"]] = rec
    return out


def expected_kept(
    models: dict[str, str], docs: dict[str, str], thr: dict[str, float]
) -> dict[str, set[str]]:
    """Brute force: score each document on its own and compare with the threshold."""
    from retriever.batch_filter import load_model

    ids = sorted(docs)
    out = {}
    for t, path in models.items():
        p = predict_positive(load_model(path), [docs[i] for i in ids])
        out[t] = {i for i, v in zip(ids, p, strict=True) if v >= thr[t]}
    return out


# -- pure decision core ---------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 5, 17, 64])
def test_threshold_for_fraction_matches_brute_force(n):
    rng = np.random.default_rng(n)
    p = np.round(rng.random(n), 2)  # ties
    w = rng.integers(1, 50, n).astype(float)
    for f in (0.05, 0.3, 0.5, 0.99, 1.0):
        brute = max(t for t in np.unique(p) if w[p >= t].sum() >= f * w.sum() - 1e-9)
        assert threshold_for_fraction(p, w, f) == pytest.approx(brute)
    with pytest.raises(ConfigError):
        threshold_for_fraction(p, w, 0.0)


def test_rethresholding_finds_the_top_fraction_threshold_over_distinct_stored_values():
    """Over the float16 values' distinct values with summed weights: the threshold of the rule
    over every document, ties, zero weights and one value included."""
    from retriever.batch_filter.rethreshold import stored_fraction_threshold

    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(1, 2000))
        p = rng.random(n)
        p = np.round(p, 2) if trial % 3 == 0 else (np.full(n, 0.5) if trial % 5 == 0 else p)
        p = p.astype(np.float16).astype(np.float32)  # as read back from scores/
        w = None if trial % 2 else rng.integers(0, 5000, n).astype(np.float64)
        for f in (1e-6, 0.05, 0.3, 0.5, 0.99, 1.0):
            assert stored_fraction_threshold(p, w, f) == threshold_for_fraction(p, w, f)
    assert stored_fraction_threshold(np.zeros(0, np.float32), None, 0.3) == 0.0
    with pytest.raises(ConfigError):
        stored_fraction_threshold(p, None, 0.0)


def test_a_top_fraction_never_cuts_among_the_documents_at_the_students_floor(caplog):
    """fastText reports p + 1e-5: when more of the sample than the fraction's rest sits tied at
    that floor (a student that finds the task nowhere in the corpus), the top fraction keeps the
    documents above it, not the whole tie (which kept 100% of the corpus), and says so."""
    import logging

    from retriever.batch_filter.probs import to_float16_keeping
    from retriever.batch_filter.rethreshold import stored_fraction_threshold
    from retriever.batch_filter.thresholds import (
        FLOOR_PROB,
        above_floor,
        top_fraction_decisions,
    )

    floor = np.float32(1e-5) + np.float32(3e-13)  # what fastText gives a document of no evidence
    above = np.linspace(2e-5, 0.2, 100, dtype=np.float32)
    p = np.concatenate([np.full(900, floor, np.float32), above])[:, None]  # [1000, 1]
    w = np.ones(1000)
    with caplog.at_level(logging.WARNING, logger="retriever.batch_filter.thresholds"):
        d = top_fraction_decisions(["fc"], p, w, 0.15, "docs")["fc"]
    assert d.threshold == FLOOR_PROB and d.sample_kept_share == pytest.approx(0.10)
    assert d.sample_floor_share == pytest.approx(0.90)
    assert "90% of the sampled docs sit at the student's floor" in caplog.text
    # above the floor the rule is the plain one, and says nothing of a floor
    d = top_fraction_decisions(["fc"], p, w, 0.05, "docs")["fc"]
    assert d.threshold == float(threshold_for_fraction(p[:, 0], w, 0.05)) > FLOOR_PROB
    assert d.sample_floor_share is None and d.sample_kept_share == pytest.approx(0.05)
    # re-thresholding the stored float16 values applies the same floor: float16 tells 1e-5 from
    # FLOOR_PROB apart, so the stored floor documents stay out
    stored = to_float16_keeping(p, np.array([FLOOR_PROB])).astype(np.float32)[:, 0]
    thr = above_floor(stored_fraction_threshold(stored, None, 0.15))
    assert thr == FLOOR_PROB and int((stored >= np.float32(thr)).sum()) == 100


# -- end to end (library) --------------------------------------------------------------------------
def test_multi_task_filter_outputs_scores_and_accounting(tmp_path, models):
    shards = write_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    cfg = FilterConfig(
        tasks=TASKS,
        models=models,
        threshold={"fc": 0.5, "prose": 0.6},
        batch_size=7,
        write_scores=True,
    )
    rep = BatchFilter(cfg).run([str(tmp_path / "corpus")], out, workers=1)
    docs = corpus_docs(shards)
    want = expected_kept(models, docs, {"fc": 0.5, "prose": 0.6})
    assert 0 < len(want["fc"]) < len(docs) and 0 < len(want["prose"]) < len(docs)
    for t in TASKS:
        pool = read_pool(out / t)
        assert set(pool) == want[t]  # one output per task, exactly the brute-force set
        for rec in pool.values():
            m = rec["metadata"]
            assert rec["text"] == docs[rec["id"]]
            assert {"prob_fc", "prob_prose", "shard", "row", "cluster_id"} <= set(m)
            assert m[f"prob_{t}"] >= {"fc": 0.5, "prose": 0.6}[t]
    man = json.loads((out / "manifest.json").read_text())
    tot = man["totals"]
    n_lines = 3 * 40 + 2 * len(BAD_LINES)
    assert tot["docs_in"] == n_lines and tot["shards_done"] == 3 and man["complete"]
    assert tot["rejected"] == {"bad_json": 2, "no_text": 2, "empty": 2, "undecodable": 2}
    for t in TASKS:
        assert tot["kept"][t] == len(want[t])
        assert tot["kept"][t] + tot["dropped"][t] + tot["rejected_total"] == n_lines
        assert tot["chars_kept"][t] == sum(len(docs[i]) for i in want[t])
    assert all(s["balanced"] for s in man["shards"].values())
    assert man["tokens_method"].startswith("estimate")
    assert (
        man["throughput"]["docs_this_run"] == n_lines and man["throughput"]["docs_per_second"] > 0
    )
    rej = [
        json.loads(x) for x in (out / "rejected" / "corpus__part0.jsonl").read_text().splitlines()
    ]
    assert [r["row"] for r in rej] == [5, 6, 7, 8] and rej[0]["raw"].strip() == "{not json"
    assert not (out / "rejected" / "corpus__part2.jsonl").exists()  # the parquet shard is clean
    # raw scores of every accepted document: re-thresholding them gives the pools back
    scores = pa.concat_tables(
        [pq.read_table(f) for f in sorted((out / "scores").glob("*.parquet"))]
    )
    assert scores.num_rows == len(docs) and set(scores.column("id").to_pylist()) == set(docs)
    for t, thr in {"fc": 0.5, "prose": 0.6}.items():
        p = scores.column(f"prob_{t}").to_numpy()
        ids = scores.column("id").to_pylist()
        assert {i for i, v in zip(ids, p, strict=True) if v >= thr} == want[t]

    # rerun: everything is skipped, nothing is duplicated, the accounting is unchanged
    rep2 = BatchFilter(cfg).run([str(tmp_path / "corpus")], out, workers=1)
    assert len(rep2.run.skipped) == 3 and rep2.totals["kept"] == tot["kept"]
    assert set(read_pool(out / "fc")) == want["fc"]
    assert rep.run.complete


def test_output_formats_are_readable_by_datatrove(tmp_path, models):
    from datatrove.pipeline.readers import JsonlReader, ParquetReader

    write_corpus(tmp_path / "corpus", n_shards=2)
    base = tmp_path / "ref"
    BatchFilter(FilterConfig(tasks=("fc",), models=fc_only(models))).run(
        [str(tmp_path / "corpus")], base, workers=1
    )
    want = read_pool(base / "fc")
    for fmt in ("jsonl", "parquet", "lmflow"):
        out = tmp_path / fmt
        BatchFilter(FilterConfig(tasks=("fc",), models=fc_only(models), format=fmt)).run(
            [str(tmp_path / "corpus")], out, workers=1
        )
        if fmt == "lmflow":
            texts = []
            for f in sorted((out / "fc").glob("*.json")):
                obj = json.loads(f.read_text())
                assert obj["type"] == "text_only" and set(obj["instances"][0]) == {"text"}
                texts += [x["text"] for x in obj["instances"]]
            assert sorted(texts) == sorted(r["text"] for r in want.values())
            continue
        reader = JsonlReader(str(out / "fc")) if fmt == "jsonl" else ParquetReader(str(out / "fc"))
        got = {d.id: d for d in reader.run()}
        assert set(got) == set(want)
        for i, d in got.items():
            assert d.text == want[i]["text"]
            assert d.metadata["prob_fc"] == pytest.approx(want[i]["metadata"]["prob_fc"])
            assert d.metadata["cluster_id"] == want[i]["metadata"]["cluster_id"]


def test_parquet_pool_unions_metadata_keys(tmp_path):
    from retriever.batch_filter import open_pool_writer
    from retriever.data import Doc

    w = open_pool_writer("parquet", tmp_path / "p")
    w.write(Doc("a", "one", {"shard": "s", "row": 0, "x": 1}))
    w.write(Doc("b", "two", {"shard": "s", "row": 1, "x": 2.5, "y": "only here", "z": [1, 2]}))
    w.commit()
    rows = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert rows[0]["metadata"] == {"shard": "s", "row": 0, "x": 1.0, "y": None, "z": None}
    assert rows[1]["metadata"]["y"] == "only here" and rows[1]["metadata"]["z"] == "[1,2]"
    assert not list(tmp_path.glob("*.tmp"))


def test_top_fraction_threshold_found_on_sample_and_reused(tmp_path, models):
    shards = write_corpus(tmp_path / "corpus", n_shards=3)
    docs = corpus_docs(shards)
    cfg = FilterConfig(tasks=TASKS, models=models, top_fraction=0.3, by="chars", sample_docs=10_000)
    out = tmp_path / "out"
    rep = BatchFilter(cfg).run([str(tmp_path / "corpus")], out, workers=1)
    man = rep.manifest
    for t in TASKS:
        dec = man["decisions"][t]
        assert dec["mode"] == "top-fraction" and dec["sample_docs"] == len(docs)
        # the sample is the whole corpus here, so the kept share is the smallest one >= 30%
        share = man["totals"]["kept_share_chars"][t]
        assert share >= 0.3 and share == pytest.approx(dec["sample_kept_share"])
        kept = read_pool(out / t)
        least = min(kept.values(), key=lambda r: r["metadata"][f"prob_{t}"])
        assert man["totals"]["chars_kept"][t] - len(least["text"]) < 0.3 * man["totals"]["chars_in"]
    # resume: thresholds come from the manifest, not from a new sample
    m = json.loads((out / "manifest.json").read_text())
    m["decisions"]["fc"]["threshold"] = 0.999
    (out / "manifest.json").write_text(json.dumps(m))
    (out / "done" / "corpus__part1.json").unlink()
    BatchFilter(cfg).run([str(tmp_path / "corpus")], out, workers=1)
    assert all(
        r["metadata"]["prob_fc"] >= 0.999
        for r in read_pool(out / "fc").values()
        if r["id"].startswith("s1-")
    )

    # a run decided before the floor rule (its threshold on the student's floor) is resumed as
    # it was, with one line saying how to get the current rule's pools from the stored scores
    import logging

    m["decisions"]["fc"]["threshold"] = 1.0000003e-05
    (out / "manifest.json").write_text(json.dumps(m))
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("retriever").addHandler(handler)
    try:
        BatchFilter(cfg).run([str(tmp_path / "corpus")], out, workers=1)
    finally:
        logging.getLogger("retriever").removeHandler(handler)
    floor = [x for x in seen if "lies on the student's floor" in x]
    assert len(floor) == 1 and floor[0].startswith("fc: ")
    assert f"filter-rethreshold {out} --top-fraction 0.3 --by chars --out NEW_DIR" in floor[0]


def _bpe_tokenizer(folder: Path):
    """A small byte-level BPE trained here, saved both as tokenizer.json and as a transformers
    folder."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tmodels
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(tmodels.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [synthetic_doc(random.Random(i), i % 2 == 0) for i in range(50)]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"]))
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(str(folder / "hf"))
    return tok


def test_exact_token_counts_with_a_local_tokenizer(tmp_path, models):
    tok = _bpe_tokenizer(tmp_path / "tok")
    shards = write_corpus(tmp_path / "corpus", n_shards=1)
    out = tmp_path / "out"
    cfg = FilterConfig(tasks=("fc",), models=fc_only(models), tokenizer=str(tmp_path / "tok"))
    rep = BatchFilter(cfg).run([str(shards[0])], out, workers=1)
    kept = read_pool(out / "fc")
    want = sum(len(tok.encode(r["text"], add_special_tokens=False).ids) for r in kept.values())
    assert rep.totals["tokens_kept"]["fc"] == want > 0
    assert rep.manifest["tokens_method"].startswith("exact")
    assert TokenCounter(None).count_texts(["abcdefgh"]) == [2]
    with pytest.raises(InputError, match="does not exist"):
        TokenCounter(tmp_path / "nope")


def test_token_id_shards_are_detokenized(tmp_path, models):
    tok = _bpe_tokenizer(tmp_path / "tok")
    rng = random.Random(3)
    texts = [synthetic_doc(rng, i % 2 == 0) for i in range(30)]
    (tmp_path / "tokens").mkdir()
    rows = [{"tokens": tok.encode(t).ids, "token_count": len(tok.encode(t).ids)} for t in texts]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "tokens" / "cluster_1_001.parquet")
    cfg = FilterConfig(
        tasks=("fc",),
        models=fc_only(models),
        reader=ReaderConfig(detokenizer=str(tmp_path / "tok" / "hf")),
    )
    rep = BatchFilter(cfg).run([str(tmp_path / "tokens")], tmp_path / "out", workers=1)
    kept = read_pool(tmp_path / "out" / "fc")
    decoded = [tok.decode(r["tokens"]) for r in rows]
    want = expected_kept(
        fc_only(models),
        {f"tokens__cluster_1_001:{i}": t for i, t in enumerate(decoded)},
        {"fc": 0.5},
    )
    assert set(kept) == want["fc"] and rep.totals["docs_in"] == 30 and len(kept) > 0
    assert all(
        r["text"] == decoded[r["metadata"]["row"]] and r["metadata"]["token_count"] > 0
        for r in kept.values()
    )


# -- resume ---------------------------------------------------------------------------------------
def test_failed_shard_does_not_stop_others_and_rerun_completes(tmp_path, models):
    corpus = tmp_path / "corpus"
    shards = write_corpus(corpus, n_shards=4)
    good = shards[1].read_bytes()
    shards[1].write_bytes(good[: len(good) // 2])  # truncated gzip: the shard dies half-way
    cfg = FilterConfig(tasks=TASKS, models=models)
    out = tmp_path / "out"
    rep = BatchFilter(cfg).run([str(corpus)], out, workers=1)
    assert list(rep.run.failed) == [str(shards[1])] and len(rep.run.per_shard) == 3
    assert "truncated" in rep.manifest["failed"]["corpus__part1"] and not rep.manifest["complete"]
    assert not (out / "fc" / "corpus__part1.jsonl.gz").exists()  # no partial output
    assert not list(out.rglob("*.tmp"))
    with pytest.raises(Exception, match="1 of 4 shards did not finish"):
        rep.run.raise_for_failures()
    shards[1].write_bytes(good)  # fixed: the rerun does that shard only
    rep2 = BatchFilter(cfg).run([str(corpus)], out, workers=1)
    assert (
        rep2.run.skipped == [str(s) for s in shards if s != shards[1]] and rep2.manifest["complete"]
    )
    ref = tmp_path / "ref"
    BatchFilter(cfg).run([str(corpus)], ref, workers=1)
    for t in TASKS:
        assert read_pool(out / t) == read_pool(ref / t)
    assert rep2.totals["kept"] == json.loads((ref / "manifest.json").read_text())["totals"]["kept"]


@pytest.mark.slow
def test_killed_cli_run_resumes_without_duplicates(tmp_path, models):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, n_shards=8, n_docs=1500)
    model_args = [a for t in TASKS for a in ("--model", f"{t}={models[t]}")]
    cmd = [
        sys.executable,
        "-m",
        "retriever",
        "filter",
        "--task",
        "fc",
        "--task",
        "prose",
        "--input",
        str(corpus),
        *model_args,
        "--workers",
        "1",
        "--batch-size",
        "64",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*cmd, "--output", str(out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while not list((out / "done").glob("*.json")):  # kill right after the first finished shard
        assert time.time() < deadline, "no shard finished in 120 s"
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list((out / "done").glob("*.json")))
    assert 1 <= n_done < 8
    rc = subprocess.run(
        [*cmd, "--output", str(out), "--json"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert rc.returncode == 0, rc.stderr[-2000:]
    man = json.loads(rc.stdout)
    assert man["complete"] and man["throughput"]["shards_skipped"] == n_done
    ref = tmp_path / "ref"
    subprocess.run([*cmd, "--output", str(ref)], cwd=REPO, env=env, check=True, capture_output=True)
    for t in TASKS:
        assert read_pool(out / t) == read_pool(ref / t)  # read_pool also fails on a duplicate id
    same = {"shards_done": 0, "seconds": 0}  # timing differs, counts must not
    assert man["totals"] | same == json.loads((ref / "manifest.json").read_text())["totals"] | same


@pytest.mark.slow
def test_all_cores_local_executor_matches_single_process(tmp_path, models):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, n_shards=4)
    cfg = FilterConfig(tasks=TASKS, models=models)
    one = BatchFilter(cfg).run([str(corpus)], tmp_path / "one", workers=1)
    two = BatchFilter(cfg).run([str(corpus)], tmp_path / "two", workers=2)
    assert two.manifest["throughput"]["workers"] == 2
    assert one.totals["kept"] == two.totals["kept"] and two.manifest["complete"]
    for t in TASKS:
        assert read_pool(tmp_path / "one" / t) == read_pool(tmp_path / "two" / t)


# -- bad input and configuration -------------------------------------------------------------------
def test_bad_configuration_gets_typed_errors(tmp_path, models):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, n_shards=1)
    with pytest.raises(InputError, match="retriever distill"):
        resolve_models(["fc"], indexes=tmp_path / "indexes")
    with pytest.raises(ModelMismatchError, match="trained for task 'prose'"):
        resolve_models(["fc"], {"fc": models["prose"]})
    with pytest.raises(ConfigError, match="not among the tasks"):
        resolve_models(["fc"], {"other": models["fc"]})
    with pytest.raises(ConfigError, match="either a threshold or a top fraction"):
        FilterConfig(tasks=("fc",), threshold=0.5, top_fraction=0.1)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        FilterConfig(tasks=("fc",), threshold=1.5)
    out = tmp_path / "out"
    BatchFilter(FilterConfig(tasks=("fc",), models=fc_only(models))).run(
        [str(corpus)], out, workers=1
    )
    with pytest.raises(ResumeError, match="threshold"):
        BatchFilter(FilterConfig(tasks=("fc",), models=fc_only(models), threshold=0.9)).run(
            [str(corpus)], out, workers=1
        )


def test_unencodable_text_is_rejected_not_crashing(models):
    scorer = FastTextScorer({"fc": models["fc"]}, batch_size=4)
    sb = scorer.score_texts(["call the api function", "broken \ud800 text", "a river in autumn"])
    assert sb.bad.tolist() == [False, True, False]
    assert np.isnan(sb.probs[1, 0]) and sb.probs[0, 0] > 0.5 > sb.probs[2, 0]
    from retriever.data import Doc

    out = list(scorer.run(iter([Doc("a", "call the json api"), Doc("b", "x \udfff y")])))
    assert [d.id for d in out] == ["a"] and scorer.stats.counts["rejected/undecodable"] == 1
    assert scorer.stats.balanced()


def test_scored_yields_the_scorable_documents_with_their_probabilities_not_metadata(models):
    from retriever.data import Doc

    texts = ["call the json api", "x \udfff y", "a river in autumn", "get_weather tool call"]
    docs = [Doc(str(i), t) for i, t in enumerate(texts)]
    scorer = FastTextScorer(models, batch_size=3)
    gone = []
    scorer.exclusion = lambda d, reason: gone.append((d.id, reason))
    pieces = list(scorer.scored(iter(docs)))
    assert [d.id for b, _ in pieces for d in b] == ["0", "2", "3"] and gone == [
        ("1", "undecodable")
    ]
    probs = np.concatenate([sb.probs for _, sb in pieces])  # [3, n_tasks], rows of the kept docs
    want = FastTextScorer(models).score_texts([texts[i] for i in (0, 2, 3)]).probs
    np.testing.assert_array_equal(probs, want)
    assert not np.isnan(probs).any() and not any(d.metadata for d in docs)
    c = scorer.stats.counts
    assert (c["seen"], c["kept"], c["rejected/undecodable"]) == (
        4,
        3,
        1,
    ) and scorer.stats.balanced()


def test_max_chars_scores_each_documents_first_characters(models):
    rng = random.Random(3)
    texts = [synthetic_doc(rng, i % 2 == 0, n_words=60) for i in range(12)]
    cut = FastTextScorer(models, max_chars=40).score_texts(texts).probs
    np.testing.assert_array_equal(
        cut, FastTextScorer(models).score_texts([t[:40] for t in texts]).probs
    )
    assert not np.array_equal(cut, FastTextScorer(models).score_texts(texts).probs)


def test_stored_probabilities_are_read_back_beside_their_writer(tmp_path):
    from retriever.batch_filter.probs import (
        ProbWriter,
        prob_matrix,
        read_filter_scores,
        read_probs,
        scores_path,
    )
    from retriever.batch_filter.thresholds import passes
    from retriever.data import Doc
    from retriever.io import write_json_atomic

    rng = np.random.default_rng(0)
    tasks, thr = ["fc", "rag"], np.array([0.5, 0.25], dtype=np.float32)
    p = rng.random((23, 2)).astype(np.float32)  # [n_docs, n_tasks]
    p[:3] = thr + np.float32(1e-6)  # just above: plain float16 would round these below
    docs = [Doc(f"d{i}", "x" * i, {"row": 2 * i}) for i in range(23)]
    shard = str(tmp_path / "corpus" / "part0.jsonl")
    w = ProbWriter(scores_path(tmp_path, shard), tasks, thr)
    for i in range(0, 23, 5):  # batches of 5, the last one shorter
        w.add(docs[i : i + 5], p[i : i + 5], np.array([len(d.text) for d in docs[i : i + 5]]))
    assert not w.path.exists()  # nothing on disk before the commit
    w.commit()
    t = read_probs(w.path, tasks, ["id", "row", "n_chars"])
    assert t.schema.field("prob_fc").type == pa.float16()
    stored = prob_matrix(t, tasks)
    assert (passes(stored, thr) == passes(p, thr)).all() and np.abs(stored - p).max() < 1e-3
    assert t.column("id").to_pylist() == [d.id for d in docs]
    assert t.column("row").to_pylist() == list(range(0, 46, 2))
    assert t.column("n_chars").to_pylist() == list(range(23))
    man = tmp_path / "manifest.json"
    write_json_atomic(man, {"settings": {"tasks": tasks, "shards": [shard]}})
    got_tasks, cols = read_filter_scores(tmp_path)
    assert got_tasks == tasks and cols["shard"].tolist() == [shard] * 23
    np.testing.assert_array_equal(cols["prob_rag"], stored[:, 1])
    write_json_atomic(man, {"settings": {"tasks": tasks, "shards": [shard, shard + "x"]}})
    with pytest.raises(InputError, match="no stored probabilities"):
        read_filter_scores(tmp_path)


def test_cli_filter_json_help_and_errors(tmp_path, models, capsys):
    from retriever.cli import main

    corpus = tmp_path / "corpus"
    write_corpus(corpus, n_shards=2)
    args = [
        "filter",
        "--task",
        "fc",
        "--input",
        str(corpus),
        "--model",
        f"fc={models['fc']}",
        "--workers",
        "1",
    ]
    assert (
        main(
            [
                *args,
                "--output",
                str(tmp_path / "o"),
                "--format",
                "lmflow",
                "--json",
                "--threshold",
                "0.4",
            ]
        )
        == 0
    )
    man = json.loads(capsys.readouterr().out)
    assert man["decisions"]["fc"]["threshold"] == 0.4 and man["settings"]["format"] == "lmflow"
    # --collect rebuilds the accounting from the done markers alone (what follows a Slurm array)
    assert main(["filter", *args[1:], "--output", str(tmp_path / "o"), "--collect", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["totals"] == man["totals"] and again["complete"]
    assert main([*args, "--output", str(tmp_path / "o2"), "--threshold", "fc"]) == 2
    assert "probability" in capsys.readouterr().err
    assert main([*args, "--output", str(tmp_path / "o3"), "--executor", "slurm"]) == 2
    assert "--slurm-partition" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["filter", "--help"])
    assert "--top-fraction" in capsys.readouterr().out


def test_cli_slurm_dry_run_prints_sbatch_script(tmp_path, models, capsys):
    from retriever.cli import main

    corpus = tmp_path / "corpus"
    write_corpus(corpus, n_shards=3)
    rc = main(
        [
            "filter",
            "--task",
            "fc",
            "--input",
            str(corpus),
            "--model",
            f"fc={models['fc']}",
            "--output",
            str(tmp_path / "o"),
            "--executor",
            "slurm",
            "--slurm-partition",
            "cpu",
            "--slurm-time",
            "02:00:00",
            "--slurm-cpus-per-task",
            "2",
            "--slurm-sbatch-arg",
            "account=proj",
            "--dry-run",
        ]
    )
    assert rc == 0
    script = capsys.readouterr().out
    for want in (
        "#SBATCH --partition=cpu",
        "#SBATCH --time=02:00:00",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --array=0-2",
        "#SBATCH --account=proj",
        "launch_pickled_pipeline",
    ):
        assert want in script
    assert not (tmp_path / "o" / "done").exists() or not list((tmp_path / "o" / "done").iterdir())


# -- datatrove filter ------------------------------------------------------------------------------
def test_datatrove_filter_agrees_with_batch_filter_and_datatrove_fasttext(tmp_path, models):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import FastTextClassifierFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from retriever.batch_filter.datatrove_filter import FastTextTaskFilter

    corpus = tmp_path / "corpus"
    # clean shards: datatrove's JsonlReader gives up the rest of a file at its first bad line
    shards = write_corpus(corpus, n_shards=2, bad=False)
    docs = corpus_docs(shards)
    want = expected_kept(models, docs, {"fc": 0.5, "prose": 0.5})
    ours = tmp_path / "ours"
    LocalPipelineExecutor(
        [
            JsonlReader(str(corpus)),
            FastTextTaskFilter(models, 0.5, batch_size=8),
            JsonlWriter(str(ours)),
        ],
        tasks=1,
        logging_dir=str(tmp_path / "l1"),
    ).run()
    got = read_pool(ours)
    assert set(got) == want["fc"] | want["prose"]  # keep="any"
    assert all({"prob_fc", "prob_prose"} <= set(r["metadata"]) for r in got.values())
    theirs = tmp_path / "theirs"
    LocalPipelineExecutor(
        [
            JsonlReader(str(corpus)),
            FastTextClassifierFilter(
                models["fc"], keep_labels=("positive", 0.5), newline_replacement=" "
            ),
            JsonlWriter(str(theirs)),
        ],
        tasks=1,
        logging_dir=str(tmp_path / "l2"),
    ).run()
    assert set(read_pool(theirs)) == want["fc"]
    with pytest.raises(ConfigError):
        FastTextTaskFilter(models, {"fc": 0.5})


def test_probabilities_are_stored_by_default_and_rethresholding_needs_no_model(tmp_path, models):
    from retriever.batch_filter.rethreshold import rethreshold, write_rethresholded

    write_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    thr = {"fc": 0.5, "prose": 0.6}
    rep = BatchFilter(FilterConfig(tasks=TASKS, models=models, threshold=thr, batch_size=7)).run(
        [str(tmp_path / "corpus")], out, workers=1
    )
    scores = pa.concat_tables(
        [pq.read_table(f) for f in sorted((out / "scores").glob("*.parquet"))]
    )
    assert scores.schema.field("prob_fc").type == pa.float16()  # 2 bytes a probability
    # at the run's own thresholds the stored values give its decisions back, exactly
    same = rethreshold(out, thr)
    assert {t: d["kept"] for t, d in same["tasks"].items()} == rep.totals["kept"]
    assert {t: d["chars_kept"] for t, d in same["tasks"].items()} == rep.totals["chars_kept"]
    again = write_rethresholded(out, tmp_path / "again", thr)
    assert again["kept"] == rep.totals["kept"]
    for t in TASKS:
        assert set(read_pool(tmp_path / "again" / t)) == set(read_pool(out / t))
    # a new threshold: the same pools as filtering again, but for documents within float16's
    # step of it (whose stored value may round across)
    new = {"fc": 0.7, "prose": 0.3}
    write_rethresholded(out, tmp_path / "new", new)
    ref = tmp_path / "ref"
    BatchFilter(FilterConfig(tasks=TASKS, models=models, threshold=new)).run(
        [str(tmp_path / "corpus")], ref, workers=1
    )
    ids = scores.column("id").to_pylist()
    for t in TASKS:
        p = scores.column(f"prob_{t}").to_numpy().astype(np.float32)
        near = {i for i, v in zip(ids, p, strict=True) if abs(v - new[t]) < 1e-3}
        got, want = set(read_pool(tmp_path / "new" / t)), set(read_pool(ref / t))
        assert got - near == want - near and len(want) > 0
    top = rethreshold(out, top_fraction=0.25)
    for d in top["tasks"].values():
        assert d["kept"] >= 0.25 * d["docs"] and d["kept"] <= 0.25 * d["docs"] + 3  # ties
    with pytest.raises(ConfigError, match="one of them"):
        rethreshold(out, 0.5, 0.2)


def test_float16_storage_keeps_every_decision():
    from retriever.thresholds import to_float16_keeping

    rng = np.random.default_rng(0)
    p = rng.random((50_000, 3)).astype(np.float32)
    thr = np.array([0.5, 0.6, 0.9], dtype=np.float32)
    p[:10] = thr + np.float32(1e-6)  # just above: float16 rounds these below the threshold
    p[10:20] = thr - np.float32(1e-6)  # just below: float16 rounds these onto it
    p[20, 0] = np.nan
    h = to_float16_keeping(p, thr)
    ok = ~np.isnan(p)
    assert h.dtype == np.float16 and np.isnan(h[20, 0])
    assert ((h.astype(np.float32) >= thr) == (p >= thr))[ok].all()
    assert np.nanmax(np.abs(h.astype(np.float32) - p)) < 1e-3
