"""Detection metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepvrm.trainers.metrics import METRIC_NAMES, binary_metrics, compute_metrics, softmax_fake


def test_hand_computed_values():
    # real: 0.1, 0.4   fake: 0.35, 0.8   (threshold 0.5: 0.35 is a missed fake)
    metrics = binary_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert tuple(metrics) == METRIC_NAMES
    assert metrics["accuracy"] == 0.75
    assert metrics["real_accuracy"] == 1.0
    assert metrics["fake_accuracy"] == 0.5
    # ROC-AUC: of the 4 (fake, real) pairs, the fake scores higher in 3 (0.35 < 0.4).
    assert metrics["roc_auc"] == pytest.approx(0.75)
    # AP, fakes ranked by score: 0.8 (fake, precision 1/1), 0.4 (real), 0.35 (fake, precision 2/3):
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    assert metrics["average_precision"] == pytest.approx(5 / 6)
    assert (metrics["n_real"], metrics["n_fake"]) == (2, 2)


def test_threshold_and_ties():
    # A score equal to the threshold counts as fake.
    metrics = binary_metrics([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9])
    assert metrics["real_accuracy"] == 0.5 and metrics["fake_accuracy"] == 1.0
    assert binary_metrics([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9], threshold=0.6)["fake_accuracy"] == 0.5
    # Tied scores across classes count half in the AUC: pairs (f=.5 vs r=.5: 1/2), (f=.5 vs r=.2: 1),
    # (f=.9 vs .5: 1), (f=.9 vs .2: 1) -> 3.5 / 4.
    assert metrics["roc_auc"] == pytest.approx(0.875)


def test_single_class_reports_what_is_defined():
    fake_only = binary_metrics([1, 1, 1], [0.9, 0.2, 0.7])
    assert fake_only["accuracy"] == pytest.approx(2 / 3)
    assert fake_only["fake_accuracy"] == pytest.approx(2 / 3)
    assert fake_only["real_accuracy"] is None
    assert fake_only["average_precision"] is None and fake_only["roc_auc"] is None
    assert (fake_only["n_real"], fake_only["n_fake"]) == (0, 3)
    real_only = binary_metrics([0, 0], [0.9, 0.2])
    assert real_only["real_accuracy"] == 0.5 and real_only["fake_accuracy"] is None and real_only["roc_auc"] is None
    empty = binary_metrics([], [])
    assert empty["accuracy"] is None and empty["n_real"] == 0 and empty["n_fake"] == 0


def test_bad_inputs_raise_clearly():
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="one length"):
        binary_metrics([0, 1], [0.1])
    with pytest.raises(ValueError, match="finite"):
        binary_metrics([0, 1], [0.1, float("nan")])


def test_softmax_fake_is_stable():
    p = softmax_fake([[0.0, 0.0], [0.0, math.log(3)], [1000.0, -1000.0], [-1000.0, 1000.0]])
    assert p == pytest.approx([0.5, 0.75, 0.0, 1.0])
    with pytest.raises(ValueError, match="\\[N, 2\\]"):
        softmax_fake([0.1, 0.2])


def test_compute_metrics_for_the_trainer():
    from transformers import EvalPrediction

    p_fake = np.array([0.1, 0.4, 0.35, 0.8])
    logits = np.stack([np.zeros(4), np.log(p_fake / (1 - p_fake))], axis=1)  # softmax -> p_fake
    expected = binary_metrics([0, 0, 1, 1], p_fake)
    got = compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array([0, 0, 1, 1])))
    assert got == pytest.approx(expected)
    # A tuple of model outputs (logits first) and ignored labels (-100) are handled.
    padded_logits = np.concatenate([logits, [[5.0, -5.0]]])
    extra = np.zeros((5, 3))
    got = compute_metrics(((padded_logits, extra), np.array([0, 0, 1, 1, -100])))
    assert got == pytest.approx(expected)
    # Undefined values are left out (the Trainer logs numbers only).
    single = compute_metrics((logits[2:], np.array([1, 1])))
    assert "roc_auc" not in single and "real_accuracy" not in single and single["n_fake"] == 2
