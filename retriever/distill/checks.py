"""Is the student worth shipping? Held-out checks against the similarity stage, in numbers.

On the held-out rows of the student's training set, :func:`student_checks` compares the student's
ROC-AUC with the similarity stage's (max cosine to the task's gold; leave-one-out for held-out
gold exemplars) *on the same rows*: the held-out ``gold`` exemplars against the held-out ``random``
corpus documents (both sides present in every run; falling back to all held-out positives against
all held-out negatives with a similarity). It warns when

* the student's AUC is more than ``max_auc_gap`` below the similarity stage's,
* its F1 at the threshold is 0 (it keeps nothing, or only the wrong documents),
* its probabilities bunch at the threshold (more than half of them within 0.05 of it: the filter's
  decision is then noise),
* the held-out set is tiny (fewer than :data:`MIN_HELDOUT` rows of a class): every figure is noisy.

The run copies the warnings into ``run.json`` and its summary; the report shows them as a red flag.
"""

from __future__ import annotations

import numpy as np

from retriever.distill.labels import POSITIVE, LabelSet
from retriever.distill.metrics import classification_metrics
from retriever.metrics import roc_auc

MIN_HELDOUT = 20
BUNCH_WIDTH = 0.05
BUNCH_SHARE = 0.5


def student_checks(
    rows: LabelSet,
    test_idx: np.ndarray,
    p_test: np.ndarray,
    threshold: float = 0.5,
    max_auc_gap: float = 0.02,
) -> dict:
    """The held-out comparison and the warnings (see the module docstring).

    Args:
        rows: the student's rows (``row_source`` and ``similarity`` used).
        test_idx: ``[n_test]`` held-out row indices.
        p_test: ``[n_test]`` the student's P(positive) on them.
        threshold: the student's decision threshold.
        max_auc_gap: tolerated AUC shortfall against the similarity stage.

    Returns:
        ``{"comparison": {...}, "warnings": [str, ...]}``.
    """
    test_idx = np.asarray(test_idx, dtype=np.int64)
    p = np.asarray(p_test, dtype=np.float64)
    y = np.array([rows.labels[i] == POSITIVE for i in test_idx], dtype=bool)
    src = np.array(rows.row_source or [""] * len(rows), dtype=object)[test_idx]
    sim = rows.similarity[test_idx] if len(test_idx) else np.zeros(0)
    m = classification_metrics(y, p, threshold)
    warnings: list[str] = []
    comp: dict = {"f1": m["f1"], "roc_auc_all": m["roc_auc"]}
    pair = (src == "gold") | (src == "random")
    if (src[pair] == "gold").any() and (src[pair] == "random").any():
        sel, rows_desc = pair, "held-out gold vs held-out random corpus documents"
    else:
        sel, rows_desc = np.ones(len(y), dtype=bool), "all held-out positives vs negatives"
    sel = sel & np.isfinite(sim)
    comp["rows"] = rows_desc
    comp["n_positive"] = int(y[sel].sum())
    comp["n_negative"] = int((~y[sel]).sum())
    if comp["n_positive"] and comp["n_negative"]:
        comp["student_auc"] = roc_auc(y[sel], p[sel])
        comp["similarity_auc"] = roc_auc(y[sel], sim[sel])
        comp["gap"] = comp["similarity_auc"] - comp["student_auc"]
        if comp["gap"] > max_auc_gap:
            warnings.append(
                f"student AUC {comp['student_auc']:.3f} is {comp['gap']:.3f} below the similarity "
                f"stage's {comp['similarity_auc']:.3f} on {rows_desc} (n={int(sel.sum())}): it "
                "loses the selection; retrain with the gold sources (distill training_set)"
            )
    else:
        comp["student_auc"] = comp["similarity_auc"] = comp["gap"] = None
        warnings.append(
            "no held-out rows with a similarity on both sides: the student could not be compared "
            "with the similarity stage (pass the gold indexes to distill)"
        )
    if m["f1"] == 0.0:
        warnings.append(
            f"student F1 is 0 at p >= {threshold} on {len(y)} held-out rows: it keeps no positive"
        )
    near = float(np.mean(np.abs(p - threshold) <= BUNCH_WIDTH)) if len(p) else 0.0
    comp["share_near_threshold"] = near
    if near > BUNCH_SHARE:
        warnings.append(
            f"{near:.0%} of the student's held-out probabilities lie within {BUNCH_WIDTH} of the "
            f"threshold {threshold}: its decisions there are noise"
        )
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if min(n_pos, n_neg) < MIN_HELDOUT:
        warnings.append(
            f"tiny held-out set ({n_pos} positive, {n_neg} negative rows; < {MIN_HELDOUT}): the "
            "student's figures are noisy (more gold or labels, or a larger test_fraction)"
        )
    return {"comparison": comp, "warnings": warnings}
