"""`deepvrm evaluate`: metrics per dataset and generator, single-class data, perturbations, report."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from deepvrm.cli.evaluate import Perturbation, main, parse_perturbations
from deepvrm.inference.detector import Detector, ScoreResult
from deepvrm.trainers.metrics import binary_metrics


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def fixed_scores(monkeypatch, scores: dict[str, float]):
    """Make the detector return the given P(fake) per file name ("<generator>/<label>/<name>")."""
    seen = []

    def score_paths(detector, paths, transform=None):
        for path in paths:
            key = "/".join(path.split(os.sep)[-3:])
            seen.append(key)
            yield ScoreResult(path, score=scores[key])

    monkeypatch.setattr(Detector, "score_paths", score_paths)
    return seen


# ---------------------------------------------------------------------------------------- metrics
def test_metrics_per_dataset_and_generator_equal_hand_computed_values(tmp_path, tiny_model_dir, capsys, monkeypatch):
    bench = tmp_path / "bench"
    scores = {
        # sd: one mistake per class, the missed fake (0.4) ranks below a real (0.6)
        "sd/real/0.png": 0.1, "sd/real/1.png": 0.6, "sd/fake/0.png": 0.7, "sd/fake/1.png": 0.4,
        # mj: perfectly separated
        "mj/real/0.png": 0.2, "mj/real/1.png": 0.3, "mj/fake/0.png": 0.9, "mj/fake/1.png": 0.8,
    }  # fmt: skip
    for key in scores:
        (bench / os.path.dirname(key)).mkdir(parents=True, exist_ok=True)
        noise(16, 16).save(bench / key)
    # A fake-only set in the official JSONL format: labels from the assistant turn and a label field.
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    noise(16, 16).save(fakes / "a.png")
    noise(16, 16).save(fakes / "b.png")
    lines = [
        {"messages": [{"role": "user", "content": "Is this image real or fake? <image>"}, {"role": "assistant", "content": "fake"}], "images": ["a.png"]},
        {"messages": [{"role": "user", "content": "Is this image real or fake? <image>"}], "images": ["b.png"], "label": "fake"},
    ]  # fmt: skip
    (fakes / "fakes.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    scores.update({f"{tmp_path.name}/fakes/a.png": 0.9, f"{tmp_path.name}/fakes/b.png": 0.3})
    fixed_scores(monkeypatch, scores)

    out = tmp_path / "metrics.json"
    code, stdout, _ = run([bench, fakes / "fakes.jsonl", "--model", tiny_model_dir, "-o", out], capsys)
    assert code == 0
    result = json.loads(out.read_text())
    assert list(result) == ["bench", "bench/mj", "bench/sd", "fakes"]
    sd, mj, everything, fake_only = result["bench/sd"], result["bench/mj"], result["bench"], result["fakes"]
    assert (sd["accuracy"], sd["real_accuracy"], sd["fake_accuracy"]) == (0.5, 0.5, 0.5)
    assert sd["roc_auc"] == pytest.approx(0.75)  # pairs: 3 of 4 ranked right
    assert sd["average_precision"] == pytest.approx(5 / 6)  # fakes at ranks 1 and 3: (1 + 2/3) / 2
    assert (mj["accuracy"], mj["roc_auc"], mj["average_precision"]) == (1.0, 1.0, 1.0)
    assert everything["accuracy"] == 0.75 and everything["n_real"] == 4 and everything["n_fake"] == 4
    assert everything["roc_auc"] == pytest.approx(15 / 16)  # only 0.4 (fake) < 0.6 (real) is misordered
    assert everything["average_precision"] == pytest.approx((1 + 1 + 1 + 4 / 5) / 4)
    # Best threshold: sd right 3 of 4 at 0.4 (the real 0.6 wrong) and at 0.7 (the fake 0.4 wrong), 0.4
    # nearer 0.5; mj all right at 0.8; everything 7 of 8 at 0.4 (only the real 0.6 wrong) or 0.7.
    assert (sd["best_accuracy"], sd["best_threshold"]) == (0.75, 0.4)
    assert (mj["best_accuracy"], mj["best_threshold"]) == (1.0, 0.8)
    assert (everything["best_accuracy"], everything["best_threshold"]) == (7 / 8, 0.4)
    # Fake-only: what is defined is reported, the rest is null, nothing crashes.
    assert fake_only == {
        "accuracy": 0.5, "real_accuracy": None, "fake_accuracy": 0.5, "average_precision": None,
        "roc_auc": None, "best_accuracy": None, "best_threshold": None, "n_real": 0, "n_fake": 2, "n_failed": 0,
    }  # fmt: skip
    # The printed table holds the same numbers.
    table = {line.split()[0]: line.split() for line in stdout.splitlines()[2:]}
    assert table["bench/sd"][1:] == ["2", "2", "0.5000", "0.5000", "0.5000", "0.8333", "0.7500", "0.7500", "0"]
    assert table["fakes"][1:] == ["0", "2", "0.5000", "n/a", "0.5000", "n/a", "n/a", "n/a", "0"]


def test_failed_images_are_left_out_and_counted(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "data"
    for label in ("real", "fake"):
        (data / label).mkdir(parents=True)
        for i in range(2):
            noise(16, 16, seed=i).save(data / label / f"{i}.png")
    (data / "fake" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "m.json"
    code, _, err = run([data, "--model", tiny_model_dir, "-o", out], capsys)
    assert code == 1
    assert "broken.png" in err and "truncated or corrupt" in err
    metrics = json.loads(out.read_text())["data"]
    assert (metrics["n_real"], metrics["n_fake"], metrics["n_failed"]) == (2, 2, 1)


# ---------------------------------------------------------------------------------------- perturbations and report
def test_perturbation_specs():
    parsed = parse_perturbations(["jpeg:95,75,50", "resize:0.5", "blur:1.0", "JPEG:95"])
    assert [p.name for p in parsed] == ["jpeg:95", "jpeg:75", "jpeg:50", "resize:0.5", "blur:1.0"]
    for bad in ("jpeg:", "jpeg:0", "jpeg:101", "jpeg:7.5", "resize:0", "resize:-1", "blur:x", "noise:3", "blur:-1"):
        with pytest.raises(ValueError):
            parse_perturbations([bad])


def test_perturbations_change_the_image_as_named():
    image = noise(40, 30, seed=7)
    small = Perturbation("resize", 0.5)(image)
    assert small.size == (20, 15) and small.mode == "RGB"
    jpeg = np.asarray(Perturbation("jpeg", 50)(image), dtype=np.int16)
    assert jpeg.shape == (30, 40, 3) and np.abs(jpeg - np.asarray(image)).mean() > 5  # lossy
    blurred = np.asarray(Perturbation("blur", 2.0)(image), dtype=np.float64)
    assert blurred.std() < 0.5 * np.asarray(image, dtype=np.float64).std()  # noise smoothed away


def test_perturbed_sweep_and_report(tmp_path, tiny_model_dir, capsys):
    pytest.importorskip("matplotlib")
    data = tmp_path / "data"
    for label in ("real", "fake"):
        (data / label).mkdir(parents=True)
        for i in range(3):
            noise(24, 24, seed=i + (10 if label == "fake" else 0)).save(data / label / f"{i}.png")
    out, report, per_image = tmp_path / "m.json", tmp_path / "report", tmp_path / "scores.jsonl"
    # DATA after --perturb's specs is still DATA.
    argv = ["--model", tiny_model_dir, "-o", out, "--report", report, "--scores", per_image,
            "--batch-size", "4", "--perturb", "jpeg:90,50", "resize:0.5", "blur:1.0", data]  # fmt: skip
    code, stdout, _ = run(argv, capsys)
    assert code == 0
    result = json.loads(out.read_text())
    assert list(result["perturbations"]) == ["jpeg:90", "jpeg:50", "resize:0.5", "blur:1.0"]
    assert all(m["data"]["n_real"] == 3 and m["data"]["n_fake"] == 3 for m in result["perturbations"].values())
    assert "data [jpeg:50]" in stdout

    # The metrics are those of the per-image scores written alongside.
    rows = [json.loads(line) for line in per_image.read_text().splitlines()]
    assert len(rows) == 6 * 5
    clean = [r for r in rows if r["perturbation"] is None]
    assert result["data"] == {**binary_metrics([r["label"] for r in clean], [r["score"] for r in clean]), "n_failed": 0}
    blurred = {r["path"]: r["score"] for r in rows if r["perturbation"] == "blur:1.0"}
    assert any(abs(blurred[r["path"]] - r["score"]) > 1e-6 for r in clean)  # the perturbation reached the model

    markdown = (report / "metrics.md").read_text()
    assert "| dataset |" in markdown and "| data [resize:0.5] |" in markdown
    for name in ("roc.png", "scores.png"):
        with Image.open(report / name) as plot:
            assert plot.format == "PNG" and plot.width > 200 and plot.height > 200
    assert json.loads((report / "metrics.json").read_text()) == result


def test_report_without_matplotlib_fails_before_scoring(tmp_path, tiny_model_dir, capsys, monkeypatch):
    data = tmp_path / "data" / "fake"
    data.mkdir(parents=True)
    noise(16, 16).save(data / "a.png")
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import fails
    seen = fixed_scores(monkeypatch, {})
    code, _, err = run([data.parent, "--model", tiny_model_dir, "--report", tmp_path / "r"], capsys)
    assert code == 2 and "pip install matplotlib" in err
    assert seen == [] and not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------- usage errors
def test_usage_errors_exit_2(tmp_path, tiny_model_dir, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text("[{not json")
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    noise(16, 16).save(unlabelled / "x.png")
    labelled = tmp_path / "ok" / "real"
    labelled.mkdir(parents=True)
    noise(16, 16).save(labelled / "x.png")
    cases = [
        ([broken, "--model", tiny_model_dir], "not valid JSON"),
        ([tmp_path / "missing", "--model", tiny_model_dir], "no such file"),
        ([unlabelled, "--model", tiny_model_dir], "no labelled samples"),
        ([labelled.parent, "--model", tmp_path / "no-model"], "no such model folder"),
        ([labelled.parent, "--model", tiny_model_dir, "--perturb", "jpeg:200"], "JPEG quality"),
        ([labelled.parent, "--model", tiny_model_dir, "--threshold", "-1"], "--threshold"),
    ]
    for argv, message in cases:
        code, _, err = run(argv, capsys)
        assert code == 2, argv
        assert message in err, (argv, err)
    code, _, err = run(["--model", tiny_model_dir, "--perturb", "jpeg:90"], capsys)
    assert code == 2 and "no DATA given" in err
