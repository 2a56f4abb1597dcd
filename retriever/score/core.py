"""Pure array core of similarity scoring: no model, no I/O, tested against brute force.

A document's score for a task is computed from its cosine similarities to the task's gold
exemplars (unit vectors, so inner product = cosine):

* ``max``: the similarity to the nearest exemplar (is there *one* gold record this looks like?);
* ``topk``: the mean of the ``k`` largest similarities (does it look like the task in general, not
  like one odd exemplar?). With fewer than ``k`` exemplars, the mean is over all of them.
"""

from __future__ import annotations

import numpy as np


def topk_scores(D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(max, mean)`` per row of a top-k similarity matrix ``D`` sorted descending (FAISS order).

    Args:
        D: ``[n_docs, k]`` similarities, best first.

    Returns:
        Two ``[n_docs]`` float32 arrays.
    """
    D = np.asarray(D, dtype=np.float32)
    if D.ndim != 2 or D.shape[1] == 0:
        raise ValueError(f"expected a [n, k>0] matrix, got shape {D.shape}")
    return D[:, 0].copy(), D.mean(axis=1, dtype=np.float64).astype(np.float32)


def score_embeddings(
    xq: np.ndarray, xb: np.ndarray, k: int, block: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Reference scorer: exact ``(max, mean top-k)`` cosine of every query row against ``xb``.

    Plain numpy, blocked over queries so memory is ``block x len(xb)`` floats; used by tests and
    benchmarks as the ground truth for the FAISS path.

    Args:
        xq: ``[n, d]`` unit query vectors (documents).
        xb: ``[m, d]`` unit gold vectors.
        k: neighbours averaged by the ``topk`` score (clipped to ``m``).
        block: query rows per block (memory note above).
    """
    k = max(1, min(k, len(xb)))
    out_max = np.empty(len(xq), dtype=np.float32)
    out_mean = np.empty(len(xq), dtype=np.float32)
    for i in range(0, len(xq), block):
        S = xq[i : i + block] @ xb.T  # [block, m]
        part = -np.partition(-S, k - 1, axis=1)[:, :k]  # k largest, unordered
        part.sort(axis=1)
        D = part[:, ::-1]  # [block, k] best first
        out_max[i : i + block], out_mean[i : i + block] = topk_scores(D)
    return out_max, out_mean
