"""Embedding backends: the OpenVINO CPU path gives the torch vectors; torch is the fallback."""

import sys
import threading

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
    if embedder.backend == "openvino":  # bounded shapes: every length a multiple of 8
        assert embedder._fast.pad_multiple == 8
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
    padded._requests = [seen := _Shapes(padded._requests[0])]
    np.testing.assert_allclose(padded.encode(TEXTS, batch_size=3), ref, atol=1e-4)
    assert seen.shapes and all(n % 32 == 0 for _, n in seen.shapes)
    assert len({n for _, n in seen.shapes}) > 1
    # the query server's batches: split by length (one batch of every text: several forwards,
    # each only as wide as its longest), on two lanes used by two threads at once; same vectors
    served = OpenVINOEncoder(
        torch_embedder._model,
        threads=1,
        precision="f32",
        cache_dir=tmp_path,
        pad_multiple=32,
        group_lengths=True,
        lanes=2,
    )
    served._requests = [_Shapes(r) for r in served._requests]
    got = {}
    threads = [
        threading.Thread(
            target=lambda lane: got.setdefault(lane, served.encode(TEXTS, len(TEXTS), lane)),
            args=(lane,),
        )
        for lane in (0, 1)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for lane in (0, 1):
        np.testing.assert_allclose(got[lane], ref, atol=1e-4)
        shapes = served._requests[lane].shapes
        assert len(shapes) > 1 and sum(b for b, _ in shapes) == len(TEXTS)
        assert min(n for _, n in shapes) < max(n for _, n in shapes) == 256
    assert served.seconds["forward"] > 0 and served.lanes == 2
    # warm: every padded shape of batches up to 2 texts and 64 positions, on each lane
    for r in served._requests:
        r.shapes.clear()
    assert served.warm(2, 64) == 4
    assert [set(r.shapes) for r in served._requests] == [{(1, 32), (2, 32), (1, 64), (2, 64)}] * 2
    # texts of one length group whose token order differs from their character order keep
    # their own vectors (a one-forward batch was once written back in the group's order)
    pair = ["," * 70, "extraordinarily " * 8]  # 70 chars, 72 tokens; 128 chars, 34 tokens
    np.testing.assert_allclose(served.encode(pair), torch_embedder.encode(pair), atol=1e-4)


class _Shapes:
    """An inference request that records the (batch, length) of each forward."""

    def __init__(self, request):
        self.request, self.shapes = request, []

    def infer(self, feed):
        self.shapes.append(feed["input_ids"].shape)
        return self.request.infer(feed)


def test_length_groups_split_mixed_batches_and_keep_alike_ones():
    from retriever.embed.openvino_encoder import length_groups

    # one long text and three short ones: two forwards, 96 + 256 and 96 + 3 * 32 positions
    assert length_groups([32, 256, 32, 32], overhead=96) == [[1], [0, 2, 3]]
    assert length_groups([256, 224, 256, 256], overhead=96) == [[0, 2, 3, 1]]  # alike: one
    assert length_groups([64], overhead=96) == [[0]] and length_groups([]) == []
    groups = length_groups([256, 32, 128, 64, 256, 32, 96], overhead=40)
    assert sorted(i for g in groups for i in g) == list(range(7))  # every text once
    assert len(groups) > 1


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
