"""Scale pieces on tiny data: hash sampling, Hub listing, corpus size, confirm cap, reader
options."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_jsonl

from retriever.corpus.sharding import get_shard, list_hub_shards, list_shards, shard_name
from retriever.errors import ConfigError, InputError
from retriever.score.job import DocSampler, SampleSpec, parse_sample, resolve_sample


def _parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# -- sampling --------------------------------------------------------------------------------------
def test_sample_is_seeded_uniform_and_nested():
    ids = [f"doc-{i}" for i in range(20_000)]
    s10 = DocSampler(0.10, seed=3)
    kept = [i for i in ids if s10.keep(i)]
    assert 0.09 < len(kept) / len(ids) < 0.11
    assert kept == [i for i in ids if DocSampler(0.10, seed=3).keep(i)]  # a rerun picks the same
    other = {i for i in ids if DocSampler(0.10, seed=4).keep(i)}
    assert len(other & set(kept)) < 0.2 * len(kept)  # another seed, another sample
    s20 = {i for i in ids if DocSampler(0.20, seed=3).keep(i)}
    assert set(kept) <= s20  # a larger fraction keeps a superset
    # decided per document: the order or company of the other ids does not matter
    assert [i for i in reversed(ids) if s10.keep(i)] == kept[::-1]
    assert all(DocSampler(1.0).keep(i) for i in ids[:100])


@pytest.mark.parametrize(
    "value,expect",
    [
        (0.01, SampleSpec(fraction=0.01)),
        ("1%", SampleSpec(fraction=0.01)),
        ("0.5", SampleSpec(fraction=0.5)),
        (2_000_000, SampleSpec(count=2_000_000)),
        ("2M", SampleSpec(count=2_000_000)),
        ("1.5k", SampleSpec(count=1500)),
        (None, None),
    ],
)
def test_parse_sample(value, expect):
    assert parse_sample(value) == expect


@pytest.mark.parametrize("value", [-1, 0, 1.5, "abc", True, "0%"])
def test_parse_sample_rejects_bad_values(value):
    with pytest.raises(ConfigError, match="sample"):
        parse_sample(value)


def test_count_becomes_fraction_of_corpus_size():
    s = resolve_sample(SampleSpec(count=250), n_docs=1000, basis="parquet metadata")
    assert s.fraction == 0.25 and "1,000" in s.basis and "parquet metadata" in s.basis
    assert resolve_sample(SampleSpec(count=5000), n_docs=1000).fraction == 1.0
    with pytest.raises(ConfigError, match="corpus size"):
        resolve_sample(SampleSpec(count=5))


# -- corpus size -----------------------------------------------------------------------------------
def test_corpus_size_from_parquet_metadata_and_jsonl_prefix(tmp_path):
    from retriever.corpus.size import corpus_size

    for c in range(3):
        _parquet(
            tmp_path / "p" / f"cluster_{c}" / "part.parquet",
            [{"text": f"t{c} {i}"} for i in range(10 + c)],
        )
    size = corpus_size(list_shards([str(tmp_path / "p")]))
    assert size.docs == 33 and size.exact and size.shards == 3 and "parquet metadata" in size.method

    write_jsonl(tmp_path / "j" / "a.jsonl", [{"text": "x" * 50} for _ in range(1000)])
    est = corpus_size([str(tmp_path / "j" / "a.jsonl")], prefix_lines=50)
    assert not est.exact and abs(est.docs - 1000) <= 5  # same-size lines: the estimate is close
    assert corpus_size([str(tmp_path / "j" / "a.jsonl")], prefix_lines=5000).docs == 1000


# -- Hub datasets as many shards -------------------------------------------------------------------
def _hub_layout(root):
    """A Hub-like tree ``datasets/org/climb/cluster_N/*.parquet`` on the local disk."""
    base = root / "datasets" / "org" / "climb"
    for c in (1, 2, 10):
        for k in range(2):
            _parquet(
                base / f"cluster_{c}" / f"cluster_{c}_{k:03d}.parquet", [{"text": f"c{c} k{k}"}]
            )
    (base / "README.md").write_text("card")
    _parquet(base / ".cache" / "x.parquet", [{"text": "hidden"}])
    return base


def test_hub_dataset_lists_one_shard_per_parquet_file_like_a_local_folder(tmp_path):
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    base = _hub_layout(tmp_path)
    fs = DirFileSystem(path=str(tmp_path), fs=LocalFileSystem())
    hub = list_hub_shards("hf://org/climb", fs=fs)
    local = list_shards([str(base)])
    assert len(hub) == 6 and all(s.startswith("hf://datasets/org/climb/cluster_") for s in hub)
    assert hub == sorted(hub) and ".cache" not in "".join(hub)
    # the same layout gives the same shard names and the same rank -> shard split as the local copy
    assert [shard_name(s) for s in hub] == [shard_name(s) for s in local]
    for rank in range(3):
        assert [shard_name(s) for s in get_shard(hub, rank, 3)] == [
            shard_name(s) for s in get_shard(local, rank, 3)
        ]
    sub = list_hub_shards("hf://org/climb/cluster_2", fs=fs)
    assert [shard_name(s) for s in sub] == ["cluster_2__cluster_2_000", "cluster_2__cluster_2_001"]
    assert list_hub_shards("hf://org/climb@train", fs=fs) == ["hf://org/climb@train"]  # streamed
    with pytest.raises(InputError, match="no shard file"):
        list_hub_shards("hf://org/climb/cluster_99", fs=fs)


def test_hub_listing_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="cannot list Hub dataset .*Offline"):
        list_shards(["hf://nvidia/Nemotron-ClimbLab-does-not-exist"])


# -- bounded confirmation --------------------------------------------------------------------------
def test_max_candidates_caps_each_task_at_its_top_by_similarity():
    from retriever.confirm.docs import CandidateRule, DocSet

    rng = np.random.default_rng(0)
    n = 500
    sim = {"a": rng.random(n), "b": rng.random(n)}
    docs = DocSet(
        ["x"], "scores", [f"d{i}" for i in range(n)], ["s"] * n, list(range(n)), sim, [], ["a", "b"]
    )
    out = docs.select(
        ["a", "b"], CandidateRule(top_fraction=0.5, max_candidates=40, negatives_per_positive=1.0)
    )
    for t in ("a", "b"):
        c = out[t].candidate
        assert c.sum() == 40 and out[t].random_negative.sum() == 40
        assert sim[t][c].min() >= sim[t][~c].max()  # exactly the top 40
        assert not (c & out[t].random_negative).any() and "capped" in out[t].rule
    assert len(docs.wanted_ids()) <= 80  # BPB on at most tasks x max_candidates documents
    # under the cap, the rule is untouched
    few = docs.select(["a"], CandidateRule(top_fraction=0.02, max_candidates=40))
    assert few["a"].candidate.sum() == 10
    with pytest.raises(ConfigError, match="max_candidates"):
        CandidateRule(max_candidates=0)


# -- the run's reader options reach every stage that reads the corpus ------------------------------
def test_reader_options_reach_every_stage(tmp_path, monkeypatch):
    from retriever.run.config import load_run_config
    from retriever.run.job import RunJob

    write_jsonl(tmp_path / "gold.jsonl", [{"text": "q"}])
    write_jsonl(tmp_path / "corpus" / "a.jsonl", [{"body": "x", "key": "1"}])
    cfg_path = tmp_path / "run.toml"
    cfg_path.write_text("""
[run]
out = "./out"
[tasks.math]
gold = ["./gold.jsonl"]
[corpus]
paths = ["./corpus"]
text_field = "body"
id_field = "key"
tokens_field = "ids"
detokenizer = "./tok"
[score]
sample = "50%"
[confirm]
max_candidates = 7
[filter]
threshold = 0.5
""")
    cfg = load_run_config(cfg_path)
    job = RunJob(cfg, progress=False)
    seen = {}

    import retriever.batch_filter as bf
    import retriever.score as score

    def fake_score_corpus(index_dirs, corpus, out, **kw):
        seen["score"] = kw
        return {
            "shards": {"failed": []},
            "docs_in": 0,
            "scored": 0,
            "rejected": 0,
            "docs_per_second": 0,
            "sample": None,
        }

    class FakeFilter:
        def __init__(self, fc):
            seen["filter"] = fc

        def run(self, *a, **k):
            class R:
                class run:  # noqa: N801
                    failed = []

                totals = {}

            return R()

    monkeypatch.setattr(score, "score_corpus", fake_score_corpus)
    monkeypatch.setattr(bf, "BatchFilter", FakeFilter)
    job._score()
    job._filter()
    rd = job.corpus_reader()
    want = {
        "text_field": "body",
        "id_field": "key",
        "tokens_field": "ids",
        "detokenizer": str(tmp_path / "tok"),
    }
    for k, v in want.items():
        assert getattr(seen["score"]["reader"], k) == v, k
        assert getattr(seen["filter"].reader, k) == v, k
        assert (getattr(rd, k) if k != "detokenizer" else rd.detokenizer.name) == v, k
    assert seen["score"]["sample"] == "50%"
    steps = {s.name: s for s in job.steps()}
    assert steps["confirm"].settings["max_candidates"] == 7
    assert steps["filter"].settings["reader"]["detokenizer"] == want["detokenizer"]
    # the stage objects are built from the same section: a bad sample fails at load time
    cfg_path.write_text(cfg_path.read_text().replace('sample = "50%"', 'sample = "lots"'))
    with pytest.raises(ConfigError, match=r"\[score\].*sample"):
        load_run_config(cfg_path)


# -- sampled scoring, for real ---------------------------------------------------------------------
@pytest.mark.slow
def test_sampled_scoring_embeds_only_the_sampled_documents(tiny_indexes, tmp_path):
    from conftest import WEB_TEXT

    from retriever.score import read_scores, score_corpus

    for c in range(4):
        _parquet(
            tmp_path / "c" / f"cluster_{c}" / "p.parquet",
            [{"text": f"{WEB_TEXT[i % 6]} shard {c} doc {i}"} for i in range(60)],
        )
    idx = [str(tiny_indexes["math"])]
    s = score_corpus(
        idx, [str(tmp_path / "c")], tmp_path / "out", store=None, sample=60, seed=1, batch_size=7
    )
    sampler = DocSampler(s["sample"]["fraction"], seed=1)
    assert s["sample"]["fraction"] == 0.25 and "parquet metadata" in s["sample"]["basis"]
    want = {
        f"cluster_{c}__p:{i}"
        for c in range(4)
        for i in range(60)
        if sampler.keep(f"cluster_{c}__p:{i}")
    }
    got = set(read_scores(tmp_path / "out").column("id").to_pylist())
    assert got == want and s["scored"] == len(want) and 30 < len(want) < 90
    assert s["docs_in"] == 240 and s["sample"]["unsampled"] == 240 - len(want) and s["balanced"]
    # a rerun with the same count resumes into the same folder; another fraction is refused
    again = score_corpus(
        idx, [str(tmp_path / "c")], tmp_path / "out", store=None, sample=60, seed=1
    )
    assert again["scored"] == s["scored"]
    from retriever.errors import ResumeError

    with pytest.raises(ResumeError, match="sample"):
        score_corpus(idx, [str(tmp_path / "c")], tmp_path / "out", store=None, sample=0.5, seed=1)


def test_sampled_parquet_rows_are_skipped_before_parsing_and_match_the_reader(tmp_path):
    from retriever.corpus import CorpusReader
    from retriever.score.job import ScoreJob, Unsampled

    p = _parquet(
        tmp_path / "c" / "cluster_1" / "a.parquet",
        [{"text": f"doc {i}", **({"id": f"x{i}"} if i % 3 else {"id": None})} for i in range(500)],
    )
    s = DocSampler(0.2, seed=7)
    job = ScoreJob([], [str(p)], str(tmp_path / "o"), sample=s)
    reader = CorpusReader(batch_size=64)
    got, skipped = [], 0
    for row, rec in job._records(reader, str(p), "cluster_1__a"):
        if isinstance(rec, Unsampled):
            skipped += rec.n
        else:
            got.append((row, rec))
    ref = [
        (row, rec)
        for row, rec in reader.iter_records(str(p))
        if s.keep(f"cluster_1__a:{row}" if rec["id"] is None else rec["id"])
    ]
    assert got == ref and skipped == 500 - len(ref) and 60 < len(ref) < 140
