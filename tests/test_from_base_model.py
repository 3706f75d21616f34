"""Building a Deep-VRM from a plain Qwen2.5-VL model, and a gated Deep-VRM from a checkpoint without
a gate: both start out computing exactly what the base model computes."""

from __future__ import annotations

import pytest
import torch
from conftest import random_image
from transformers import (
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForImageTextToText,
    AutoProcessor,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)

from _reference import DEEPVRM_ONLY
from deepvrm import DeepVRMConfig, DeepVRMForConditionalGeneration, DeepVRMForImageClassification, DeepVRMModel
from deepvrm.configuration import preset_config
from deepvrm.configuration.init_model import build_processor


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(3)
    tiny = preset_config("tiny")
    config = Qwen2_5_VLConfig(**{k: v for k, v in tiny.to_dict().items() if k not in DEEPVRM_ONLY})
    return Qwen2_5_VLForConditionalGeneration(config).eval(), tiny


def test_low_level_encoder_is_an_exact_copy_of_the_vision_tower(base):
    qwen, _ = base
    model = DeepVRMForConditionalGeneration.from_base_model(qwen, injection_layer=2)
    visual = dict(model.model.visual.named_parameters())
    low = dict(model.model.visual_low_level.named_parameters())
    assert visual.keys() == low.keys()
    for name in visual:
        assert torch.equal(visual[name], low[name]), name
        assert visual[name].data_ptr() != low[name].data_ptr(), "the copy must not share storage"
    for name, buffer in model.named_buffers():
        assert buffer.device.type != "meta", name
    for name, tensor in qwen.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_gated_model_from_base_computes_what_the_base_computes(base, tmp_path):
    qwen, tiny = base
    model = DeepVRMForConditionalGeneration.from_base_model(qwen, injection_layer=2, fusion="gated")
    model.config.update({k: getattr(tiny, k) for k in ("prompt_prefix_ids", "prompt_suffix_ids", "answer_token_ids")})
    processor = build_processor(tiny)
    inputs = processor.detection_inputs([random_image(112, 112), random_image(80, 140, seed=1)])
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, qwen(**inputs).logits, atol=1e-5)
        # Mean fusion of two identical towers is not the identity: h is averaged with r.
        mean = DeepVRMForConditionalGeneration.from_base_model(qwen, injection_layer=2)
        assert (mean(**inputs).logits - qwen(**inputs).logits).abs().max() > 1e-4


def test_default_injection_layer_keeps_the_papers_relative_depth(base):
    qwen, _ = base
    model = DeepVRMForImageClassification.from_base_model(qwen)
    assert model.config.injection_layer == round(4 * 16 / 28)


def test_from_base_model_accepts_a_folder(base, tmp_path):
    qwen, tiny = base
    qwen.save_pretrained(tmp_path / "qwen")
    build_processor(tiny).tokenizer.save_pretrained(tmp_path / "qwen")
    model = DeepVRMForImageClassification.from_base_model(str(tmp_path / "qwen"), injection_layer=1)
    assert model.config.injection_layer == 1
    assert model.config.prompt_prefix_ids == tiny.prompt_prefix_ids  # from the folder's tokenizer
    assert torch.equal(model.model.visual_low_level.merger.mlp[0].weight, qwen.model.visual.merger.mlp[0].weight)


# ------------------------------------------------------------------ a mean checkpoint loaded as gated
def _stock_from_folder(folder):
    """Stock Qwen2.5-VL holding a Deep-VRM folder's base weights (its low-level tower left unused)."""
    config = DeepVRMConfig.from_pretrained(folder)
    stock = Qwen2_5_VLConfig(**{k: v for k, v in config.to_dict().items() if k not in DEEPVRM_ONLY})
    model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, config=stock, output_loading_info=True)
    assert not info["missing_keys"]
    return model.eval()


GATED_LOADERS = {
    "DeepVRMForConditionalGeneration": lambda path: DeepVRMForConditionalGeneration.from_pretrained(path, fusion="gated"),
    "DeepVRMForImageClassification": lambda path: DeepVRMForImageClassification.from_pretrained(path, fusion="gated"),
    "AutoModelForImageTextToText": lambda path: AutoModelForImageTextToText.from_pretrained(path, fusion="gated"),
    "AutoModelForImageClassification": lambda path: AutoModelForImageClassification.from_pretrained(path, fusion="gated"),
    "AutoModel": lambda path: AutoModel.from_pretrained(path, fusion="gated"),
}


@pytest.mark.parametrize("loader", GATED_LOADERS)
def test_mean_checkpoint_loaded_as_gated_starts_as_its_base_model(tiny_model_dir, loader):
    """The checkpoint has no gate; loaded as gated, the gate starts at exactly zero (h + 0 * r = h), so
    the model computes what stock Qwen2.5-VL computes with the same weights, not what the memory the
    loader allocated for the gate happened to hold (it used to hold garbage: inf/NaN logits)."""
    model = GATED_LOADERS[loader](tiny_model_dir).eval()
    assert model.config.fusion == "gated" and model.config.injection_layer == 2
    gates = [p for n, p in model.named_parameters() if n.endswith("fusion.gate")]
    assert len(gates) == 1 and torch.count_nonzero(gates[0]) == 0
    stock = _stock_from_folder(tiny_model_dir)
    inputs = AutoProcessor.from_pretrained(tiny_model_dir).detection_inputs([random_image(112, 112), random_image(80, 140, seed=1)])
    with torch.no_grad():
        if isinstance(model, DeepVRMForImageClassification):
            got = model(pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"]).logits
            expected = stock(**inputs).logits[:, -1, model.config.answer_token_ids]
        elif isinstance(model, DeepVRMModel):
            got, expected = model(**inputs).last_hidden_state, stock.model(**inputs).last_hidden_state
        else:
            got, expected = model(**inputs).logits, stock(**inputs).logits
            # The checkpoint's own (mean) fusion does change them: the comparison can see an injection.
            mean = DeepVRMForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
            assert (mean(**inputs).logits - expected).abs().max() > 1e-4
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
