"""The stage contract the code runs: BatchStep batches, counts and times; a subclass implements
one batch method."""

import numpy as np
import pytest

from retriever.data import Doc
from retriever.step import BatchStep, batched


class Recorded(BatchStep):
    """A step that records the size of each batch its batch method gets (``calls``)."""

    def __init__(self, step_batch_size):
        super().__init__(step_batch_size)
        self.calls = []


class KeepEven(Recorded):
    """Marks each document's length; passes on the even-numbered ones, counts the others."""

    name = "keep-even"

    def process_batch(self, docs):
        self.calls.append(len(docs))
        out = []
        for d in docs:
            d.metadata["len/x"] = len(d.text)
            if int(d.id) % 2 == 0:
                out.append(d)
            else:
                self.stats.inc("dropped/odd")
        return out


@pytest.mark.parametrize("size", [1, 5, 17, 100])
def test_batch_step_equals_a_plain_loop_at_awkward_batch_sizes(size):
    docs = [Doc(str(i), "x" * i) for i in range(37)]
    step = KeepEven(size)
    out = list(step.run(iter(docs)))
    assert [d.id for d in out] == [str(i) for i in range(0, 37, 2)]  # stream order kept
    assert all(d.metadata["len/x"] == int(d.id) for d in out)
    assert step.calls == [len(b) for b in batched(docs, size)] and max(step.calls) <= size
    c = step.stats.counts
    assert (c["seen"], c["kept"], c["dropped/odd"]) == (37, 19, 18) and step.stats.balanced()
    assert step.stats.seconds >= 0


def test_a_step_without_its_batch_method_says_so():
    with pytest.raises(NotImplementedError, match="process_batch"):
        list(BatchStep(4).run(iter([Doc("a", "b")])))


class Lengths(Recorded):
    """A scorer: one array of text lengths per batch; ``split`` cuts a batch into pieces of 3;
    ``annotate`` writes ``len_x`` and rejects the empty texts."""

    name = "lengths"

    def score_batch(self, docs):
        self.calls.append(len(docs))
        return np.array([len(d.text) for d in docs])  # [n]

    def split(self, docs, scores):
        for i in range(0, len(docs), 3):
            yield docs[i : i + 3], scores[i : i + 3]

    def annotate(self, docs, scores):
        out = []
        for d, n in zip(docs, scores.tolist(), strict=True):
            if n == 0:
                self.reject(d, "empty")
                continue
            d.metadata["len_x"] = n
            out.append(d)
        return out


@pytest.mark.parametrize("size", [1, 5, 17, 100])
def test_scored_yields_every_document_with_its_scores_cut_by_split(size):
    docs = [Doc(str(i), "x" * (i % 4)) for i in range(37)]
    step = Lengths(size)
    pieces = list(step.scored(iter(docs)))
    assert [d.id for b, _ in pieces for d in b] == [d.id for d in docs]  # stream order, none left
    assert all(s.tolist() == [len(d.text) for d in b] for b, s in pieces)
    assert all(len(b) <= 3 for b, _ in pieces)  # the split hook
    assert step.calls == [len(b) for b in batched(docs, size)]  # one score call a step batch
    c = step.stats.counts
    assert (c["seen"], c["kept"]) == (37, 37) and step.stats.balanced()
    assert not any(d.metadata for d in docs)  # scoring writes no metadata


@pytest.mark.parametrize("size", [1, 5, 17])
def test_run_of_a_scorer_is_annotate_of_score_batch(size):
    docs = [Doc(str(i), "x" * (i % 4)) for i in range(37)]
    step = Lengths(size)
    out = list(step.run(iter(docs)))
    assert [d.id for d in out] == [d.id for d in docs if d.text]
    assert all(d.metadata["len_x"] == len(d.text) for d in out)
    c = step.stats.counts
    assert (c["seen"], c["kept"], c["rejected/empty"]) == (37, 27, 10) and step.stats.balanced()
    assert step.calls == [len(b) for b in batched(docs, size)]


class NonEmpty(Lengths):
    """A scorer whose ``split`` leaves out the documents its scores say are unusable (empty)."""

    def split(self, docs, scores):
        for d in (d for d, n in zip(docs, scores.tolist(), strict=True) if n == 0):
            self.reject(d, "empty")
        ok = scores > 0
        yield [d for d, k in zip(docs, ok.tolist(), strict=True) if k], scores[ok]


@pytest.mark.parametrize("size", [1, 5, 17])
def test_scored_counts_what_split_yields_as_kept_and_what_it_rejects(size):
    docs = [Doc(str(i), "x" * (i % 4)) for i in range(37)]
    step = NonEmpty(size)
    gone = []
    step.exclusion = lambda d, reason: gone.append((d.id, reason))
    pieces = list(step.scored(iter(docs)))
    assert [d.id for b, _ in pieces for d in b] == [d.id for d in docs if d.text]
    assert all(s.tolist() == [len(d.text) for d in b] for b, s in pieces)
    assert gone == [(d.id, "empty") for d in docs if not d.text]
    c = step.stats.counts
    assert (c["seen"], c["kept"], c["rejected/empty"]) == (37, 27, 10) and step.stats.balanced()


def test_a_scorer_without_score_batch_says_so():
    with pytest.raises(NotImplementedError, match="score_batch"):
        list(BatchStep(4).scored(iter([Doc("a", "b")])))
