"""Loading the official release's layout: config `qwen2_5_vl` (nothing says Deep-VRM) and weights
under transformers 4.5x's legacy names; also the new names; missing weights fail loudly."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import random_image
from safetensors.torch import save_file

from deepvrm import (
    DeepVRMConfig,
    DeepVRMForConditionalGeneration,
    DeepVRMForImageClassification,
    DeepVRMModel,
    MissingWeightsError,
)
from deepvrm.cli.convert import main as convert_main
from deepvrm.configuration.init_model import build_processor
from deepvrm.configuration import preset_config

# A Qwen2.5-VL-shaped model with the 7B's depth (28 layers), so the official hard-coded
# injection layer 16 applies, but tiny widths.
SHAPE = {"text_config": {"num_hidden_layers": 28, "max_window_layers": 28}}


def _official_config_json(config: DeepVRMConfig) -> dict:
    """config.json as the official release has it: flat text fields, mrope rope_scaling, qwen2_5_vl type."""
    text = config.text_config.to_dict()
    flat = {k: text[k] for k in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "use_sliding_window",
        "sliding_window", "max_window_layers", "bos_token_id", "eos_token_id", "attention_dropout", "initializer_range",
    )}
    vision = {k: v for k, v in config.vision_config.to_dict().items() if k not in ("transformers_version", "dtype")}
    vision["model_type"] = "qwen2_5_vl"  # as old checkpoints wrote it
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        **flat,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": config.text_config.rope_parameters["mrope_section"]},
        "vision_config": vision,
        "image_token_id": config.image_token_id,
        "video_token_id": config.video_token_id,
        "vision_start_token_id": config.vision_start_token_id,
        "vision_end_token_id": config.vision_end_token_id,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.57.1",
    }


def _legacy_name(key: str) -> str:
    for new, old in (("model.visual.", "visual."), ("model.visual_low_level.", "visual_low_level."),
                     ("model.language_model.", "model.")):
        if key.startswith(new):
            return old + key[len(new):]
    return key


@pytest.fixture(scope="module")
def reference_model():
    torch.manual_seed(0)
    config = preset_config("tiny", injection_layer=16, **SHAPE)
    model = DeepVRMForConditionalGeneration(config).eval()
    with torch.no_grad():  # towers differ, as after training
        for p in model.model.visual_low_level.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _write_official(model, folder, legacy=True, drop=(), tokenizer=True):
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not any(k.startswith(d) for d in drop)}
    if legacy:
        state = {_legacy_name(k): v for k, v in state.items()}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(_official_config_json(model.config)))
    if tokenizer:
        build_processor(model.config).tokenizer.save_pretrained(folder)
    return folder


def _inputs(model):
    processor = build_processor(model.config)
    images = [random_image(112, 112, seed=1), random_image(64, 160, seed=2)]
    return processor.detection_inputs(images)


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-names", "new-names"])
def test_official_layout_loads_as_deepvrm_with_same_logits(reference_model, tmp_path, legacy):
    folder = _write_official(reference_model, tmp_path / "official", legacy=legacy)
    if legacy:
        with open(folder / "model.safetensors", "rb"):
            pass
        from safetensors import safe_open

        keys = list(safe_open(str(folder / "model.safetensors"), "pt").keys())
        assert any(k.startswith("visual_low_level.") for k in keys) and any(k.startswith("model.layers.") for k in keys)
    model = DeepVRMForConditionalGeneration.from_pretrained(folder).eval()
    assert model.config.model_type == "deepvrm"
    assert model.config.injection_layer == 16 and model.config.fusion == "mean"
    for (name, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(reference_model.state_dict().items())):
        assert torch.equal(a, b), name
    inputs = _inputs(model)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reference_model(**inputs).logits)


def test_all_three_classes_load_the_official_layout(reference_model, tmp_path):
    folder = _write_official(reference_model, tmp_path / "official")
    inputs = _inputs(reference_model)
    base = DeepVRMModel.from_pretrained(folder).eval()
    classifier = DeepVRMForImageClassification.from_pretrained(folder).eval()
    # Prompt ids were taken from the folder's tokenizer, as config.json has none.
    assert classifier.config.prompt_prefix_ids == reference_model.config.prompt_prefix_ids
    with torch.no_grad():
        hidden = reference_model.model(**inputs).last_hidden_state
        assert torch.equal(base(**inputs).last_hidden_state, hidden)
        pixel = {k: inputs[k] for k in ("pixel_values", "image_grid_thw")}
        chat = reference_model(**inputs).logits[:, -1, reference_model.config.answer_token_ids]
        assert torch.allclose(classifier(**pixel).logits, chat, atol=1e-5)


def test_missing_low_level_tower_fails_loudly(reference_model, tmp_path):
    folder = _write_official(reference_model, tmp_path / "plain", drop=("model.visual_low_level.",))
    with pytest.raises(MissingWeightsError, match="visual_low_level.*from_base_model"):
        DeepVRMForConditionalGeneration.from_pretrained(folder)


def test_any_missing_weight_fails_loudly(reference_model, tmp_path):
    folder = _write_official(reference_model, tmp_path / "broken", drop=("model.language_model.layers.20.mlp.",))
    with pytest.raises(MissingWeightsError, match=r"layers\.20\.mlp"):
        DeepVRMForImageClassification.from_pretrained(folder)


def test_classification_without_prompt_ids_explains_what_to_do(reference_model, tmp_path):
    folder = _write_official(reference_model, tmp_path / "no-tokenizer", tokenizer=False)
    classifier = DeepVRMForImageClassification.from_pretrained(folder)
    pixel = {k: v for k, v in _inputs(reference_model).items() if k in ("pixel_values", "image_grid_thw")}
    with pytest.raises(ValueError, match="prompt token ids"):
        classifier(**pixel)


def test_convert_writes_a_native_folder(reference_model, tmp_path):
    folder = _write_official(reference_model, tmp_path / "official")
    assert convert_main([str(folder), str(tmp_path / "native")]) == 0
    config = json.loads((tmp_path / "native" / "config.json").read_text())
    assert config["model_type"] == "deepvrm" and config["injection_layer"] == 16 and config["fusion"] == "mean"
    from transformers import AutoModelForImageClassification

    native = AutoModelForImageClassification.from_pretrained(tmp_path / "native").eval()
    pixel = {k: v for k, v in _inputs(reference_model).items() if k in ("pixel_values", "image_grid_thw")}
    with torch.no_grad():
        expected = reference_model(**_inputs(reference_model)).logits[:, -1, reference_model.config.answer_token_ids]
        assert torch.allclose(native(**pixel).logits, expected, atol=1e-5)


def test_convert_reports_a_missing_source(tmp_path, capsys):
    assert convert_main([str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "nope" in capsys.readouterr().err


def test_save_pretrained_writes_the_official_key_names(tiny_model_dir):
    """Our folders use the official layout on disk, so the official code can load them too."""
    from safetensors import safe_open

    keys = list(safe_open(str(tiny_model_dir / "model.safetensors"), "pt").keys())
    prefixes = {".".join(k.split(".")[:2]) if k.startswith("model.") else k.split(".")[0] for k in keys}
    assert prefixes == {"visual", "visual_low_level", "model.layers", "model.embed_tokens", "model.norm", "lm_head"}
