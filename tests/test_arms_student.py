"""The ``student:<variant>`` arms: the run's students retrained on another label source, the
corpus refiltered with them, the dataset built as the pipeline arm builds it (real fastText)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from arms_proxies import dataset_texts
from conftest import MATH_GOLD, TOOLS_GOLD, WEB_TEXT, write_jsonl

from retriever.arms import ArmSources, EvaluateConfig, build_arm_dataset
from retriever.errors import ConfigError

TASK = "function-calling"


def _web(i: int) -> str:
    return f"{WEB_TEXT[i % len(WEB_TEXT)]} Story number {i} goes on about the town and its people."


def _math(i: int) -> str:
    return f"{MATH_GOLD[i % len(MATH_GOLD)]}\nExercise {i}: so the answer is {i * 7 % 13}."


def _tool(i: int) -> str:
    return f"{TOOLS_GOLD[i % len(TOOLS_GOLD)]}\nCall id {i}."


def _gold_index(path, texts: list[str]) -> None:
    """A real FAISS gold index of ``texts`` (synthetic unit vectors: no embedder needed)."""
    import faiss

    from retriever.index.gold_index import INDEX_FORMAT, GoldIndex

    rng = np.random.default_rng(0)
    xb = rng.normal(size=(len(texts), 8)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(8)
    index.add(xb)
    manifest = {"task": TASK, "model": "synthetic", "dim": 8, "format": INDEX_FORMAT}
    ids = [f"g{i}" for i in range(len(texts))]
    GoldIndex(TASK, index, ids, texts, ["gold"] * len(texts), manifest, use_gpu=False).save(path)


def _finished_run(tmp_path, multilabel: bool = False):
    """A run folder as `retriever run` leaves it: gold index, confirm labels (confirmed math pages
    as positives, random web pages as negatives), the run's own (gold-only) student and its
    pools."""
    from retriever.distill.labels import write_labels
    from retriever.run.config import load_run_config
    from retriever.run.job import RunJob

    corpus = [{"id": f"web-{i}", "text": _web(i)} for i in range(40)]
    corpus += [{"id": f"tool-{i}", "text": _tool(i)} for i in range(100, 112)]
    corpus += [{"id": f"math-{i}", "text": _math(i)} for i in range(200, 212)]
    write_jsonl(tmp_path / "corpus" / "a.jsonl", corpus[::2])
    write_jsonl(tmp_path / "corpus" / "b.jsonl", corpus[1::2])
    run = tmp_path / "run"
    _gold_index(run / "indexes" / TASK, [_tool(i) for i in range(12)])
    rows = [
        {"id": f"c{i}", "text": _math(i), "task": TASK, "label": "positive", "source": "confirmed"}
        for i in range(20)
    ]
    rows += [
        {"id": f"r{i}", "text": _web(i + 300), "task": TASK, "label": "negative"}
        | {"source": "random", "reason": "negative: random non-candidate"}
        for i in range(30)
    ]
    (run / "confirm" / "labels").mkdir(parents=True)
    write_labels(run / "confirm" / "labels" / f"{TASK}.parquet", rows)
    cfgp = tmp_path / "run.toml"
    cfgp.write_text(
        f'[run]\nout = "./run"\n[tasks.{TASK}]\ngold = ["./g.jsonl"]\n'
        '[corpus]\npaths = ["./corpus"]\n[dataset]\nbudget = "100k"\n'
        "[filter]\nthreshold = 0.5\nworkers = 1\n"
        + ("[distill]\nmultilabel = true\n" if multilabel else "")
    )
    cfg = load_run_config(cfgp)
    job = RunJob(cfg)
    # the run's own steps: its gold-only student(s), then its pools
    job._distill_multilabel() if multilabel else job._distill(TASK)
    job._filter()
    return cfg


@pytest.fixture
def finished_run(tmp_path):
    return _finished_run(tmp_path)


def _kept_texts(model_path, corpus_dir) -> set[str]:
    """The corpus texts a student keeps (p >= 0.5), scored here apart from the filter."""
    import fasttext

    from retriever.distill.train import predict_positive

    texts = [
        json.loads(line)["text"]
        for f in sorted(corpus_dir.glob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    manifest = json.loads(model_path.with_suffix(".json").read_text())
    p = predict_positive(
        fasttext.load_model(str(model_path)), texts, 0, manifest["text_normalization"]
    )
    return {t for t, x in zip(texts, p, strict=True) if x >= 0.5}


@pytest.mark.slow
def test_student_arm_retrains_on_its_variant_and_builds_like_the_pipeline(finished_run):
    from retriever.distill.trainset import VARIANTS

    cfg = finished_run
    src = ArmSources.from_run(cfg)
    out = cfg.out / "evaluate" / "datasets"
    arm = build_arm_dataset("student:gold+confirmed", src, 100_000, out)
    pipe = build_arm_dataset("pipeline", src, 100_000, out)
    work = out / "_pools" / "student-gold+confirmed"
    model = work / "filters" / TASK / "filter.bin"
    manifest = json.loads(model.with_suffix(".json").read_text())
    # the variant's sources, the run's other distill settings
    assert manifest["config"]["training_set"] == list(VARIANTS["gold+confirmed"])
    assert manifest["training_set"]["sources_used"] == list(VARIANTS["gold+confirmed"])
    assert manifest["training_set"]["per_source"]["confirmed"]["rows"] == 20
    assert manifest["training_set"]["per_source"]["gold"]["rows"] == 12
    run_manifest = json.loads((cfg.out / "filters" / TASK / "filter.json").read_text())
    assert run_manifest["config"]["training_set"] == list(VARIANTS["gold-only"])
    assert "confirmed" not in run_manifest["training_set"]["per_source"]
    # each arm holds exactly what its students keep of the corpus (the budget fits it all)
    arm_texts, pipe_texts = set(dataset_texts(arm.path)), set(dataset_texts(pipe.path))
    kept = _kept_texts(model, cfg.out.parent / "corpus")
    run_kept = _kept_texts(cfg.out / "filters" / TASK / "filter.bin", cfg.out.parent / "corpus")
    assert arm_texts == kept and pipe_texts == run_kept
    assert (arm.fingerprint == pipe.fingerprint) == (kept == run_kept)
    assert arm.path == out / "student-gold+confirmed" and arm.documents == len(kept)
    # the confirmed math pages taught the arm's student math; the run's gold-only one kept tools
    assert any("Exercise" in t for t in arm_texts)
    assert not any("Exercise" in t for t in pipe_texts)
    # resumable: the same settings reuse the students; other distill settings retrain them
    mtime = model.stat().st_mtime_ns
    again = build_arm_dataset("student:gold+confirmed", src, 100_000, out)
    assert model.stat().st_mtime_ns == mtime and again.fingerprint == arm.fingerprint
    import dataclasses

    other = dataclasses.replace(
        src.student, distill=dataclasses.replace(src.student.distill, epoch=16)
    )
    build_arm_dataset(
        "student:gold+confirmed", dataclasses.replace(src, student=other), 100_000, out
    )
    assert json.loads(model.with_suffix(".json").read_text())["config"]["epoch"] == 16
    assert json.loads((work / "student.json").read_text())["settings"]["distill"]["epoch"] == 16


def test_bad_student_variant_is_a_one_line_error_listing_the_variants(tmp_path):
    with pytest.raises(ConfigError) as e:
        EvaluateConfig(arms=("random", "student:gold+nothing"))
    msg = str(e.value)
    assert "\n" not in msg and "'gold+nothing'" in msg
    assert "student:gold-only" in msg and "student:gold+confirmed" in msg
    with pytest.raises(ConfigError, match="student:gold-only") as e:
        build_arm_dataset("student:nope", ArmSources(), 100, tmp_path)
    assert "\n" not in str(e.value)
    # a known variant without a run folder's sources: what to do, in one line
    with pytest.raises(ConfigError, match="finished run"):
        build_arm_dataset("student:gold+hard", ArmSources(), 100, tmp_path)
    assert EvaluateConfig(arms=("random", "student:gold+hard")).arms[1] == "student:gold+hard"


def test_two_arms_never_share_a_folder():
    # a dataset arm named like a student arm's folder would write into that arm's folder
    with pytest.raises(ConfigError, match="folder 'student-gold\\+hard' of arm") as e:
        EvaluateConfig(
            arms=("student:gold+hard", "student-gold+hard"),
            datasets={"student-gold+hard": "some/folder"},
        )
    assert "\n" not in str(e.value)
    for bad in ("_pools", "a/b"):  # the arms' shared work folder; a nested path
        with pytest.raises(ConfigError, match="rename it"):
            EvaluateConfig(arms=("random", bad), datasets={bad: "some/folder"})
    ok = EvaluateConfig(arms=("random", "mine"), datasets={"mine": "some/folder"})
    assert ok.arms == ("random", "mine")


def _pool_texts(pools) -> set[str]:
    import gzip

    return {
        json.loads(line)["text"]
        for f in sorted((pools / TASK).glob("*.jsonl.gz"))
        for line in gzip.open(f, "rt").read().splitlines()
    }


@pytest.mark.slow
def test_student_arm_of_a_multilabel_run_trains_one_multilabel_student(tmp_path):
    from retriever.distill.multilabel import KIND
    from retriever.distill.trainset import VARIANTS

    cfg = _finished_run(tmp_path, multilabel=True)
    out = cfg.out / "evaluate" / "datasets"
    arm = build_arm_dataset("student:gold+confirmed", ArmSources.from_run(cfg), 100_000, out)
    work = out / "_pools" / "student-gold+confirmed"
    assert not (work / "filters" / TASK).exists()  # no per-task student: the run's kind
    manifest = json.loads((work / "filters" / "multilabel" / "filter.json").read_text())
    assert manifest["kind"] == KIND and manifest["tasks"] == [TASK]
    assert manifest["config"]["training_set"] == "gold+confirmed"
    assert manifest["training_set"][TASK]["sources_used"] == list(VARIANTS["gold+confirmed"])
    pools = json.loads((work / "student.json").read_text())["models"]
    assert pools == {TASK: str(work / "filters" / "multilabel" / "filter.bin")}
    assert set(dataset_texts(arm.path)) == _pool_texts(work / "pools")
    assert any("Exercise" in t for t in dataset_texts(arm.path))
