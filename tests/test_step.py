"""The stage contract the code runs: BatchStep batches, counts and times; a subclass implements
one batch method."""

import pytest

from retriever.data import Doc
from retriever.step import BatchStep, batched


class KeepEven(BatchStep):
    """Marks each document's length; passes on the even-numbered ones, counts the others."""

    name = "keep-even"

    def __init__(self, step_batch_size):
        super().__init__(step_batch_size)
        self.calls = []

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
