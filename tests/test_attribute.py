"""`deepvrm attribute`: the attribution moves to the artifact path when only the low-level encoder
is trained on an artifact task, and per-token maps point at where the artifact sits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepvrm import DeepVRMConfig, DeepVRMForImageClassification

from deepvrm.configuration import preset_config
from deepvrm.analysis import synthetic
from deepvrm.analysis._common import AnalysisModel
from deepvrm.analysis.attribute import attribution_row, three_way_logodds, token_map
from deepvrm.cli import main as cli_main
from deepvrm.configuration.init_model import build_processor

TOP_RIGHT = (0.0, 0.5, 0.5, 1.0)


def _analysis_model(model, processor) -> AnalysisModel:
    config = model.config
    return AnalysisModel(
        model=model.model.eval(), kind="deepvrm", config=config, image_processor=processor.image_processor,
        prefix_ids=list(config.prompt_prefix_ids), suffix_ids=list(config.prompt_suffix_ids),
        pad_id=config.text_config.pad_token_id,
        answer_rows=model.lm_head.weight[list(config.answer_token_ids)].detach(), source="in-memory",
    )


def _inputs(processor, images):
    inputs = processor.image_processor(images=[Image.fromarray(i) for i in images], return_tensors="pt")
    return inputs["pixel_values"], inputs["image_grid_thw"]


def _rows(z: dict) -> list[dict]:
    return [attribution_row({mode: z[mode][i] for mode in z}) for i in range(len(z["full"]))]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Deep-VRM before and after training only `visual_low_level` on checkerboard-vs-smooth."""
    torch.manual_seed(0)
    config = preset_config("tiny")
    model = DeepVRMForImageClassification(config)
    with torch.no_grad():
        # A random LM head's answer logits span only about +-1; a trained one's span much more.
        model.lm_head.weight[list(config.answer_token_ids)] *= 10
    processor = build_processor(config)
    train_images, train_labels = synthetic.make_pair_images(16, seed=0)
    eval_images, eval_labels = synthetic.make_pair_images(12, seed=1)
    eval_inputs = _inputs(processor, eval_images)
    before = three_way_logodds(_analysis_model(model, processor), *eval_inputs)
    with torch.no_grad():  # "full" is the classifier's own decision
        logits = model.eval()(pixel_values=eval_inputs[0], image_grid_thw=eval_inputs[1]).logits
    np.testing.assert_allclose(before["full"], (logits[:, 1] - logits[:, 0]).numpy(), atol=1e-5)

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trainable = list(model.model.visual_low_level.parameters())
    for parameter in trainable:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(trainable, lr=3e-3)
    pixel_values, grid = _inputs(processor, train_images)
    per_image = pixel_values.shape[0] // len(train_images)
    labels = torch.tensor(train_labels)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(12):
        batch = torch.randperm(len(train_images), generator=generator)[:16].tolist()
        patches = torch.cat([pixel_values[i * per_image : (i + 1) * per_image] for i in batch])
        loss = model(pixel_values=patches, image_grid_thw=grid[batch], labels=labels[batch]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    after = three_way_logodds(_analysis_model(model, processor), *eval_inputs)
    folder = tmp_path_factory.mktemp("attribute") / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return {"before": before, "after": after, "labels": np.array(eval_labels), "folder": folder}


def test_attribution_moves_to_the_artifact_path_when_only_the_low_level_encoder_is_trained(trained):
    before, after, labels = trained["before"], trained["after"], trained["labels"]
    fakes, reals = labels == 1, labels == 0
    # A fresh Deep-VRM's low-level tower is a copy of `visual`: the three passes are one and the same.
    np.testing.assert_allclose(before["no_residual"], before["full"], atol=1e-5)
    np.testing.assert_allclose(before["residual_only"], before["full"], atol=1e-5)
    assert all(row["artifact_share"] is None and row["artifact_evidence"] == pytest.approx(0, abs=1e-4) for row in _rows(before))
    assert np.mean((before["full"] >= 0) == fakes) <= 0.6  # the untrained model cannot tell them apart

    accuracy = {mode: float(np.mean((after[mode] >= 0) == fakes)) for mode in after}
    assert accuracy["full"] >= 0.9
    # Removing the residual path leaves exactly the untouched semantic model: the pre-training decision.
    np.testing.assert_allclose(after["no_residual"], before["full"], atol=1e-4)
    assert accuracy["no_residual"] <= 0.6
    assert accuracy["residual_only"] >= 0.9  # the low-level tower alone carries the decision

    rows = _rows(after)
    artifact = np.array([r["artifact_evidence"] for r in rows])
    semantic = np.array([r["semantic_evidence"] for r in rows])
    assert artifact[fakes].mean() > 1.0 and artifact[reals].mean() < -1.0  # it pushes each class its way
    assert np.abs(artifact[fakes]).mean() > np.abs(semantic[fakes]).mean()
    share = np.array([r["artifact_share"] for r in rows], dtype=float)
    assert np.nanmean(share[fakes]) > 0.6 and np.nanmean(share[reals]) > 0.6
    caught = [r for r, fake in zip(rows, fakes) if fake and r["prediction"] == "fake"]
    assert len(caught) >= 0.9 * fakes.sum()
    assert np.mean([r["decided_by"] == "artifact" for r in caught]) >= 0.8


def test_attribute_command_reports_per_generator_and_renders_token_maps(trained, tmp_path, capsys):
    data = tmp_path / "bench"
    synthetic.write_dataset(data / "checker", per_class=6, seed=5)
    synthetic.write_dataset(data / "clean", per_class=6, seed=6, amplitude=0)  # "fakes" with no artifact at all
    (data / "clean" / "fake" / "truncated.png").write_bytes((data / "clean" / "fake" / "0001.png").read_bytes()[:60])
    report = tmp_path / "report"
    code = cli_main(["attribute", "--model", str(trained["folder"]), "--data", str(data), "--report", str(report),
                     "--token-maps", "2", "--batch-size", "8"])
    assert code == 0
    out = capsys.readouterr().out
    assert "acc no residual" in out and "bench/checker" in out and "by artifacts" in out

    summary = json.loads((report / "attribution.json").read_text())
    assert summary["injection_layer"] == 2 and summary["fusion"] == "mean"
    groups = {g["group"]: g for g in summary["summary"]["groups"]}
    assert set(groups) == {"bench", "bench/checker", "bench/clean"}
    checker, clean = groups["bench/checker"], groups["bench/clean"]
    assert checker["n"] == 12 and checker["n_fake"] == 6 and clean["n_errors"] == 1 and clean["n"] == 12
    assert checker["accuracy"]["full"] >= 0.9 and checker["accuracy"]["no_residual"] <= 0.6
    assert checker["relies_on"] == "artifacts" and checker["fake"]["caught_by"]["artifact"] >= 0.8
    assert clean["fake"]["caught"] <= 1  # no artifact, no catch: the model only knows checkerboards

    images = [json.loads(line) for line in (report / "attribution_images.jsonl").read_text().splitlines()]
    assert len(images) == 25 and sum("error" in r for r in images) == 1
    assert {r["generator"] for r in images} == {"checker", "clean"}
    assert "| group |" in (report / "attribution.md").read_text()
    assert (report / "attribution.png").stat().st_size > 1000
    maps = json.loads((report / "token_maps.json").read_text())["maps"]
    assert len(maps) == 2 and all(m["grid"] == [4, 4] for m in maps)
    assert all(Path(m["png"]).stat().st_size > 1000 for m in maps)


def test_attribute_refuses_a_plain_qwen_checkpoint(tmp_path, capsys):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from _reference import DEEPVRM_ONLY

    tiny = preset_config("tiny")
    Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(**{k: v for k, v in tiny.to_dict().items() if k not in DEEPVRM_ONLY})
    ).save_pretrained(tmp_path / "qwen")
    data = synthetic.write_dataset(tmp_path / "data", per_class=1)
    assert cli_main(["attribute", "--model", str(tmp_path / "qwen"), "--data", str(data)]) == 2
    assert "plain Qwen2.5-VL" in capsys.readouterr().err


