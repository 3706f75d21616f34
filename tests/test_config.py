"""DeepVRMConfig: presets, validation, serialisation, the official config."""

from __future__ import annotations

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoConfig, Qwen2_5_VLConfig

from deepvrm import DeepVRMConfig, DeepVRMForConditionalGeneration

from deepvrm.configuration import preset_config
from deepvrm.configuration import preset_names


def test_presets_exist_and_build():
    assert {"tiny", "small", "qwen2.5-vl-3b", "qwen2.5-vl-7b"} <= set(preset_names())
    tiny = preset_config("tiny")
    assert tiny.model_type == "deepvrm" and tiny.id2label == {0: "real", 1: "fake"}
    assert tiny.has_prompt_ids and len(tiny.answer_token_ids) == 2


@pytest.mark.parametrize(
    "preset, total, low_level",
    [
        # Qwen2.5-VL-7B-Instruct has 8,292,166,656 parameters; Deep-VRM adds a second vision tower.
        ("qwen2.5-vl-7b", 8_968_716_800, 676_550_144),
        # Qwen2.5-VL-3B-Instruct: 3,754,622,976 (tied embeddings) + its vision tower.
        ("qwen2.5-vl-3b", 3_754_622_976 + 668_684_288, 668_684_288),
    ],
)
def test_full_size_presets_have_exact_parameter_counts(preset, total, low_level):
    config = preset_config(preset)
    with torch.device("meta"):
        model = DeepVRMForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) == total
    assert sum(p.numel() for p in model.model.visual_low_level.parameters()) == low_level
    assert config.injection_layer == (16 if preset.endswith("7b") else 20)


@pytest.mark.parametrize("layer", [0, 4, 17, -1])
def test_injection_layer_out_of_range_is_refused(layer):
    with pytest.raises(StrictDataclassClassValidationError, match="injection_layer must be an integer in 1..3"):
        preset_config("tiny", injection_layer=layer)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"fusion": "concat"}, "fusion must be one of"),
        ({"answer_token_ids": [5, 5]}, "one distinct token id per label"),
        ({"answer_token_ids": [5, 99999]}, "answer_token_ids must lie in"),
        ({"id2label": {0: "real", 1: "fake", 2: "maybe"}}, "exactly two labels"),
        ({"min_pixels": 100}, "min_pixels"),
        ({"prompt_suffix_ids": None}, "set together"),
    ],
)
def test_invalid_fields_give_clear_errors(overrides, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        preset_config("tiny", **overrides)


def test_sub_config_overrides_merge_into_the_preset():
    config = preset_config("tiny", text_config={"num_hidden_layers": 6}, injection_layer=5)
    assert config.text_config.num_hidden_layers == 6 and config.text_config.hidden_size == 64


def test_save_and_reload_round_trip(tmp_path):
    config = preset_config("tiny", fusion="gated", injection_layer=3)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, DeepVRMConfig)
    for field in ("injection_layer", "fusion", "prompt", "answer_token_ids", "prompt_prefix_ids", "min_pixels"):
        assert getattr(loaded, field) == getattr(config, field), field
    assert loaded.id2label == {0: "real", 1: "fake"} and loaded.label2id == {"real": 0, "fake": 1}
    assert loaded.auto_map["AutoModelForImageClassification"].endswith("DeepVRMForImageClassification")


def test_plain_qwen_config_is_read_with_the_official_settings(tmp_path):
    qwen = Qwen2_5_VLConfig(**{k: v for k, v in preset_config("qwen2.5-vl-7b").to_dict().items()
                              if k in ("text_config", "vision_config")})
    qwen.save_pretrained(tmp_path)
    config = DeepVRMConfig.from_pretrained(tmp_path)
    assert config.model_type == "deepvrm" and config.injection_layer == 16 and config.fusion == "mean"
    assert config.text_config.hidden_size == 3584
    wrapped = DeepVRMConfig.from_qwen2_5_vl_config(qwen, fusion="gated")
    assert wrapped.fusion == "gated" and wrapped.injection_layer == 16


def test_default_config_is_the_papers_7b_model():
    config = DeepVRMConfig()
    assert config.text_config.hidden_size == 3584 and config.text_config.num_hidden_layers == 28
    assert config.vision_config.out_hidden_size == 3584 and config.injection_layer == 16
