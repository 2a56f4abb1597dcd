import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import MATH_GOLD, REPO, TOOLS_GOLD, WEB_TEXT, write_jsonl

from retriever.corpus import ReaderConfig
from retriever.errors import InputError, ResumeError
from retriever.score import (
    ScoreHistogram,
    iter_scored_docs,
    read_scores,
    score_corpus,
    score_embeddings,
    topk_scores,
)
from retriever.score.select import choose_thresholds


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("block", [5, 17, 4096])
def test_score_embeddings_equals_brute_force(block):
    rng = np.random.default_rng(0)
    xq, xb = _unit(rng, 53, 8), _unit(rng, 11, 8)
    smax, smean = score_embeddings(xq, xb, k=4, block=block)
    S = np.sort(xq @ xb.T, axis=1)[:, ::-1]
    np.testing.assert_allclose(smax, S[:, 0], atol=1e-6)
    np.testing.assert_allclose(smean, S[:, :4].mean(1), atol=1e-6)
    # k larger than the gold set: mean over all exemplars
    np.testing.assert_allclose(score_embeddings(xq, xb, k=50)[1], S.mean(1), atol=1e-6)
    with pytest.raises(ValueError):
        topk_scores(np.zeros((3, 0)))


@pytest.mark.slow
def test_faiss_path_equals_numpy_reference(tiny_indexes, embedder):
    from retriever.index import load_indexes
    from retriever.score import SimilarityScorer

    texts = WEB_TEXT + TOOLS_GOLD[:2]
    scorer = SimilarityScorer(
        load_indexes([str(p) for p in tiny_indexes.values()], embedder), embedder, k=3, batch_size=5
    )
    got = scorer.score_texts(texts)
    xb = embedder.encode(MATH_GOLD)
    ref_max, ref_mean = score_embeddings(got.vectors, xb, k=3)
    np.testing.assert_allclose(got.max["math"], ref_max, atol=1e-5)
    np.testing.assert_allclose(got.topk["math"], ref_mean, atol=1e-5)


def test_histogram_thresholds_track_exact_quantiles():
    rng = np.random.default_rng(1)
    x = np.clip(rng.normal(0.2, 0.15, size=50_000), -1, 1)
    h = ScoreHistogram()
    for part in np.array_split(x, 7):
        h.add(part)
    assert h.n == len(x)
    assert abs(h.quantile(0.9) - np.quantile(x, 0.9)) < 2e-4
    thr = h.threshold_for_top(0.05)
    assert abs((x >= thr).mean() - 0.05) < 0.001
    assert h.count_at_least(thr) == int((x >= thr).sum())
    chosen = choose_thresholds({"a": h, "b": h}, top_fraction=0.05, thresholds={"b": 0.5})
    assert chosen["b"]["threshold"] == 0.5 and chosen["b"]["candidates"] == int((x >= 0.5).sum())


def test_a_top_fraction_of_head_probabilities_is_cut_among_tiny_values():
    """A head's probabilities: most documents far below 1e-4 (one bin of equal-width bins)."""
    rng = np.random.default_rng(2)
    p = np.r_[10 ** rng.uniform(-14, -5, size=9_800), rng.uniform(0.5, 1, size=200)]
    h = ScoreHistogram()
    h.add(p.astype(np.float32))
    for frac in (0.05, 0.1, 0.3):
        thr = h.threshold_for_top(frac)
        assert abs((p >= thr).mean() - frac) < 0.002, (frac, thr)
        assert abs(h.count_at_least(thr) - int((p >= thr).sum())) <= 1


def test_shown_histogram_is_the_stage_histogram_in_at_most_60_bars():
    rng = np.random.default_rng(3)
    x = np.clip(rng.normal(0.3, 0.05, size=5_000), -1, 1)
    h = ScoreHistogram()
    h.add(x)
    counts, edges = h.display()
    assert len(counts) <= 60 and len(edges) == len(counts) + 1 and sum(counts) == len(x)
    assert edges[0] <= x.min() and x.max() < edges[-1]  # over the occupied range only
    assert edges[-1] - edges[0] < 0.5
    step = edges[1] - edges[0]
    assert np.allclose(np.diff(edges), step)
    ref, _ = np.histogram(x, bins=np.asarray(edges))
    assert abs(ref - np.asarray(counts)).sum() <= 2  # the same bars up to float edge rounding
    head = ScoreHistogram()  # tiny head probabilities fold into the bar holding 0
    head.add(np.r_[10 ** rng.uniform(-14, -5, size=900), rng.uniform(0.5, 1, size=100)])
    counts, edges = head.display()
    assert counts[0] == 900 and sum(counts) == 1000 and edges[0] == 0.0
    assert ScoreHistogram().display() == ([], [])