def test_token_map_points_at_the_image_region_whose_residual_differs():
    """Constructed, no training: the semantic tower is blind to checkerboards, the low-level tower
    differs from it only by a term proportional to the checkerboard content of each patch, and the
    vision towers use window attention only (a 2x2-token window = a quarter of a 112x112 image).
    So only the tokens of the checkerboard's quarter carry a residual that differs from the
    semantic embedding, and the map must light up there: top right, not (transposed) bottom left."""
    torch.manual_seed(0)
    config = preset_config("tiny", vision_config={"fullatt_block_indexes": []})
    model = DeepVRMForImageClassification(config).eval()
    processor = build_processor(config)
    grey = np.full((112, 112, 3), 128, np.uint8)
    board = np.clip(grey + synthetic.checkerboard(112), 0, 255).astype(np.uint8)
    pixels, _ = _inputs(processor, [grey, board])
    delta = pixels[64:] - pixels[:64]
    direction = delta[0] / delta[0].norm()
    with torch.no_grad():
        for tower in (model.model.visual, model.model.visual_low_level):
            flat = tower.patch_embed.proj.weight.view(tower.patch_embed.proj.weight.shape[0], -1)
            flat -= (flat @ direction)[:, None] * direction[None]
        low = model.model.visual_low_level.patch_embed.proj.weight.view(-1, direction.numel())
        low += 0.05 * torch.randn(low.shape[0], 1) * direction[None]  # about the size of the content's embedding
        model.lm_head.weight[list(config.answer_token_ids)] *= 10
    am = _analysis_model(model, processor)

    rng = np.random.default_rng(0)
    fake = np.clip(synthetic.smooth_image(rng) + synthetic.checkerboard(112, region=TOP_RIGHT), 0, 255).astype(np.uint8)
    real = synthetic.smooth_image(rng)
    fake_pixels, grid = _inputs(processor, [fake])
    values, _ = token_map(am, fake_pixels, grid, batch_size=5)
    assert values.shape == (4, 4)
    quarter = np.zeros((4, 4), bool)
    quarter[:2, 2:] = True
    assert np.abs(values[quarter]).mean() > 20 * np.abs(values[~quarter]).mean(), np.round(values, 4)

    real_pixels, grid = _inputs(processor, [real])
    values_real, _ = token_map(am, real_pixels, grid)
    assert np.abs(values_real).max() < 0.05 * np.abs(values[quarter]).mean()
