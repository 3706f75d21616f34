"""`deepvrm probe`: the layer-wise probe finds a signal planted at a known depth, and not before it.

The planted signal: fakes carry a faint period-2 checkerboard. The semantic tower is made exactly
blind to it (its patch embedding has the checkerboard direction projected out), while the
low-level tower (the unmodified copy) sees it and is injected at layer K. So no hidden state
before the injection holds any label information, and every state after it does: the probe must
be at chance for depths 0..K (depth K is the input of the injection layer, still un-fused) and
high from K+1 on. An off-by-one in the depth indexing moves the step and fails the test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from _reference import DEEPVRM_ONLY
from deepvrm import DeepVRMConfig, DeepVRMForImageClassification
from deepvrm.configuration import preset_config
from deepvrm.analysis import synthetic
from deepvrm.analysis._common import load_analysis_model
from deepvrm.cli.probe import main as probe_main
from deepvrm.analysis.probe import pooled_hidden_states, suggest_injection_layer
from deepvrm.cli import main as cli_main
from deepvrm.configuration.init_model import build_processor

NUM_LAYERS, K = 6, 3


def _checkerboard_direction(image_processor) -> torch.Tensor:
    """The unit vector a checkerboard adds to every flattened patch (the same in each patch)."""
    grey = np.full((112, 112, 3), 128, np.uint8)
    board = np.clip(grey + synthetic.checkerboard(112, 12.0), 0, 255).astype(np.uint8)
    pixels = image_processor(images=[Image.fromarray(grey), Image.fromarray(board)], return_tensors="pt")["pixel_values"]
    half = pixels.shape[0] // 2
    delta = pixels[half:] - pixels[:half]
    assert torch.allclose(delta, delta[:1].expand_as(delta), atol=1e-6)
    return delta[0] / delta[0].norm()


def _blind(tower, direction: torch.Tensor) -> None:
    """Make a vision tower's patch embedding (its only view of the pixels) ignore `direction`."""
    with torch.no_grad():
        weight = tower.patch_embed.proj.weight
        flat = weight.view(weight.shape[0], -1)
        flat -= (flat @ direction)[:, None] * direction[None]


