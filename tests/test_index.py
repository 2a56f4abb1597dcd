import numpy as np
import pytest
from conftest import MATH_GOLD, TOOLS_GOLD, write_jsonl

from retriever.embed import SentenceEmbedder
from retriever.errors import InputError, ModelMismatchError
from retriever.index import GoldIndex, add_to_index, build_index
from retriever.query import query_gold


@pytest.mark.slow
def test_build_load_roundtrip_and_search_matches_brute_force(tiny_indexes, embedder):
    gi = GoldIndex.load(tiny_indexes["tools"], embedder)
    assert gi.ntotal == len(TOOLS_GOLD) and gi.texts == TOOLS_GOLD
    m = gi.manifest
    assert (
        m["model"] == "sentence-transformers/all-MiniLM-L6-v2"
        and m["dim"] == 384
        and m["factory"] == "Flat"
    )
    assert m["n_records"] == 6 and m["sources"][0]["fingerprint"]
    xq = embedder.encode(["send a text message to Bob", "what is 7 times 8"])
    D, I = gi.search(xq, 4)
    xb = embedder.encode(TOOLS_GOLD)
    S = xq @ xb.T
    np.testing.assert_array_equal(I, np.argsort(-S, axis=1)[:, :4])
    np.testing.assert_allclose(D, -np.sort(-S, axis=1)[:, :4], atol=1e-5)
    assert gi.search(xq, 100)[0].shape == (2, 6)  # k clipped to the index size


@pytest.mark.slow
def test_query_gold_finds_the_obvious_neighbour(tiny_indexes, embedder):
    hits = query_gold(
        tiny_indexes["math"], ["Tom has 3 apples and buys 5 more apples"], k=2, embedder=embedder
    )[0]
    assert (
        hits[0]["text"] == MATH_GOLD[0]
        and hits[0]["rank"] == 1
        and hits[0]["score"] > hits[1]["score"]
    )


@pytest.fixture(scope="module")
def other_embedder(tmp_path_factory):
    """A real, different sentence-transformers model: MiniLM + a Dense projection to 64 dims."""
    from sentence_transformers import SentenceTransformer, models

    from retriever.embed.embedder import resolve_model_path

    base = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    dense = models.Dense(384, 64)
    path = tmp_path_factory.mktemp("other_model") / "minilm-64"
    SentenceTransformer(modules=[*base, dense], device="cpu").save(str(path))
    return SentenceEmbedder(str(path), device="cpu")


@pytest.mark.slow
def test_other_model_or_dimension_is_a_clear_error(tiny_indexes, other_embedder, tmp_path):
    with pytest.raises(
        ModelMismatchError, match="built with 'sentence-transformers/all-MiniLM-L6-v2'"
    ):
        GoldIndex.load(tiny_indexes["tools"], other_embedder)
    gi = GoldIndex.load(tiny_indexes["tools"])
    with pytest.raises(ModelMismatchError, match="expects"):
        gi.search(other_embedder.encode(["x"]), 3)
    # an index built with the other model records it, and refuses the default model
    g = write_jsonl(tmp_path / "g.jsonl", [{"text": t} for t in TOOLS_GOLD[:3]])
    built = build_index("t64", gold=[str(g)], indexes_dir=tmp_path, embedder=other_embedder)
    assert built.dim == 64
    from retriever.embed import load_embedder

    with pytest.raises(ModelMismatchError):
        GoldIndex.load(tmp_path / "t64", load_embedder())


@pytest.mark.slow
def test_add_skips_duplicates_and_persists(tiny_indexes, embedder, tmp_path):
    import shutil

    shutil.copytree(tiny_indexes["math"], tmp_path / "math")
    added, stats = add_to_index(
        tmp_path / "math",
        texts=[MATH_GOLD[0], "Question: 2 + 2?\nAnswer: 4", " "],
        embedder=embedder,
    )
    assert added == 1
    assert stats.counts["dropped/duplicate"] == 1 and stats.counts["rejected/empty"] == 1
    gi = GoldIndex.load(tmp_path / "math", embedder)
    assert gi.ntotal == len(MATH_GOLD) + 1 and gi.texts[-1] == "Question: 2 + 2?\nAnswer: 4"
    assert query_gold(tmp_path / "math", ["2 + 2?"], k=1, embedder=embedder)[0][0]["text"].endswith(
        "4"
    )


def test_unfinished_or_missing_index_is_an_error(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(InputError, match="unfinished"):
        GoldIndex.load(tmp_path / "half")
    with pytest.raises(InputError, match="missing"):
        GoldIndex.load(tmp_path / "nothing")


@pytest.mark.slow
def test_factory_string_builds_a_trained_index(embedder, tmp_path):
    g = write_jsonl(tmp_path / "g.jsonl", [{"text": t} for t in TOOLS_GOLD + MATH_GOLD])
    gi = build_index(
        "ivf", gold=[str(g)], indexes_dir=tmp_path, factory="IVF2,Flat", embedder=embedder
    )
    assert gi.index.is_trained and gi.ntotal == 12
    gi2 = GoldIndex.load(tmp_path / "ivf", embedder)
    gi2.index.nprobe = 2  # all lists: exact
    D, _ = gi2.search(embedder.encode([MATH_GOLD[1]]), 1)
    assert D[0, 0] > 0.99
    with pytest.raises(InputError, match="factory"):
        build_index(
            "bad", gold=[str(g)], indexes_dir=tmp_path, factory="NotAnIndex", embedder=embedder
        )
