"""Detection metrics of P(fake) scores: the numbers the paper and AIGCDetectBenchmark report.

They are defined once, in the `evaluate` metric module shipped in this package
(`ai_image_detection/ai_image_detection.py`, its metric card beside it), which this module loads
with `evaluate.load(METRIC_PATH)`; `deepvrm evaluate` and the Trainer's `compute_metrics` both go
through it, and the same folder can be pushed to the Hub as an evaluate metric Space.

    METRIC_PATH                         the module's folder: `evaluate.load(METRIC_PATH)` (offline)
    detection_metric()                  that loaded metric, once per process
    binary_metrics(labels, p_fake, threshold=0.5) -> dict
        accuracy          fraction of images labelled correctly (fake when P(fake) >= threshold)
        real_accuracy     accuracy on the real images (None without real images)
        fake_accuracy     accuracy on the fake images (None without fake images)
        average_precision AP of P(fake) with "fake" as the positive class (None unless both classes)
        roc_auc           area under the ROC curve of P(fake) (None unless both classes)
        best_accuracy     accuracy at the best threshold for the data (None unless both classes)
        best_threshold    that threshold (None unless both classes)
        n_real, n_fake    how many images of each class

    compute_metrics(eval_pred) -> dict
        the same for `transformers.Trainer(compute_metrics=...)`: `eval_pred.predictions` are the
        classifier's logits `[N, 2]` (index 1 = fake), `eval_pred.label_ids` the labels `[N]`.

Labels: 0 real, 1 fake. Undefined values (e.g. ROC-AUC of a fake-only dataset) are None, never an
error or a silent 0.5. AP and ROC-AUC are scikit-learn's (`average_precision_score`,
`roc_auc_score`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

METRIC_PATH = str(Path(__file__).resolve().parent / "ai_image_detection")
METRIC_NAMES = (
    "accuracy", "real_accuracy", "fake_accuracy", "average_precision", "roc_auc",
    "best_accuracy", "best_threshold", "n_real", "n_fake",
)  # fmt: skip


@functools.cache
def detection_metric():
    """The shipped metric module, loaded by `evaluate.load` of its folder (no network: a local
    path is copied into the modules cache and imported). Kept in memory: no cache files."""
    import evaluate

    return evaluate.load(METRIC_PATH, keep_in_memory=True)


def binary_metrics(labels: Sequence[int], p_fake: Sequence[float], threshold: float = 0.5) -> dict:
    """Metrics of P(fake) scores against 0/1 labels (see the module docstring): the metric
    module's `compute`. Raises ValueError on labels other than 0/1, scores that are not finite, or
    sequences of different lengths."""
    labels, p_fake = np.asarray(labels), np.asarray(p_fake)
    if labels.ndim != 1 or p_fake.ndim != 1 or len(labels) != len(p_fake):
        raise ValueError(f"labels and scores must be two 1-D sequences of one length, got shapes {labels.shape} and {p_fake.shape}.")
    return detection_metric().compute(references=labels, predictions=p_fake, threshold=threshold)


def softmax_fake(logits, fake_index: int = 1) -> np.ndarray:
    """P(fake) from two-way logits `[N, 2]`, computed stably in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"expected logits of shape [N, 2], got {logits.shape}.")
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp[:, fake_index] / exp.sum(axis=1)


def compute_metrics(eval_pred, threshold: float = 0.5) -> dict:
    """`Trainer(compute_metrics=compute_metrics)`: metrics of the classifier's logits.

    Accepts an `EvalPrediction` or a `(predictions, label_ids)` pair; when the model returned a
    tuple of outputs the first (the logits) is used. Labels of -100 (ignored) are dropped. Undefined
    metrics are left out of the returned dict (the Trainer logs numbers only).
    """
    if hasattr(eval_pred, "predictions"):
        predictions, label_ids = eval_pred.predictions, eval_pred.label_ids
    else:
        predictions, label_ids = eval_pred
    if isinstance(predictions, (tuple, list)) and not np.isscalar(predictions[0]) and np.ndim(predictions[0]) == 2:
        predictions = predictions[0]
    labels = np.asarray(label_ids).reshape(-1)
    p_fake = softmax_fake(predictions)
    keep = labels != -100
    metrics = binary_metrics(labels[keep], p_fake[keep], threshold=threshold)
    return {name: value for name, value in metrics.items() if value is not None}


__all__ = ["METRIC_NAMES", "METRIC_PATH", "binary_metrics", "compute_metrics", "detection_metric", "softmax_fake"]