def _write_striped(root, per_class: int, seed: int):
    """A set the semantic tower does see: fakes carry vertical stripes (period 14 px, no checkerboard)."""
    rng = np.random.default_rng(seed)
    stripes = (25 * np.cos(2 * np.pi * np.arange(112) / 14))[None, :, None]
    for name in ("real", "fake"):
        (root / name).mkdir(parents=True)
    for index in range(per_class):
        for label, name in ((0, "real"), (1, "fake")):
            image = synthetic.smooth_image(rng).astype(float)
            if label:
                image += stripes
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / name / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A Deep-VRM folder whose real/fake signal enters at layer K, and two datasets."""
    root = tmp_path_factory.mktemp("probe")
    torch.manual_seed(0)
    config = preset_config("tiny", injection_layer=K, text_config={"num_hidden_layers": NUM_LAYERS})
    model = DeepVRMForImageClassification(config).eval()
    processor = build_processor(config)
    _blind(model.model.visual, _checkerboard_direction(processor.image_processor))  # the low-level copy still sees it
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    artifact = synthetic.write_dataset(root / "data" / "checker", per_class=32, seed=1)
    striped = _write_striped(root / "data" / "striped", per_class=16, seed=2)
    return root / "model", artifact, striped, root


def test_probe_finds_the_planted_signal_at_its_depth_and_not_before(planted, capsys):
    model_dir, artifact, striped, root = planted
    report_dir = root / "report"
    code = cli_main(["probe", "--model", str(model_dir), "--data", f"artifact={artifact}", f"striped={striped}",
                     "--report", str(report_dir), "--batch-size", "16"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "Suggested injection layer" in stdout and "rule:" in stdout
    report = json.loads((report_dir / "probe.json").read_text())
    assert report["model_kind"] == "deepvrm" and report["num_layers"] == NUM_LAYERS and report["injection_layer"] == K
    by_name = {d["name"]: d for d in report["datasets"]}
    layers = by_name["artifact"]["layers"]
    assert [layer["layer"] for layer in layers] == list(range(NUM_LAYERS + 1))
    assert by_name["artifact"]["n_images"] == 64 and by_name["artifact"]["n_fake"] == 32
    for layer in layers:
        image, last = layer["image"]["accuracy"], layer["last"]["accuracy"]
        if layer["layer"] <= K:  # before the injection: the semantic tower cannot see the checkerboard
            assert layer["stage"] == "before injection"
            assert image <= 0.7 and last <= 0.7, layer
        else:
            assert layer["stage"] == "after injection"
            assert image >= 0.9 and last >= 0.85, layer
            assert layer["image"]["roc_auc"] >= 0.95, layer
    # The stripes are visible to the semantic tower: that signal is there from the embeddings on.
    assert by_name["striped"]["layers"][0]["image"]["accuracy"] >= 0.9
    # The suggestion comes from the first dataset's image-token curve: flat at chance, then up at K+1.
    suggestion = report["suggested_injection_layer"]
    assert suggestion["dataset"] == "artifact" and suggestion["layer"] == K + 1
    assert "stopped rising" in suggestion["rule"]
    markdown = (report_dir / "probe.md").read_text()
    assert "| layer | stage | image acc |" in markdown and "## striped" in markdown
    assert (report_dir / "probe.png").stat().st_size > 1000


def test_plain_qwen_checkpoint_gives_the_same_features_as_deepvrm_before_injection(planted, tmp_path, capsys):
    """A stock Qwen2.5-VL folder is probed as itself; a Deep-VRM built from it agrees up to depth K."""
    _, _, striped, _ = planted
    torch.manual_seed(3)
    tiny = preset_config("tiny")
    base = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(**{k: v for k, v in tiny.to_dict().items() if k not in DEEPVRM_ONLY})
    ).eval()
    base.save_pretrained(tmp_path / "qwen")
    processor = build_processor(tiny)
    processor.tokenizer.save_pretrained(tmp_path / "qwen")
    deepvrm = DeepVRMForImageClassification.from_base_model(str(tmp_path / "qwen"), injection_layer=2)
    deepvrm.save_pretrained(tmp_path / "deepvrm")
    processor.save_pretrained(tmp_path / "deepvrm")

    plain = load_analysis_model(str(tmp_path / "qwen"), torch.device("cpu"), torch.float32, pixels=112 * 112)
    ours = load_analysis_model(str(tmp_path / "deepvrm"), torch.device("cpu"), torch.float32)
    assert plain.kind == "qwen2_5_vl" and plain.injection_layer is None and ours.kind == "deepvrm"
    assert plain.prefix_ids == ours.prefix_ids and plain.suffix_ids == ours.suffix_ids
    images = [Image.fromarray(synthetic.smooth_image(np.random.default_rng(i))) for i in range(2)]
    images.append(images[0].resize((80, 140)))  # another grid: left padding in the batch
    inputs = ours.image_processor(images=images, return_tensors="pt")
    base_states = pooled_hidden_states(plain, inputs["pixel_values"], inputs["image_grid_thw"])
    our_states = pooled_hidden_states(ours, inputs["pixel_values"], inputs["image_grid_thw"])
    for depth in range(3):  # up to the injection layer's input
        for a, b in zip(base_states[depth], our_states[depth]):
            np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.abs(base_states[3][0] - our_states[3][0]).max() > 1e-4  # mean fusion changes what follows

    code = probe_main(["--model", str(tmp_path / "qwen"), "--data", str(striped), "--pixels", str(112 * 112),
                       "--max-images", "12", "--folds", "3", "--report", str(tmp_path / "report")])
    assert code == 0
    report = json.loads((tmp_path / "report" / "probe.json").read_text())
    assert report["model_kind"] == "qwen2_5_vl" and report["injection_layer"] is None
    dataset = report["datasets"][0]
    assert dataset["n_images"] == 12 and dataset["n_real"] == dataset["n_fake"] == 6 and dataset["folds"] == 3
    assert len(dataset["layers"]) == 5 and all(layer["stage"] == "" for layer in dataset["layers"])
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("layer "))
    assert "stage" not in header and "image acc" in header


def test_unreadable_images_are_reported_and_the_rest_is_probed(planted, tmp_path):
    model_dir, artifact, _, _ = planted
    data = tmp_path / "data"
    for name in ("real", "fake"):
        (data / name).mkdir(parents=True)
        for path in sorted((artifact / name).iterdir())[:4]:
            (data / name / path.name).write_bytes(path.read_bytes())
    (data / "fake" / "broken.png").write_bytes(b"not a png at all")
    (data / "real" / "empty.png").write_bytes(b"")
    code = probe_main(["--model", str(model_dir), "--data", str(data), "--folds", "2", "--report", str(tmp_path / "r")])
    assert code == 0
    dataset = json.loads((tmp_path / "r" / "probe.json").read_text())["datasets"][0]
    assert dataset["n_images"] == 8 and len(dataset["errors"]) == 2
    assert any("broken.png" in e for e in dataset["errors"]) and any("empty.png" in e for e in dataset["errors"])


@pytest.mark.parametrize(
    "curve, expected",
    [
        # rises until depth 16 of 28, then flat with small noise: inject at 16 (the paper's choice)
        ([0.5 + 0.4 * min(i, 16) / 16 + (0.004 if i % 2 else 0) for i in range(29)], 16),
        # flat at chance, then a step at depth 4: the curve stops rising at 4
        ([0.5, 0.5, 0.52, 0.49, 0.98, 0.985, 0.98], 4),
        # still rising at the last layer: the deepest valid injection layer
        ([0.5, 0.6, 0.7, 0.8, 0.9], 3),
        # already at its top from depth 1 on
        ([0.6, 0.95, 0.95, 0.95, 0.95], 1),
    ],
)
def test_suggested_injection_layer_rule(curve, expected):
    layer, tolerance = suggest_injection_layer(curve, [0.0] * len(curve), folds=5, tolerance=0.01)
    assert layer == expected and tolerance == 0.01


def test_suggestion_tolerance_grows_with_fold_noise():
    curve = [0.5, 0.7, 0.80, 0.835, 0.84]
    assert suggest_injection_layer(curve, [0.0] * 5, folds=4)[0] == 3
    # with a fold spread of 0.1 (standard error 0.05), 0.80 is within noise of the top
    assert suggest_injection_layer(curve, [0.1] * 5, folds=4) == (2, 0.05)
