"""GPU paths against their CPU references: FAISS on the GPU, BPB in bf16 / fp16 on CUDA.

Marked ``gpu``: they skip where FAISS or torch sees no GPU (every CPU machine, CI); the CPU
fallbacks they compare with are tested everywhere (tests/test_index.py, tests/test_confirm_bpb.py).
Run on a GPU machine with ``pytest -m gpu``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from retriever.confirm.bpb import LMScorer, resolve_dtype  # noqa: E402
from retriever.confirm.panel import load_panel  # noqa: E402
from retriever.confirm.tiny_panel import synthetic_corpora, train_tiny_panel  # noqa: E402
from retriever.index.gold_index import faiss_gpu_available  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU")
needs_faiss_gpu = pytest.mark.skipif(not faiss_gpu_available(), reason="FAISS sees no GPU")


def test_auto_dtype_falls_back_to_fp32_on_cpu():
    """Not a GPU test: what the GPU tests below compare with is the CPU default."""
    assert resolve_dtype("auto", "cpu") == torch.float32


@pytest.mark.gpu
@needs_faiss_gpu
def test_faiss_gpu_search_equals_cpu_search():
    import faiss

    rng = np.random.default_rng(0)
    xb = rng.standard_normal((5000, 64)).astype("float32")
    xq = rng.standard_normal((50, 64)).astype("float32")
    faiss.normalize_L2(xb)
    faiss.normalize_L2(xq)
    cpu = faiss.IndexFlatIP(64)
    cpu.add(xb)
    gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, cpu)
    d_cpu, i_cpu = cpu.search(xq, 10)
    d_gpu, i_gpu = gpu.search(xq, 10)
    assert (i_cpu[:, 0] == i_gpu[:, 0]).all()
    np.testing.assert_allclose(d_cpu, d_gpu, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_panel")
    panel = train_tiny_panel(out, synthetic_corpora(30, seed=0), steps=3, n_models=2, seed=1)
    return load_panel(panel).models[0]


@pytest.mark.gpu
@pytest.mark.slow
@needs_cuda
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cuda_bpb_in_half_precision_is_close_to_fp32_on_cpu(tiny_model, dtype):
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    texts = [" ".join(["the tool returns a json object"] * k) for k in range(1, 9)]
    ref = LMScorer(tiny_model, device="cpu", dtype="float32").bits_per_byte(texts).bpb
    got = LMScorer(tiny_model, device="cuda", dtype=dtype).bits_per_byte(texts).bpb
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref, rtol=0.02)
