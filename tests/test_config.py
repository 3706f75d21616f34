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


@pytest.mark.parametrize(
    "preset, stock, low_level",
    [
        # The stock model's parameters (the backbone's transformers class on the meta device), see
        # configuration/presets.py for the sources; Deep-VRM adds a copy of the vision tower.
        ("qwen3-vl-2b", 2_127_532_032, 406_957_056),  # Hub: 2.13B
        ("qwen3-vl-4b", 4_437_815_808, 415_347_712),  # Hub: 4.44B
        ("qwen3-vl-8b", 8_767_123_696, 576_388_336),  # Hub: 8.77B
        ("qwen3.5-0.8b", 852_985_920, 100_592_896),  # without the checkpoint's MTP head (unused by transformers)
        ("qwen3.5-2b", 2_213_241_664, 331_416_576),
        ("qwen3.5-4b", 4_539_265_536, 333_514_240),
        ("qwen3.5-9b", 9_409_813_744, 456_010_480),  # language model alone 8,953,803,264 (llama.cpp: 8.95B)
    ],
)
def test_backbone_presets_have_exact_parameter_counts(preset, stock, low_level):
    import deepvrm

    config = preset_config(preset)
    backbone = {"qwen3-vl": "qwen3_vl", "qwen3.5": "qwen3_5"}[preset.rsplit("-", 1)[0]]
    assert config.backbone == backbone and config.model_type == f"deepvrm_{backbone}"
    with torch.device("meta"):
        model = deepvrm.deepvrm_class(backbone, "generation")(config)
        stock_class = deepvrm.deepvrm_class(backbone, "stock")
        base = stock_class(stock_class.config_class(**{k: v for k, v in config.to_dict().items() if k not in ("model_type", "auto_map")}))
    assert sum(p.numel() for p in base.parameters()) == stock
    assert sum(p.numel() for p in model.model.visual_low_level.parameters()) == low_level
    assert sum(p.numel() for p in model.parameters()) == stock + low_level
    if preset == "qwen3.5-9b":
        assert sum(p.numel() for p in base.model.language_model.parameters()) + base.lm_head.weight.numel() == 8_953_803_264
    layers = config.text_config.num_hidden_layers
    assert config.injection_layer == round(layers * 16 / 28)  # the paper's relative depth
    assert config.system_prompt is None  # Qwen3-VL's and Qwen3.5's templates have no default system turn
    assert config.vision_config.patch_size == 16


@pytest.mark.parametrize("preset", ["tiny-qwen3-vl", "tiny-qwen3.5"])
def test_tiny_backbone_presets_carry_their_prompt_ids_and_tokens(preset):
    from deepvrm.configuration.init_model import build_processor

    config = preset_config(preset)
    assert config.has_prompt_ids and len(config.answer_token_ids) == 2
    processor = build_processor(config)
    tokenizer = processor.tokenizer
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == config.image_token_id
    assert tokenizer.convert_tokens_to_ids("</think>") == 15
    prefix = tokenizer.decode(config.prompt_prefix_ids)
    suffix = tokenizer.decode(config.prompt_suffix_ids)
    assert prefix.startswith("<|im_start|>user\n") and "system" not in prefix
    assert suffix.endswith("<|im_start|>assistant\n" + ("<think>\n\n</think>\n\n" if preset == "tiny-qwen3.5" else ""))
    # The prompt with an answer is the prompt, then the answer as the one token that is scored.
    image = __import__("conftest").random_image(64, 64)
    prompt = processor.detection_inputs([image])["input_ids"][0].tolist()
    answered = processor.detection_inputs([image], answers=["fake"])["input_ids"][0].tolist()
    assert answered[: len(prompt)] == prompt and answered[len(prompt)] == config.answer_token_ids[1]
