"""Detection metrics against values computed by hand, and the `evaluate` metric module that defines them."""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepvrm.trainers.metrics import METRIC_NAMES, METRIC_PATH, binary_metrics, compute_metrics, softmax_fake


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
    # Best threshold, each distinct score tried (fake at or above it): 0.1 -> 2/4, 0.35 -> 3/4 (only
    # the real 0.4 wrong), 0.4 -> 2/4, 0.8 -> 3/4 (only the fake 0.35 wrong), above 0.8 -> 2/4. Of
    # the two at 3/4, 0.35 lies nearer the threshold 0.5.
    assert metrics["best_accuracy"] == 0.75 and metrics["best_threshold"] == 0.35
    assert (metrics["n_real"], metrics["n_fake"]) == (2, 2)


def test_threshold_and_ties():
    # A score equal to the threshold counts as fake.
    metrics = binary_metrics([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9])
    assert metrics["real_accuracy"] == 0.5 and metrics["fake_accuracy"] == 1.0
    assert binary_metrics([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9], threshold=0.6)["fake_accuracy"] == 0.5
    # Tied scores across classes count half in the AUC: pairs (f=.5 vs r=.5: 1/2), (f=.5 vs r=.2: 1),
    # (f=.9 vs .5: 1), (f=.9 vs .2: 1) -> 3.5 / 4.
    assert metrics["roc_auc"] == pytest.approx(0.875)
    # Best threshold: 0.2 -> 2/4 (every image fake), 0.5 -> 3/4 (the real 0.5 wrong), 0.9 -> 3/4 (the
    # fake 0.5 wrong), above 0.9 -> 2/4. Of the tied two, the one nearer the threshold given wins.
    assert (metrics["best_accuracy"], metrics["best_threshold"]) == (0.75, 0.5)
    assert binary_metrics([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9], threshold=0.8)["best_threshold"] == 0.9


def test_single_class_reports_what_is_defined():
    fake_only = binary_metrics([1, 1, 1], [0.9, 0.2, 0.7])
    assert fake_only["accuracy"] == pytest.approx(2 / 3)
    assert fake_only["fake_accuracy"] == pytest.approx(2 / 3)
    assert fake_only["real_accuracy"] is None
    assert fake_only["average_precision"] is None and fake_only["roc_auc"] is None
    assert fake_only["best_accuracy"] is None and fake_only["best_threshold"] is None  # one class: any threshold fits
    assert (fake_only["n_real"], fake_only["n_fake"]) == (0, 3)
    real_only = binary_metrics([0, 0], [0.9, 0.2])
    assert real_only["real_accuracy"] == 0.5 and real_only["fake_accuracy"] is None and real_only["roc_auc"] is None
    assert real_only["best_accuracy"] is None and real_only["average_precision"] is None
    empty = binary_metrics([], [])
    assert empty["accuracy"] is None and empty["n_real"] == 0 and empty["n_fake"] == 0
    assert all(empty[name] is None for name in METRIC_NAMES if not name.startswith("n_"))


def test_best_threshold_accuracy():
    # Separable, but not at 0.5: reals 0.6, 0.7, fake 0.9. At 0.5 every image is called fake (1/3);
    # at 0.9 all three are right.
    metrics = binary_metrics([0, 0, 1], [0.6, 0.7, 0.9])
    assert metrics["accuracy"] == pytest.approx(1 / 3) and metrics["real_accuracy"] == 0.0
    assert (metrics["best_accuracy"], metrics["best_threshold"]) == (1.0, 0.9)
    # A detector that ranks backwards (fake 0.1, real 0.2): 0.1 -> 1/2 (both fake), 0.2 -> 0/2, just
    # above 0.2 -> 1/2 (both real). Tied 1/2: the candidate above 0.2 is nearer 0.5 than 0.1 is.
    metrics = binary_metrics([1, 0], [0.1, 0.2])
    assert metrics["roc_auc"] == 0.0 and metrics["best_accuracy"] == 0.5
    assert 0.2 < metrics["best_threshold"] < 0.2 + 1e-12
    # Reals 0.1, 0.6, fakes 0.25, 0.75, 0.9: 0.1 -> 3/5, 0.25 -> 4/5, 0.6 -> 3/5, 0.75 -> 4/5,
    # 0.9 -> 3/5, above -> 2/5. 0.25 and 0.75 lie equally near 0.5: the lower one.
    metrics = binary_metrics([0, 1, 0, 1, 1], [0.1, 0.25, 0.6, 0.75, 0.9])
    assert (metrics["best_accuracy"], metrics["best_threshold"]) == (0.8, 0.25)