def _corpus(root: Path) -> dict[str, list[str]]:
    """Three shards in three formats, with bad records; returns the good texts per shard."""
    good = {
        "a": WEB_TEXT[:4] + [TOOLS_GOLD[0].replace("Ana", "Dora")],
        "b": [MATH_GOLD[0].replace("Tom", "Lea")] + WEB_TEXT[4:],
        "c": [
            "Question: 9 cats and 3 dogs, how many pets?\nAnswer: 9 + 3 = 12",
            WEB_TEXT[0] + " Again.",
        ],
    }
    root.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"text": t, "id": f"a{i}"}) for i, t in enumerate(good["a"])] + [
        "{oops",
        json.dumps({"title": "no text"}),
    ]
    (root / "a.jsonl").write_text("\n".join(lines) + "\n")
    (root / "b.jsonl.gz").write_bytes(
        gzip.compress(
            (
                "\n".join(json.dumps({"text": t, "cluster_id": 7}) for t in good["b"]) + "\n\n"
            ).encode()
        )
    )
    pq.write_table(
        pa.table({"text": good["c"] + [""], "cluster_id": [1, 2, 3]}), root / "c.parquet"
    )
    return good


@pytest.mark.slow
def test_score_corpus_end_to_end(tiny_indexes, embedder, tmp_path):
    good = _corpus(tmp_path / "corpus")
    idx = [str(tiny_indexes["tools"]), str(tiny_indexes["math"])]
    s = score_corpus(
        idx, [str(tmp_path / "corpus")], tmp_path / "out", top_fraction=0.2, batch_size=3
    )
    n_good = sum(map(len, good.values()))
    assert (
        s["docs_in"] == n_good + 4
        and s["scored"] == n_good
        and s["rejected"] == 4
        and s["balanced"]
    )
    assert s["rejected_by_reason"] == {"bad_json": 1, "no_text": 1, "empty": 2}
    assert (tmp_path / "out/rejected/corpus__a.jsonl").read_text().count("\n") == 2
    t = read_scores(tmp_path / "out")
    assert t.num_rows == n_good and len(set(t.column("id").to_pylist())) == n_good
    assert {
        "score_tools",
        "topk_tools",
        "score_math",
        "topk_math",
        "n_chars",
        "shard",
        "cluster_id",
    } <= set(t.column_names)
    rows = {r["id"]: r for r in t.to_pylist()}
    assert rows["a4"]["score_tools"] > max(
        rows[f"a{i}"]["score_tools"] for i in range(4)
    )  # the tool call
    assert (
        rows["a0"]["id"] == "a0" and rows["corpus__b:0"]["cluster_id"] == "7"
    )  # ids: field, else shard:row
    # scores equal embedding the text directly
    v = embedder.encode([good["b"][0]])
    ref = score_embeddings(v, embedder.encode(MATH_GOLD), k=10)[0][0]
    assert abs(rows["corpus__b:0"]["score_math"] - ref) < 1e-4
    # candidates come back with text and scores; the math word problems lead the math task
    cands = list(iter_scored_docs(tmp_path / "out", task="math", candidates_only=True))
    assert cands and all(d.metadata["candidate_math"] for d in cands)
    assert any("Lea has 3 apples" in d.text for d in cands)
    assert s["tasks"]["math"]["candidates"] == len(cands)
    # the store holds every document once; a document's own text finds it first
    from retriever.query import query_corpus

    hits = query_corpus(tmp_path / "out", [good["a"][2]], k=3, embedder=embedder)[0]
    assert hits[0]["id"] == "a2" and hits[0]["score"] > 0.99
    from retriever.score import ingest_store
    from retriever.store import CorpusStore

    assert ingest_store(tmp_path / "out") == 0  # already ingested: nothing added
    assert CorpusStore(tmp_path / "out/store").count() == n_good
    # same folder, other settings: refused
    with pytest.raises(ResumeError, match="k"):
        score_corpus(idx, [str(tmp_path / "corpus")], tmp_path / "out", k=3)


def test_store_ann_index_once_large(tmp_path):
    from retriever.store import CorpusStore

    rng = np.random.default_rng(0)
    v = _unit(rng, 600, 16)
    t = pa.table(
        {
            "id": [str(i) for i in range(600)],
            "shard": ["s"] * 600,
            "row": list(range(600)),
            "preview": ["p"] * 600,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), 16),
        }
    )
    pq.write_table(t, tmp_path / "s.parquet")
    st = CorpusStore(tmp_path / "store", "m", 16)
    st.ingest_shard("s", tmp_path / "s.parquet")
    assert not st.ensure_ann_index(min_rows=1000) and not st.has_ann_index()
    assert st.ensure_ann_index(min_rows=500, num_partitions=2) and st.has_ann_index()
    top = st.search(v[42], k=5)
    exact = np.argsort(-(v @ v[42]))[:5]
    assert top[0]["id"] == "42" and len({h["id"] for h in top} & {str(i) for i in exact}) >= 3


