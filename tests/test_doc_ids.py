"""One id rule for corpus records without an id field (``<shard name>:<row>``), whichever stage
reads them: the corpus reader (score, filter), a filter pool, a general pool of links to the
corpus (build-dataset, mix run, the random arm)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_filter import (
    models,  # noqa: F401 - the module's two tiny fastText students
    read_pool,
)

from retriever.arms.datasets import _link_corpus
from retriever.batch_filter import BatchFilter, FilterConfig
from retriever.corpus import CorpusReader, list_shards
from retriever.data import Doc
from retriever.dataset import DatasetBuilder
from retriever.dataset.pools import list_pool_files, read_pool_shard

TOOL = "call get_weather with json arguments {} and return the tool result"
PROSE = "the river flooded the valley in spring and the farmers rebuilt the walls {}"


def _corpus(root: Path) -> Path:
    """Id-less records (plus one with an id) in a shard at the top and one in a subfolder."""
    corpus = root / "corpus"
    (corpus / "sub").mkdir(parents=True)
    lines = [json.dumps({"text": (TOOL if i % 2 else PROSE).format(i)}) for i in range(12)]
    lines.insert(3, json.dumps({"id": "has-id", "text": TOOL.format("x")}))
    (corpus / "a.jsonl").write_text("\n".join(lines) + "\n")
    (corpus / "sub" / "b.jsonl").write_text(
        "".join(json.dumps({"text": PROSE.format(f"b{i}")}) + "\n" for i in range(5))
    )
    return corpus


def _reader_ids(corpus: Path) -> dict[str, str]:
    """id -> text, as the score and filter stages read the corpus."""
    return {
        d.id: d.text
        for s in list_shards([str(corpus)])
        for d in CorpusReader().read(s)
        if isinstance(d, Doc)
    }


def test_general_pool_of_links_gives_the_corpus_reader_ids(tmp_path):
    corpus = _corpus(tmp_path)
    want = _reader_ids(corpus)
    assert "corpus__a:0" in want and "sub__b:4" in want and "has-id" in want
    pool = _link_corpus((str(corpus),), tmp_path / "mix" / "_pools" / "general")
    got = {
        d.id: d.text
        for f in list_pool_files(pool)
        for d in read_pool_shard(f)
        if isinstance(d, Doc)
    }
    assert got == want  # was general__00000_corpus__a:0, ...


def test_ids_agree_across_filter_and_build_dataset(tmp_path, models):  # noqa: F811
    corpus = _corpus(tmp_path)
    want = _reader_ids(corpus)
    cfg = FilterConfig(tasks=("fc",), models={"fc": models["fc"]}, threshold={"fc": 0.0})
    BatchFilter(cfg).run([str(corpus)], tmp_path / "filtered", workers=1)
    kept = read_pool(tmp_path / "filtered" / "fc")
    assert set(kept) == set(want)  # threshold 0: every document, under the reader's id
    general = _link_corpus((str(corpus),), tmp_path / "_pools" / "general")
    pools = {"fc": str(tmp_path / "filtered" / "fc"), "general": str(general)}
    s = DatasetBuilder(pools, {"fc": 0.5, "general": 0.5}, 10_000).build(tmp_path / "ds")
    out = pq.read_table(tmp_path / "ds" / "parquet").to_pylist()
    ids = [r["id"] for r in out]
    assert set(ids) <= set(want) and len(ids) == len(set(ids))
    assert all(r["text"] == want[r["id"]] for r in out)
    # the same document in both pools is one id: dedup by id, not only by text
    assert s["docs"] == len(want)


@pytest.mark.slow
def test_score_ids_are_the_general_pool_ids(tmp_path, tiny_indexes):
    from retriever.score import read_scores, score_corpus

    corpus = _corpus(tmp_path)
    score_corpus([str(tiny_indexes["tools"])], [str(corpus)], tmp_path / "scores", store=None)
    scored = set(read_scores(tmp_path / "scores").column("id").to_pylist())
    pool = _link_corpus((str(corpus),), tmp_path / "_pools" / "general")
    pooled = {d.id for f in list_pool_files(pool) for d in read_pool_shard(f) if isinstance(d, Doc)}
    assert scored == pooled == set(_reader_ids(corpus))