def test_bad_inputs_raise_clearly():
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\), got \\[0.5\\]"):
        binary_metrics([0, 0.5], [0.1, 0.2])  # refused, not cast to 0 on its way into evaluate
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


# ---------------------------------------------------------------------------------------- the evaluate module
def test_the_metric_module_is_self_contained():
    """The module file imports only what a Hub metric Space has: evaluate, datasets, numpy, sklearn."""
    source = Path(METRIC_PATH, "ai_image_detection.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add(node.module.split(".")[0])
    assert imported <= {"evaluate", "datasets", "numpy", "sklearn"}, imported
    assert {p.name for p in Path(METRIC_PATH).iterdir() if p.name != "__pycache__"} == {
        "ai_image_detection.py", "README.md", "requirements.txt", "app.py"}  # fmt: skip


def test_evaluate_load_of_the_path_gives_the_same_numbers():
    import evaluate

    for path in (METRIC_PATH, os.path.join(METRIC_PATH, "ai_image_detection.py")):
        metric = evaluate.load(path, keep_in_memory=True)
        got = metric.compute(references=[0, 0, 1, 1], predictions=[0.1, 0.4, 0.35, 0.8])
        assert got == binary_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        assert metric.compute(references=[1, 1], predictions=[0.2, 0.9], threshold=0.1)["roc_auc"] is None


OFFLINE_LOAD = """
import json, socket, sys
import evaluate

def no_network(*args, **kwargs):
    raise OSError("network access in an offline test")

socket.socket.connect = no_network
socket.create_connection = no_network
metric = evaluate.load(sys.argv[1])
result = {
    "both": metric.compute(references=[0, 0, 1, 1], predictions=[0.1, 0.4, 0.35, 0.8]),
    "fake_only": metric.compute(references=[1, 1, 1], predictions=[0.9, 0.2, 0.7]),
}
print(json.dumps(result))
"""


@pytest.mark.slow  # a fresh Python importing evaluate (and, through it, transformers and torch): ~10 s on 2 cores
def test_evaluate_load_works_offline_in_a_fresh_process(tmp_path):
    """HF_HUB_OFFLINE=1, every socket refused, an empty HF_HOME: the local path still loads."""
    home = tmp_path / "hf-home"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(home)}
    for name in ("HF_MODULES_CACHE", "HF_METRICS_CACHE", "HF_DATASETS_CACHE", "HF_EVALUATE_CACHE"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", OFFLINE_LOAD, METRIC_PATH], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    both, fake_only = result["both"], result["fake_only"]
    assert (both["accuracy"], both["real_accuracy"], both["fake_accuracy"]) == (0.75, 1.0, 0.5)
    assert both["roc_auc"] == pytest.approx(0.75) and both["average_precision"] == pytest.approx(5 / 6)
    assert (both["best_accuracy"], both["best_threshold"], both["n_real"], both["n_fake"]) == (0.75, 0.35, 2, 2)
    assert fake_only == {"accuracy": pytest.approx(2 / 3), "real_accuracy": None, "fake_accuracy": pytest.approx(2 / 3),
                         "average_precision": None, "roc_auc": None, "best_accuracy": None, "best_threshold": None,
                         "n_real": 0, "n_fake": 3}  # fmt: skip
    assert (home / "modules" / "evaluate_modules").is_dir()  # the copy evaluate imports lies in HF_HOME