@pytest.mark.slow
def test_token_shards_are_detokenized_with_a_local_tokenizer(tiny_indexes, embedder, tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        WEB_TEXT + MATH_GOLD,
        trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(tmp_path / "tok")
    text = MATH_GOLD[1]
    ids = tok.encode(text).ids
    (tmp_path / "c").mkdir()
    pq.write_table(
        pa.table({"tokens": [ids, [1, -5]], "token_count": [len(ids), 2]}), tmp_path / "c/t.parquet"
    )
    s = score_corpus(
        [str(tiny_indexes["math"])],
        [str(tmp_path / "c")],
        tmp_path / "out",
        reader=ReaderConfig(detokenizer=str(tmp_path / "tok")),
        store=None,
    )
    assert s["scored"] == 1 and s["rejected_by_reason"] == {"bad_tokens": 1}
    assert (
        read_scores(tmp_path / "out").column("score_math")[0].as_py() > 0.99
    )  # the same text as a gold record
    with pytest.raises(InputError, match="detokenizer"):
        score_corpus(
            [str(tiny_indexes["math"])], [str(tmp_path / "c")], tmp_path / "out2", store=None
        )


@pytest.mark.slow
def test_hub_corpus_offline_is_a_clear_error(tiny_indexes, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="Hub dataset"):
        score_corpus(
            [str(tiny_indexes["math"])], ["hf://nvidia/ClimbLab"], tmp_path / "out", store=None
        )


_KILLABLE = """
import sys
from retriever.score import score_corpus
score_corpus(sys.argv[1].split(","), [sys.argv[2]], sys.argv[3], batch_size=2, store=None)
"""


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates_or_gaps(tiny_indexes, embedder, tmp_path):
    texts = WEB_TEXT + TOOLS_GOLD + MATH_GOLD
    n_docs = 0
    for s in range(8):
        recs = [{"text": f"{t} (shard {s})"} for t in texts[s::4][:4]]
        write_jsonl(tmp_path / "corpus" / f"s{s}.jsonl", recs)
        n_docs += len(recs)
    idx = ",".join(str(p) for p in tiny_indexes.values())
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, idx, str(tmp_path / "corpus"), str(out)], env=env
    )
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "done").glob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(list((out / "done").glob("*.json")))
    assert 2 <= n_done < 8, "the run should have been killed part-way"
    s = score_corpus(idx.split(","), [str(tmp_path / "corpus")], out, batch_size=2, store=None)
    ref = score_corpus(
        idx.split(","), [str(tmp_path / "corpus")], tmp_path / "clean", batch_size=2, store=None
    )
    assert s["scored"] == ref["scored"] == n_docs and s["balanced"]
    a, b = read_scores(out).sort_by("id"), read_scores(tmp_path / "clean").sort_by("id")
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    np.testing.assert_allclose(
        a.column("score_tools").to_numpy(), b.column("score_tools").to_numpy(), atol=1e-5
    )
    assert not list(out.glob("scores/*.tmp"))  # the killed shard's partial file was replaced


@pytest.mark.slow
def test_long_documents_are_truncated_at_the_model_max_length(tiny_indexes, embedder):
    """The policy: only the first max_seq_length word pieces count (after clipping the
    characters)."""
    from retriever.index import load_indexes
    from retriever.score import SimilarityScorer

    head = " ".join(MATH_GOLD * 10)  # far beyond 256 word pieces
    assert len(embedder._model.tokenizer(head)["input_ids"]) > 2 * embedder.max_seq_length
    scorer = SimilarityScorer(load_indexes([str(tiny_indexes["math"])], embedder), embedder)
    assert scorer.clip_chars == 12 * embedder.max_seq_length
    sc = scorer.score_texts(
        [head, head + " The hotel pool is heated." * 200, head[: scorer.clip_chars]]
    )
    v = sc.vectors
    assert float(v[0] @ v[1]) > 0.9999 and float(v[0] @ v[2]) > 0.9999  # the tail changes nothing
    short = scorer.score_texts(["The hotel pool is heated. " + head])  # but the opening does
    assert float(short.vectors[0] @ v[0]) < 0.999
