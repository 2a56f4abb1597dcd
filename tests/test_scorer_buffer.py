"""SimilarityScorer's sort buffer: larger embedding calls, same results, stream order kept."""

import numpy as np
import pytest
from conftest import MATH_GOLD, TOOLS_GOLD, WEB_TEXT

from retriever.data import Doc
from retriever.errors import InputError


@pytest.mark.slow
def test_sort_buffer_keeps_stream_order_and_batch_sizes(tiny_indexes, embedder):
    from retriever.index import load_indexes
    from retriever.score import SimilarityScorer

    # lengths deliberately unsorted: long, short, long ... so a sorting bug would show
    texts = [
        t * (1 + 5 * (i % 2)) for i, t in enumerate(WEB_TEXT + TOOLS_GOLD + MATH_GOLD[:5])
    ]  # 17
    indexes = load_indexes([str(p) for p in tiny_indexes.values()], embedder)
    scorer = SimilarityScorer(indexes, embedder, k=3, batch_size=5, sort_buffer=12)
    out = list(scorer.scored(Doc(str(i), t, {}) for i, t in enumerate(texts)))
    assert [len(b) for b, _ in out] == [5, 5, 2, 5]  # buffer of 12 split by 5, then the last 5
    assert [d.id for b, _ in out for d in b] == [str(i) for i in range(len(texts))]
    for batch, sc in out:  # each row equals its text scored alone (no padding, no neighbours)
        assert sc.vectors.shape == (len(batch), embedder.dim)
        for i, d in enumerate(batch):
            one = scorer.score_texts([d.text])
            np.testing.assert_allclose(sc.vectors[i], one.vectors[0], atol=2e-3)
            for task in indexes:
                assert abs(sc.max[task][i] - one.max[task][0]) < 1e-3
                assert abs(sc.topk[task][i] - one.topk[task][0]) < 1e-3
    # the math word problems still rank first for the math task, whatever the buffering
    allmax = np.concatenate([sc.max["math"] for _, sc in out])
    assert set(np.argsort(-allmax)[:3]) <= set(range(12, 17))
    with pytest.raises(InputError, match="sort_buffer"):
        SimilarityScorer(indexes, embedder, sort_buffer=0)
