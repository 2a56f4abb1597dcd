"""backend="auto": the faster of torch and OpenVINO on this machine, measured once and cached."""

import json
import time

import numpy as np
import pytest
from conftest import MATH_GOLD, WEB_TEXT

from retriever.embed import SentenceEmbedder
from retriever.embed import calibrate as cal
from retriever.embed.openvino_encoder import openvino_installed
from retriever.errors import InputError

needs_openvino = pytest.mark.skipif(not openvino_installed(), reason="openvino not installed")


def _sleeper(per_batch: float):
    def call(texts):
        time.sleep(per_batch)
        return np.zeros((len(texts), 2), dtype=np.float32)

    return call


def test_choose_keeps_the_fastest_and_caches_it(tmp_path, caplog):
    path = tmp_path / "backend" / "k.json"
    # a 50 ms sleep against none: the order holds on a loaded machine (no timing ratio asserted)
    calls = {"torch": _sleeper(0.05), "openvino-f32": _sleeper(0.0)}
    data = cal.choose(calls, path, {"weights": "w"}, rounds=2)
    assert data["choice"] == "openvino-f32" and data["speed_vs_torch"]["openvino-f32"] > 1
    assert data["seconds"]["torch"] > data["seconds"]["openvino-f32"]
    assert cal.read_choice(path)["choice"] == "openvino-f32"  # written, readable
    path.write_text("{not json")
    assert cal.read_choice(path) is None and "measuring again" in caplog.text
    path.write_text(json.dumps({"format": cal.CALIBRATION_FORMAT, "choice": "tensorrt"}))
    assert cal.read_choice(path) is None  # an unknown choice is measured again, never obeyed
    assert cal.read_choice(tmp_path / "absent.json") is None


def test_calibration_key_changes_with_threads_and_weights():
    k1, what = cal.calibration_key("weights-a", 2)
    assert what["threads"] == 2 and "cpu" in what and "openvino" in what["versions"]
    assert k1 == cal.calibration_key("weights-a", 2)[0]
    assert k1 != cal.calibration_key("weights-a", 1)[0] != cal.calibration_key("weights-b", 2)[0]
    texts = cal.calibration_texts()
    assert len(texts) == 24 and texts == cal.calibration_texts()  # the same work every time


@pytest.mark.slow
@needs_openvino
@pytest.mark.parametrize("cached", ["torch", "openvino-f32"])
def test_auto_follows_the_cached_calibration(cached, tmp_path, monkeypatch, embedder):
    path = tmp_path / "cal.json"
    monkeypatch.setattr(cal, "calibration_path", lambda key, cache_dir=None: path)
    path.write_text(json.dumps({"format": cal.CALIBRATION_FORMAT, "choice": cached, "seconds": {}}))
    emb = SentenceEmbedder(batch_size=4)
    assert emb.calibration["cached"] and emb.calibration["choice"] == cached
    assert emb.backend == ("torch" if cached == "torch" else "openvino")
    texts = WEB_TEXT + MATH_GOLD
    cos = (emb.encode(texts) * embedder.encode(texts)).sum(1)
    assert cos.min() > 0.999


@pytest.mark.slow
@needs_openvino
def test_environment_forces_a_backend(monkeypatch):
    monkeypatch.setenv("RETRIEVER_EMBED_BACKEND", "torch")
    emb = SentenceEmbedder(batch_size=4)
    assert emb.backend == "torch" and emb.calibration == {"choice": "torch", "forced": True}
    monkeypatch.setenv("RETRIEVER_EMBED_BACKEND", "tensorrt")
    with pytest.raises(InputError, match="RETRIEVER_EMBED_BACKEND"):
        SentenceEmbedder(batch_size=4)


@needs_openvino
@pytest.mark.slow
def test_first_use_measures_then_reads_the_cache(tmp_path, monkeypatch, caplog):
    path = tmp_path / "cal.json"
    monkeypatch.setattr(cal, "calibration_path", lambda key, cache_dir=None: path)
    caplog.set_level("INFO", logger="retriever.embed.embedder")
    first = SentenceEmbedder()
    data = json.loads(path.read_text())
    assert not first.calibration["cached"] and "on this machine" in caplog.text  # logged
    assert data["choice"] == min(data["seconds"], key=data["seconds"].get)
    assert set(data["seconds"]) >= {"torch", "openvino-f32"} and data["key"]["threads"] >= 1
    again = SentenceEmbedder()
    assert again.calibration["cached"] and again.backend == first.backend
