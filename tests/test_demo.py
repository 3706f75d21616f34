"""The demo: the shipped demo model and examples, the DCT patch-embedding initialisation it was
trained from, and the dataset builder's split and pairing rules (on synthetic rows; the real
packages are never downloaded here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "examples" / "demo-model"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"demo_{name}", REPO / "demo" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------- shipped model
def test_demo_model_is_small_and_safetensors_only():
    files = {p.name for p in DEMO_MODEL.iterdir()}
    weights = [p for p in DEMO_MODEL.glob("*.safetensors")]
    assert weights and not any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in files)
    assert sum(p.stat().st_size for p in weights) <= 20 * 1024 * 1024
    assert {"config.json", "processor_config.json", "tokenizer.json", "README.md"} <= files


def test_demo_model_card_reports_test_metrics_per_fake_source():
    record = json.loads((DEMO_MODEL / "demo_training.json").read_text())
    card = (DEMO_MODEL / "README.md").read_text()
    for source in ("test_comfyui", "test_autoencoder"):
        metrics = record["metrics"]["test"][source]
        assert metrics["n_real"] > 0 and metrics["n_fake"] > 0
        row = next(line for line in card.splitlines() if line.startswith(f"| {source} |"))
        assert f"{metrics['roc_auc']:.3f}" in row and f"{metrics['average_precision']:.3f}" in row
    assert "**What it is not:** a real-world detector" in card


def test_examples_score_as_recorded_when_the_demo_model_was_trained():
    """`deepvrm detect examples` with no --model uses the demo model, and loading + preprocessing
    give the P(fake) the training script recorded (a regression in either would change them)."""
    from deepvrm.cli.detect import main

    record = json.loads((DEMO_MODEL / "demo_training.json").read_text())
    expected = record["example_scores"]
    assert len(expected) >= 4
    out = REPO / ".pytest_cache" / "demo_examples.jsonl"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    assert main([str(REPO / "examples"), "--output", str(out), "--no-progress"]) == 0
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == set(expected)
    for name, score in expected.items():
        assert rows[name]["score"] == pytest.approx(score, abs=2e-3), name


def test_pipeline_loads_the_demo_model():
    import deepvrm  # noqa: F401
    from PIL import Image
    from transformers import pipeline

    detector = pipeline("image-classification", model=str(DEMO_MODEL))
    image = next(p for p in sorted((REPO / "examples").iterdir()) if p.suffix == ".png")
    result = detector(Image.open(image))
    assert {r["label"] for r in result} == {"real", "fake"}
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------------------------------- DCT initialisation
def test_dct_patch_filters_are_orthogonal_and_span_low_to_high_frequencies():
    from deepvrm.configuration.init_model import dct_patch_filters

    weight = dct_patch_filters(32, 3, 2, 14, seed=0)
    assert weight.shape == (32, 3, 2, 14, 14)
    assert torch.equal(weight[:, :, 0], weight[:, :, 1])  # the same filter in both temporal slices
    flat = weight.flatten(1)
    gram = flat @ flat.T
    assert torch.allclose(gram, torch.diag(torch.diagonal(gram)), atol=1e-10)  # distinct basis functions
    assert torch.allclose(torch.diagonal(gram), torch.full((32,), 0.5, dtype=gram.dtype))  # unit filters / 2 slices
    # the first filter is flat (DC), the last one alternates sign pixel to pixel (the highest frequency)
    spatial = weight[:, :, 0].abs().sum(1)
    assert torch.allclose(spatial[0], spatial[0, 0, 0].expand(14, 14))
    last = weight[-1, 0, 0]  # one colour channel (an opponent colour sums to zero)
    assert (last[:, 1:] * last[:, :-1] < 0).all() and (last[1:] * last[:-1] < 0).all()


def test_init_folder_with_dct_patch_embedding(tmp_path):
    from deepvrm import DeepVRMForConditionalGeneration
    from deepvrm.configuration.init_model import dct_patch_filters, init_model_folder, main

    path = init_model_folder("tiny", tmp_path / "dct", seed=0, patch_embedding="dct")
    model = DeepVRMForConditionalGeneration.from_pretrained(path)
    std = model.config.vision_config.initializer_range
    for tower in (model.model.visual, model.model.visual_low_level):
        weight = tower.patch_embed.proj.weight.detach().double()
        assert weight.std().item() == pytest.approx(std, rel=1e-4)
        reference = dct_patch_filters(*weight.shape[:3], weight.shape[-1], seed=0)
        assert torch.allclose(weight / weight.norm(), reference / reference.norm(), atol=1e-6)
    assert main(["--preset", "tiny", "--output", str(tmp_path / "cli"), "--patch-embedding", "dct"]) == 0
    with pytest.raises(ValueError, match="patch_embedding"):
        init_model_folder("tiny", tmp_path / "bad", patch_embedding="gabor")


# ---------------------------------------------------------------------------------------- dataset builder
def _original(build, id_, label, source="mate-backgrounds"):
    return build.Original(id=id_, source=source, label=label, package="p", version="1", member=id_, licence="x")


def test_splits_keep_every_original_whole_and_follow_the_fractions():
    build = _load_script("build_dataset")
    originals = [_original(build, f"r{i}", 0) for i in range(40)] + [_original(build, f"f{i}", 1, "comfyui") for i in range(60)]
    counts = {o.id: 1 + i % 5 for i, o in enumerate(originals)}
    build.assign_splits(originals, counts, seed=0)
    assert {o.split for o in originals} == {"train", "validation", "test"}
    for label in (0, 1):
        members = [o for o in originals if o.label == label]
        total = sum(counts[o.id] for o in members)
        test = sum(counts[o.id] for o in members if o.split == "test")
        assert build.TEST_FRACTION <= test / total <= build.TEST_FRACTION + 5 / total
    again = [_original(build, o.id, o.label, o.source) for o in originals]
    build.assign_splits(again, counts, seed=0)
    assert [o.split for o in again] == [o.split for o in originals]  # seeded


def test_training_file_keeps_each_real_next_to_its_reconstruction(tmp_path):
    build = _load_script("build_dataset")
    rows = []
    for i in range(6):
        rows.append({"path": f"train/real/r{i}.png", "label": 0, "source": "mate-backgrounds"})
        rows.append({"path": f"train/fake/autoencoder-r{i}.png", "label": 1, "source": "autoencoder",
                     "reconstruction_of": f"train/real/r{i}.png"})  # fmt: skip
    rows += [{"path": f"train/fake/c{i}.png", "label": 1, "source": "comfyui"} for i in range(5)]
    build.write_paired_json(tmp_path / "train.json", rows, seed=0)
    paths = [s["images"][0] for s in json.loads((tmp_path / "train.json").read_text())]
    assert sorted(paths) == sorted(r["path"] for r in rows)
    for start in range(0, len(paths) - 1, 2):  # every aligned pair of an even batch
        a, b = paths[start], paths[start + 1]
        if "real" in a or "real" in b:
            assert b == a.replace("real/", "fake/autoencoder-")
    reals = [i for i, p in enumerate(paths) if "/real/" in p]
    assert len(reals) == 6 and all(i % 2 == 0 for i in reals)  # the odd ComfyUI image shifted no pair


def test_auto_classes_and_pipeline_load_the_demo_model_in_float32_on_cpu():
    """The weights are bfloat16 files; the config asks for float32, so the Auto classes and the
    pipeline compute on a CPU as `deepvrm detect` does: the same P(fake), not one off in the third
    decimal."""
    import deepvrm  # noqa: F401
    from PIL import Image
    from transformers import AutoModelForImageClassification, pipeline

    from deepvrm.inference.detector import Detector

    assert AutoModelForImageClassification.from_pretrained(DEMO_MODEL).dtype == torch.float32
    detector = pipeline("image-classification", model=str(DEMO_MODEL), device="cpu")
    assert detector.model.dtype == torch.float32
    paths = sorted(p for p in (REPO / "examples").iterdir() if p.suffix == ".png")
    cli = Detector.from_pretrained(str(DEMO_MODEL), device="cpu")
    for path, score in zip(paths, cli.score_images([Image.open(p) for p in paths])):
        fake = next(r["score"] for r in detector(Image.open(path)) if r["label"] == "fake")
        assert fake == pytest.approx(float(score), abs=1e-5), path.name
