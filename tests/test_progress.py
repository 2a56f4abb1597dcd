"""The one progress helper: when bars show, what they say, and that chunked embedding matches one
call."""

import numpy as np
import pytest
from conftest import MATH_GOLD, TOOLS_GOLD, WEB_TEXT

from retriever import progress
from retriever.progress import encode_with_progress, progress_bar, progress_enabled


@pytest.fixture(autouse=True)
def not_quiet():
    progress.set_quiet(False)
    yield
    progress.set_quiet(False)


def test_bars_follow_the_terminal_unless_forced_and_quiet_wins(capsys):
    assert progress_enabled(None) is False  # pytest's stderr is not a terminal
    assert progress_enabled(True) is True and progress_enabled(False) is False
    with progress_bar(total=4, desc="embed tools gold", progress=True, mininterval=0) as bar:
        bar.update(4)
    err = capsys.readouterr().err
    assert "embed tools gold" in err and "4/4" in err and "doc/s" in err
    progress.set_quiet(True)
    assert progress_enabled(True) is False
    with progress_bar(total=4, desc="nothing", progress=True) as bar:
        bar.update(4)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_chunked_embedding_with_a_bar_equals_one_call(embedder, capsys):
    texts = TOOLS_GOLD + MATH_GOLD + WEB_TEXT  # 18 texts in chunks of 5 and 17
    ref = embedder.encode(texts)
    for chunk in (5, 17):
        got = encode_with_progress(embedder, texts, desc="embed", progress=True, chunk=chunk)
        # bf16 inference (OpenVINO on AMX CPUs) rounds differently with the batch's padded
        # length, so chunks match one call to bf16 precision, not bit for bit
        assert got.shape == ref.shape and np.allclose(got, ref, atol=3e-3)
        assert float((got * ref).sum(axis=1).min()) > 0.9995  # every row is its own text
    assert "18/18" in capsys.readouterr().err
    assert encode_with_progress(embedder, texts, progress=False).shape == ref.shape
