"""Scoring through datatrove: our step inside a datatrove pipeline, and score_corpus on the
executor."""

import gzip
import json

import numpy as np
import pytest
from conftest import MATH_GOLD, TOOLS_GOLD, WEB_TEXT, write_jsonl

from retriever.score import read_scores, score_corpus


@pytest.mark.slow
def test_datatrove_pipeline_with_our_step_scores_every_document(tiny_indexes, tmp_path):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from retriever.score.datatrove_step import DatatroveSimilarityScorer

    texts = WEB_TEXT[:3] + [TOOLS_GOLD[1].replace("Bob", "Eve")]
    write_jsonl(
        tmp_path / "in" / "a.jsonl", [{"text": t, "id": str(i)} for i, t in enumerate(texts)]
    )
    LocalPipelineExecutor(
        [
            JsonlReader(str(tmp_path / "in")),
            DatatroveSimilarityScorer([str(p) for p in tiny_indexes.values()], batch_size=3),
            JsonlWriter(str(tmp_path / "out")),
        ],
        tasks=1,
        workers=1,
        logging_dir=str(tmp_path / "logs"),
    ).run()
    out = [
        json.loads(x) for f in sorted((tmp_path / "out").glob("*.jsonl.gz")) for x in gzip.open(f)
    ]
    assert len(out) == len(texts)
    by_id = {d["id"]: d["metadata"] for d in out}
    assert by_id["3"]["score_tools"] > max(by_id[str(i)]["score_tools"] for i in range(3))
    assert all(-1 <= m["topk_math"] <= m["score_math"] + 1e-6 for m in by_id.values())


@pytest.mark.slow
def test_score_corpus_on_datatrove_local_executor_equals_inline(tiny_indexes, tmp_path):
    for s in range(3):
        write_jsonl(
            tmp_path / "corpus" / f"s{s}.jsonl", [{"text": t} for t in (WEB_TEXT + MATH_GOLD)[s::3]]
        )
    (tmp_path / "corpus" / "bad.jsonl.gz").write_bytes(b"not gzip at all")  # unreadable shard
    idx = [str(p) for p in tiny_indexes.values()]
    dt = score_corpus(
        idx, [str(tmp_path / "corpus")], tmp_path / "dt", executor="local", workers=2, store=None
    )
    inline = score_corpus(idx, [str(tmp_path / "corpus")], tmp_path / "inline", store=None)
    assert dt["scored"] == inline["scored"] == len(WEB_TEXT + MATH_GOLD)
    assert dt["shards"]["failed"] == inline["shards"]["failed"] and len(dt["shards"]["failed"]) == 1
    a, b = (
        read_scores(tmp_path / "dt").sort_by("id"),
        read_scores(tmp_path / "inline").sort_by("id"),
    )
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    np.testing.assert_allclose(
        a.column("score_math").to_numpy(), b.column("score_math").to_numpy(), atol=1e-5
    )
