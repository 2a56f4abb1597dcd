"""Embedding backends: the OpenVINO CPU path gives the torch vectors; torch is the fallback."""

import sys

import numpy as np
import pytest
from conftest import MATH_GOLD, TOOLS_GOLD, WEB_TEXT

from retriever.embed import SentenceEmbedder
from retriever.embed.openvino_encoder import OpenVINOEncoder, openvino_installed
from retriever.errors import InputError, MissingDependencyError

# lengths from 1 word to past the 256-token truncation, so batches carry padding and truncation
TEXTS = ["hi", *WEB_TEXT, *TOOLS_GOLD[:3], *MATH_GOLD[:3], " ".join(WEB_TEXT * 12)]
needs_openvino = pytest.mark.skipif(not openvino_installed(), reason="openvino not installed")


@pytest.fixture(scope="module")
def torch_embedder():
    import torch

    torch.set_num_threads(1)
    return SentenceEmbedder(backend="torch", batch_size=4)


@pytest.mark.slow
@needs_openvino
def test_default_backend_is_the_calibrated_one_and_matches_torch(embedder, torch_embedder):
    # auto: whichever of torch / OpenVINO this machine ran faster (retriever.embed.calibrate)
    choice = embedder.calibration["choice"]
    assert (
        embedder.backend == ("torch" if choice == "torch" else "openvino")
        and torch_embedder.backend == "torch"
    )
    ref = torch_embedder.encode(TEXTS)  # [n, 384] fp32 torch
    got = embedder.encode(TEXTS)
    assert got.shape == ref.shape == (len(TEXTS), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * ref).sum(1)
    assert cos.min() > 0.999, cos  # bf16 on CPUs that have it: ~0.9999
    # the nearest text is the same under both backends
    assert (np.argmax(got @ ref.T, axis=1) == np.arange(len(TEXTS))).all()
    assert embedder.encode([]).shape == (0, 384)


@needs_openvino
@pytest.mark.slow
def test_openvino_fp32_equals_torch_and_is_cached(torch_embedder, tmp_path, caplog):
    caplog.set_level("INFO", logger="retriever.embed.openvino_encoder")
    enc = OpenVINOEncoder(torch_embedder._model, threads=1, precision="f32", cache_dir=tmp_path)
    assert "converted" in caplog.text and len(list(tmp_path.glob("*/model.xml"))) == 1
    assert enc.precision == "f32" and enc.threads == 1
    ref = torch_embedder.encode(TEXTS)
    got = enc.encode(TEXTS, batch_size=3)  # awkward batch: padding differs from torch's batches
    np.testing.assert_allclose(got, ref, atol=1e-4)
    caplog.clear()
    again = OpenVINOEncoder(torch_embedder._model, threads=1, precision="f32", cache_dir=tmp_path)
    assert "converted" not in caplog.text  # read from the cache, not converted again
    np.testing.assert_allclose(again.encode(TEXTS, batch_size=5), ref, atol=1e-4)
    with pytest.raises(InputError, match="precision"):
        OpenVINOEncoder(torch_embedder._model, precision="int4")
    # padded to multiples of 32 positions (the query server's setting): the same vectors, and
    # the compiled model only ever sees lengths 32, 64, ... (memory flat over many lengths)
    padded = OpenVINOEncoder(
        torch_embedder._model, threads=1, precision="f32", cache_dir=tmp_path, pad_multiple=32
    )
    seen = []
    compiled = padded.compiled
    padded.compiled = lambda feed: seen.append(feed["input_ids"].shape) or compiled(feed)
    np.testing.assert_allclose(padded.encode(TEXTS, batch_size=3), ref, atol=1e-4)
    assert seen and all(n % 32 == 0 for _, n in seen) and len({n for _, n in seen}) > 1


@pytest.mark.slow
def test_without_openvino_auto_falls_back_to_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    assert not openvino_installed()
    emb = SentenceEmbedder(batch_size=4)
    assert emb.backend == "torch"
    v = emb.encode(TEXTS[:3])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    with pytest.raises(MissingDependencyError, match="retriever\\[fast\\]"):
        SentenceEmbedder(backend="openvino")


def test_unknown_backend_is_an_input_error():
    with pytest.raises(InputError, match="backend"):
        SentenceEmbedder(backend="tensorrt")
