"""Shared vision tower: the low-level encoder as `visual` + LoRA deltas, exact both ways."""

from __future__ import annotations

import pytest
import torch
from conftest import random_image
from transformers import AutoModelForImageClassification

from deepvrm import DeepVRMConfig, DeepVRMForImageClassification

from deepvrm.configuration import preset_config
from deepvrm.shared_tower import lora_target_names


def _stage2_like_model(rank=4, seed=0):
    """A separate-tower model whose low-level tower is visual + rank-`rank` deltas, as stage 2 leaves it."""
    torch.manual_seed(seed)
    model = DeepVRMForImageClassification(preset_config("tiny")).eval()
    low = model.model.visual_low_level
    with torch.no_grad():
        for name in lora_target_names(low):
            weight = low.get_submodule(name).weight
            weight.add_(torch.randn(weight.shape[0], rank) @ torch.randn(rank, weight.shape[1]) * 0.05)
    return model


def _pixels(model):
    from deepvrm.configuration.init_model import build_processor

    images = [random_image(112, 112, seed=1), random_image(70, 150, seed=2)]
    return build_processor(model.config).image_processor(images, return_tensors="pt")


def test_shared_tower_gives_the_same_scores_with_fewer_parameters():
    model = _stage2_like_model()
    inputs = _pixels(model)
    with torch.no_grad():
        separate = model(**inputs).logits.softmax(-1)
    n_separate = sum(p.numel() for p in model.parameters())
    model.share_vision_tower()
    assert model.config.low_level_tower == "shared" and model.config.low_level_lora_rank == 4
    assert not hasattr(model.model, "visual_low_level")
    with torch.no_grad():
        shared = model(**inputs).logits.softmax(-1)
    assert (shared - separate).abs().max() < 1e-4
    tower = sum(p.numel() for p in model.model.visual.parameters())
    assert sum(p.numel() for p in model.parameters()) < n_separate - tower // 2


def test_merge_unmerge_round_trip_is_exact():
    model = _stage2_like_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.share_vision_tower().unshare_vision_tower()
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.allclose(before[key], after[key], atol=1e-6), key


def test_shared_folder_saves_and_loads(tmp_path):
    model = _stage2_like_model().share_vision_tower()
    inputs = _pixels(model)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.low_level_tower == "shared"
    assert any(k.startswith("model.visual_low_level_lora.") for k in loaded.state_dict())
    with torch.no_grad():
        assert torch.allclose(loaded(**inputs).logits, model(**inputs).logits, atol=1e-6)


def test_towers_that_differ_outside_the_lora_targets_are_refused():
    model = _stage2_like_model()
    with torch.no_grad():
        model.model.visual_low_level.blocks[0].norm1.weight.add_(0.1)
    with pytest.raises(ValueError, match="blocks.0.norm1.weight"):
        model.share_vision_tower()
    assert model.config.low_level_tower == "separate"  # nothing changed


def test_fresh_shared_model_is_an_exact_copy_and_trains_its_deltas():
    torch.manual_seed(0)
    separate = DeepVRMForImageClassification(preset_config("tiny")).eval()
    torch.manual_seed(0)
    shared = DeepVRMForImageClassification(
        preset_config("tiny", low_level_tower="shared", low_level_lora_rank=8)).eval()
    shared.load_state_dict({k: v for k, v in separate.state_dict().items() if "visual_low_level" not in k}, strict=False)
    inputs = _pixels(separate)
    with torch.no_grad():
        assert torch.allclose(shared(**inputs).logits, separate(**inputs).logits, atol=1e-5)
    shared.train()
    shared(**inputs, labels=torch.tensor([0, 1])).loss.backward()
    delta = shared.model.visual_low_level_lora.get_submodule("blocks.0.attn.qkv")
    assert delta.lora_B.grad.abs().sum() > 0
