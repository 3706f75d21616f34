"""AI-generated image detection metrics of P(fake) scores, as an `evaluate` metric module.

    import evaluate
    metric = evaluate.load("path/to/ai_image_detection")      # this folder (or this file), offline
    metric.compute(references=[0, 0, 1, 1], predictions=[0.1, 0.4, 0.35, 0.8], threshold=0.5)

`references` are the labels (0 real, 1 fake), `predictions` each image's P(fake) in [0, 1]. The
result holds the numbers that Deep-VRM's paper and the AIGC-detection benchmarks report:

    accuracy          fraction of images labelled right (fake when P(fake) >= threshold)
    real_accuracy     accuracy on the real images (None without real images)
    fake_accuracy     accuracy on the fake images (None without fake images)
    average_precision AP of P(fake), fake being the positive class (None unless both classes)
    roc_auc           area under the ROC curve of P(fake) (None unless both classes)
    best_accuracy     the accuracy at the best threshold for this data (the "oracle" accuracy that
                      papers quote beside the fixed-threshold one; None unless both classes)
    best_threshold    that threshold: an image is called fake when P(fake) >= it; among thresholds
                      of equal accuracy, the one nearest `threshold`, then the lower one
    n_real, n_fake    how many images of each class

A value the data cannot define is None, never an error or a silent 0.5. AP and ROC-AUC are
scikit-learn's `average_precision_score` and `roc_auc_score`. Bad input raises ValueError: a
label other than 0 or 1, a score that is not a finite number.

This file is self-contained (it imports evaluate, datasets, numpy and scikit-learn only), so the
folder can be pushed to the Hub as an evaluate metric Space as it is. It ships inside the `deepvrm`
package, where `deepvrm.trainers.metrics` loads it with `evaluate.load` for `deepvrm evaluate`
and the Trainer's `compute_metrics`.
"""

import datasets
import evaluate
import numpy as np

_CITATION = """\
@inproceedings{deepvrm2026,
  title     = {Deep Residual Injection for Full-Spectrum Forensic Signal Perception in MLLMs},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2026}
}
"""

_DESCRIPTION = """\
Metrics of a detector of AI-generated images from each image's probability of being generated,
P(fake): accuracy at a threshold (overall, on real images, on fake images), average precision and
ROC-AUC with "fake" as the positive class, and the accuracy at the best threshold for the data.
Values that the data cannot define (ROC-AUC of a fake-only set) are None.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): each image's P(fake), in [0, 1].
    references (`list` of `int`): each image's label, 0 real or 1 fake.
    threshold (`float`, default 0.5): P(fake) at or above which an image is called fake.
Returns:
    accuracy, real_accuracy, fake_accuracy, average_precision, roc_auc, best_accuracy (`float`
    or None), best_threshold (`float` or None), n_real, n_fake (`int`).
Examples:
    >>> metric = evaluate.load("path/to/ai_image_detection")
    >>> result = metric.compute(references=[0, 0, 1, 1], predictions=[0.1, 0.4, 0.35, 0.8])
    >>> result["accuracy"], result["fake_accuracy"], result["roc_auc"], result["best_accuracy"]
    (0.75, 0.5, 0.75, 0.75)
"""

METRIC_NAMES = (
    "accuracy", "real_accuracy", "fake_accuracy", "average_precision", "roc_auc",
    "best_accuracy", "best_threshold", "n_real", "n_fake",
)  # fmt: skip


def detection_metrics(references, predictions, threshold=0.5):
    """The metrics (see the module docstring) of P(fake) `predictions` against 0/1 `references`."""
    labels = np.asarray(references, dtype=np.float64)
    scores = np.asarray(predictions, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1 or len(labels) != len(scores):
        raise ValueError(f"labels and scores must be two 1-D sequences of one length, got shapes {labels.shape} and {scores.shape}.")
    if len(labels) and not np.isin(labels, (0, 1)).all():
        bad = sorted(set(labels[~np.isin(labels, (0, 1))].tolist()))[:5]
        raise ValueError(f"labels must be 0 (real) or 1 (fake), got {bad}.")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite probabilities (got NaN or infinity).")
    labels = labels.astype(np.int64)
    correct = (scores >= threshold).astype(np.int64) == labels
    real, fake = labels == 0, labels == 1
    n_real, n_fake = int(real.sum()), int(fake.sum())
    result = {
        "accuracy": float(correct.mean()) if len(labels) else None,
        "real_accuracy": float(correct[real].mean()) if n_real else None,
        "fake_accuracy": float(correct[fake].mean()) if n_fake else None,
        "average_precision": None,
        "roc_auc": None,
        "best_accuracy": None,
        "best_threshold": None,
        "n_real": n_real,
        "n_fake": n_fake,
    }
    if n_real and n_fake:
        from sklearn.metrics import average_precision_score, roc_auc_score

        result["average_precision"] = float(average_precision_score(labels, scores))
        result["roc_auc"] = float(roc_auc_score(labels, scores))
        result["best_accuracy"], result["best_threshold"] = best_threshold_accuracy(labels, scores, threshold)
    return result


def best_threshold_accuracy(labels, scores, near=0.5):
    """(accuracy, threshold) at the threshold that labels the most images right.

    Every distinct threshold is tried: each distinct score (fake at or above it) and one just above
    the highest score (every image called real). Of equally good thresholds, the one nearest `near`
    wins, then the lower one.
    """
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    candidates = np.append(np.unique(scores), np.nextafter(scores.max(), np.inf))
    real_scores, fake_scores = np.sort(scores[labels == 0]), np.sort(scores[labels == 1])
    # With threshold t: fakes caught = fakes scoring >= t, reals right = reals scoring < t.
    fakes_caught = len(fake_scores) - np.searchsorted(fake_scores, candidates, side="left")
    reals_right = np.searchsorted(real_scores, candidates, side="left")
    correct = fakes_caught + reals_right
    best = np.flatnonzero(correct == correct.max())
    chosen = best[np.argmin(np.abs(candidates[best] - near))]  # argmin: the first (lowest) of ties
    return float(correct[chosen] / len(labels)), float(candidates[chosen])


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AiImageDetection(evaluate.Metric):
    """`evaluate.load` of this file gives this metric; `compute` returns `detection_metrics`."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # References as float64: a label of 0.5 must be refused here, not truncated to 0 by a cast.
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html#precision-recall-and-f-measures"],
        )

    def _compute(self, predictions, references, threshold=0.5):
        return detection_metrics(references, predictions, threshold=threshold)
