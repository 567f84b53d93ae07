"""A trained pipeline as ONNX (data a service can load, never pickled code), checked, and
its decision thresholds.

The graph is converted with skl2onnx and scored with onnxruntime on the test rows: if any
probability differs from scikit-learn's by more than `TOLERANCE`, the export is refused
rather than shipped, since the service would then score differently from the model card.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve
from sklearn.pipeline import Pipeline

from rtml.model.update import ModelError

TOLERANCE = 1e-5
INPUT_NAME = "features"
# The operating points, chosen on the test window's precision-recall curve: a transaction is
# declined outright where 9 in 10 such scores are frauds (a false decline costs a customer),
# and sent to an analyst where at least 3 in 10 are (an analyst's time is the budget).
REVIEW_PRECISION = 0.3
DECLINE_PRECISION = 0.9


def to_onnx(model: Pipeline, n_inputs: int) -> bytes:
    """The pipeline as a serialized ONNX graph: one float32 input [n, n_inputs], outputs
    (label, probabilities[n, 2]) without skl2onnx's ZipMap (a list of dicts is slow)."""
    from skl2onnx import to_onnx as convert
    from skl2onnx.common.data_types import FloatTensorType

    try:
        graph = convert(
            model,
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_inputs]))],
            options={id(model.steps[-1][1]): {"zipmap": False}},
        )
    except Exception as exc:  # skl2onnx raises many types for what it cannot convert
        raise ModelError(f"skl2onnx cannot convert this model to ONNX: {exc}") from exc
    return graph.SerializeToString()


def onnx_session(onnx: bytes) -> Any:
    """An onnxruntime session of the graph with one thread, as the service runs it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx, sess_options=options, providers=["CPUExecutionProvider"])


def onnx_scores(onnx: bytes, x: np.ndarray) -> np.ndarray:
    """Fraud probabilities of `x` (float32) from the graph."""
    session = onnx_session(onnx)
    return np.asarray(session.run(None, {INPUT_NAME: x})[-1])[:, 1].astype(np.float64)


def check_equal(onnx: bytes, sklearn_scores: np.ndarray, x: np.ndarray) -> float:
    """The largest |ONNX - scikit-learn| over the rows `x`; ModelError above TOLERANCE."""
    ours = onnx_scores(onnx, x)
    if ours.shape != sklearn_scores.shape:
        raise ModelError(f"The ONNX graph gave {ours.shape} scores for {len(x)} rows.")
    gap = float(np.max(np.abs(ours - sklearn_scores))) if len(x) else 0.0
    if not gap <= TOLERANCE:  # NaN fails too
        raise ModelError(
            f"The ONNX export scores up to {gap:.2g} away from scikit-learn's (tolerance "
            f"{TOLERANCE:g}), so it is not published: the service would not score as tested."
        )
    return gap


def threshold_at_precision(y: np.ndarray, scores: np.ndarray, precision: float) -> float:
    """The lowest score at which the transactions scoring at least that much are frauds
    with at least `precision`; 1.0 when no threshold reaches it (then almost nothing is
    flagged: only a score of exactly 1)."""
    precisions, _, thresholds = precision_recall_curve(y, scores)
    reached = thresholds[precisions[:-1] >= precision]
    return float(reached.min()) if len(reached) else 1.0


def choose_thresholds(
    y: np.ndarray,
    scores: np.ndarray,
    review_precision: float = REVIEW_PRECISION,
    decline_precision: float = DECLINE_PRECISION,
) -> tuple[float, float]:
    """(review, decline) thresholds with 0 <= review <= decline <= 1 (see module docs)."""
    review = threshold_at_precision(y, scores, review_precision)
    decline = threshold_at_precision(y, scores, decline_precision)
    return min(review, decline), decline


def rates_at(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and share of transactions flagged at `threshold` (score >= it)."""
    flagged = scores >= threshold
    frauds = int(np.sum(y))
    hits = int(np.sum(flagged & (y == 1)))
    return {
        "precision": hits / int(flagged.sum()) if flagged.any() else 0.0,
        "recall": hits / frauds if frauds else 0.0,
        "flagged": float(flagged.mean()) if len(y) else 0.0,
    }
