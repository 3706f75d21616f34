"""Detection metrics of P(fake) scores: the numbers the paper and AIGCDetectBenchmark report.

    binary_metrics(labels, p_fake, threshold=0.5) -> dict
        accuracy          fraction of images labelled correctly (fake when P(fake) >= threshold)
        real_accuracy     accuracy on the real images (None without real images)
        fake_accuracy     accuracy on the fake images (None without fake images)
        average_precision AP of P(fake) with "fake" as the positive class (None unless both classes)
        roc_auc           area under the ROC curve of P(fake) (None unless both classes)
        n_real, n_fake    how many images of each class

    compute_metrics(eval_pred) -> dict
        the same for `transformers.Trainer(compute_metrics=...)`: `eval_pred.predictions` are the
        classifier's logits `[N, 2]` (index 1 = fake), `eval_pred.label_ids` the labels `[N]`.

Labels: 0 real, 1 fake. Undefined values (e.g. ROC-AUC of a fake-only dataset) are None, never an
error or a silent 0.5. AP and ROC-AUC are scikit-learn's (`average_precision_score`,
`roc_auc_score`), which is what `evaluate.load("roc_auc")` wraps, computed here offline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRIC_NAMES = ("accuracy", "real_accuracy", "fake_accuracy", "average_precision", "roc_auc", "n_real", "n_fake")


def binary_metrics(labels: Sequence[int], p_fake: Sequence[float], threshold: float = 0.5) -> dict:
    """Metrics of P(fake) scores against 0/1 labels (see the module docstring)."""
    labels = np.asarray(labels)
    scores = np.asarray(p_fake, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1 or len(labels) != len(scores):
        raise ValueError(f"labels and scores must be two 1-D sequences of one length, got shapes {labels.shape} and {scores.shape}.")
    if len(labels) and not np.isin(labels, (0, 1)).all():
        bad = sorted(set(labels[~np.isin(labels, (0, 1))].tolist()))[:5]
        raise ValueError(f"labels must be 0 (real) or 1 (fake), got {bad}.")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite probabilities (got NaN or infinity).")
    labels = labels.astype(np.int64)
    predicted = (scores >= threshold).astype(np.int64)
    correct = predicted == labels
    real, fake = labels == 0, labels == 1
    n_real, n_fake = int(real.sum()), int(fake.sum())
    result = {
        "accuracy": float(correct.mean()) if len(labels) else None,
        "real_accuracy": float(correct[real].mean()) if n_real else None,
        "fake_accuracy": float(correct[fake].mean()) if n_fake else None,
        "average_precision": None,
        "roc_auc": None,
        "n_real": n_real,
        "n_fake": n_fake,
    }
    if n_real and n_fake:
        from sklearn.metrics import average_precision_score, roc_auc_score

        result["average_precision"] = float(average_precision_score(labels, scores))
        result["roc_auc"] = float(roc_auc_score(labels, scores))
    return result


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


__all__ = ["METRIC_NAMES", "binary_metrics", "compute_metrics", "softmax_fake"]
