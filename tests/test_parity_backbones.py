"""Qwen3-VL and Qwen3.5 Deep-VRM against an independent computation (tests/_reference_backbones.py):
stock modules of the backbone driven by hand with the paper's formula, at float32 round-off."""

from __future__ import annotations

import pytest
import torch
from _reference_backbones import reference_logits, stock_config_from, stock_models_from
from conftest import random_image
from transformers import AutoModelForImageClassification, AutoModelForImageTextToText, AutoProcessor

import deepvrm
from deepvrm import DeepVRMForConditionalGeneration, DeepVRMForImageClassification
from deepvrm.configuration import preset_config
from deepvrm.configuration.init_model import build_processor

TOL = 1e-4
PRESETS = ["tiny-qwen3-vl", "tiny-qwen3.5"]
GENERATION = {"tiny-qwen3-vl": deepvrm.DeepVRMQwen3VLForConditionalGeneration,
              "tiny-qwen3.5": deepvrm.DeepVRMQwen3_5ForConditionalGeneration}  # fmt: skip


def _stock(preset, seed=0):
    """A tiny random stock model of the preset's backbone (no Deep-VRM in it)."""
    torch.manual_seed(seed)
    _, model_class = {"tiny-qwen3-vl": ("qwen3_vl", deepvrm.deepvrm_class("qwen3_vl", "stock")),
                      "tiny-qwen3.5": ("qwen3_5", deepvrm.deepvrm_class("qwen3_5", "stock"))}[preset]  # fmt: skip
    return model_class(stock_config_from(preset_config(preset))).eval()


def _model(preset, fusion="mean", attn="eager", injection_layer=None, seed=0):
    """A Deep-VRM derived from a stock model, its low-level tower then changed (as after training)."""
    stock = _stock(preset, seed)
    stock.config._attn_implementation = attn
    model = DeepVRMForConditionalGeneration.from_base_model(stock, injection_layer=injection_layer, fusion=fusion)
    model.config.update({k: getattr(preset_config(preset), k) for k in ("prompt_prefix_ids", "prompt_suffix_ids", "answer_token_ids")})
    with torch.no_grad():
        for p in model.model.visual_low_level.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        if fusion == "gated":
            model.model.language_model.layers[model.config.injection_layer].fusion.gate.normal_()
    return model.eval()


def _inputs(model, sizes=((128, 128), (64, 200)), two_images_in_first=False, padding_side="left"):
    processor = build_processor(model.config)
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    texts = [processor.prompt + " <image>"] * len(images)
    if two_images_in_first:
        texts[0] = "Compare <image> and <image>. Which is fake?"
        images = [images[0], random_image(96, 160, seed=7)] + images[1:]
    return processor(images=images, text=texts, padding=True, padding_side=padding_side, return_tensors="pt")


def _expected(model, inputs):
    base, low = stock_models_from(model)
    config = model.config
    gate = None
    if config.fusion == "gated":
        gate = model.model.language_model.layers[config.injection_layer].fusion.gate.detach()
    return reference_logits(base, low, inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"],
                            inputs["image_grid_thw"], config.injection_layer, config.fusion, gate)  # fmt: skip


def _check(model, inputs, expected=None):
    expected = _expected(model, inputs) if expected is None else expected
    with torch.no_grad():
        got = model(**inputs).logits
    real = inputs["attention_mask"].bool()
    error = (got[real] - expected[real]).abs().max().item()
    assert error < TOL, error
    return error


@pytest.mark.parametrize("preset", PRESETS)
def test_from_base_model_gives_the_backbones_class_and_an_exact_copy_of_the_vision_tower(preset):
    stock = _stock(preset)
    model = DeepVRMForConditionalGeneration.from_base_model(stock)
    assert type(model) is GENERATION[preset]
    assert model.config.injection_layer == round(4 * 16 / 28)  # the paper's relative depth
    classifier = DeepVRMForImageClassification.from_base_model(stock, injection_layer=1)
    assert type(classifier).__name__.endswith("ForImageClassification") and classifier.config.backbone == model.config.backbone
    visual = dict(model.model.visual.named_parameters())
    low = dict(model.model.visual_low_level.named_parameters())
    assert visual.keys() == low.keys() and visual
    for name in visual:
        assert torch.equal(visual[name], low[name]), name
        assert visual[name].data_ptr() != low[name].data_ptr(), "the copy must not share storage"
    for name, tensor in stock.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


@pytest.mark.parametrize("preset", PRESETS)
def test_gated_model_from_base_computes_what_the_base_computes(preset):
    stock = _stock(preset)
    model = DeepVRMForConditionalGeneration.from_base_model(stock, fusion="gated").eval()
    inputs = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, stock(**inputs).logits, rtol=0, atol=1e-5)
        mean = DeepVRMForConditionalGeneration.from_base_model(stock).eval()
        assert (mean(**inputs).logits - stock(**inputs).logits).abs().max() > 1e-4  # an injection shows


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("fusion", ["mean", "add", "gated"])
def test_logits_match_independent_reference(preset, fusion):
    model = _model(preset, fusion)
    _check(model, _inputs(model))


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_padding_and_several_images_per_sample(preset, padding_side):
    model = _model(preset)
    inputs = _inputs(model, sizes=((128, 128), (64, 200), (200, 48)), two_images_in_first=True, padding_side=padding_side)
    assert inputs["attention_mask"].min() == 0 and len(inputs["image_grid_thw"]) == 4
    _check(model, inputs)


@pytest.mark.parametrize("preset", PRESETS)
def test_sdpa_matches_eager_reference(preset):
    model = _model(preset, attn="sdpa")
    assert model.config.text_config._attn_implementation == "sdpa"
    _check(model, _inputs(model, padding_side="left"))


def test_qwen3_5_injection_into_a_full_attention_layer():
    """Layers 0-2 of the tiny Qwen3.5 are linear attention, layer 3 full attention: both kinds inject."""
    model = _model("tiny-qwen3.5", injection_layer=3)
    assert model.config.text_config.layer_types[3] == "full_attention"
    assert model.config.text_config.layer_types[2] == "linear_attention"
    _check(model, _inputs(model))


def test_qwen3_vl_deepstack_comes_from_the_semantic_tower_only():
    """Changing the low-level tower's DeepStack mergers changes nothing (they are unused); changing its
    main merger does (its merged embeddings are what is fused)."""
    model = _model("tiny-qwen3-vl")
    inputs = _inputs(model)
    with torch.no_grad():
        before = model(**inputs).logits
        for p in model.model.visual_low_level.deepstack_merger_list.parameters():
            p.add_(1.0)
        assert torch.equal(model(**inputs).logits, before)
        model.model.visual_low_level.merger.linear_fc2.bias.add_(1.0)
        assert (model(**inputs).logits - before).abs().max() > 1e-3


@pytest.mark.parametrize("preset", ["tiny-qwen3-vl", pytest.param("tiny-qwen3.5", marks=pytest.mark.slow)])  # the
# uncached run recomputes Qwen3.5's linear attention in transformers' reference PyTorch kernels: ~10 s
def test_generation_with_kv_cache_matches_full_recompute(preset):
    """Prefill injects, cached decoding steps do not: greedy tokens and scores equal a no-cache run; the
    official call style (no mm_token_type_ids) gives the same."""
    model = _model(preset)
    inputs = _inputs(model)
    official = {k: v for k, v in inputs.items() if k != "mm_token_type_ids"}
    kwargs = dict(max_new_tokens=4, do_sample=False, output_scores=True, return_dict_in_generate=True)
    cached = model.generate(**official, use_cache=True, **kwargs)
    uncached = model.generate(**inputs, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.scores, uncached.scores):
        assert (a - b).abs().max() < TOL
    with torch.no_grad():
        forward = model(**inputs).logits[:, -1]
        assert (cached.scores[0] - forward).abs().max() < TOL
        assert (forward - _expected(model, inputs)[:, -1]).abs().max() < TOL


@pytest.mark.parametrize("preset", PRESETS)
def test_save_and_reload_through_the_auto_classes_match_the_reference(preset, tmp_path):
    model = _model(preset)
    inputs = _inputs(model)
    expected = _expected(model, inputs)
    model.save_pretrained(tmp_path)
    build_processor(model.config).save_pretrained(tmp_path)
    import json

    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == model.config.model_type and saved["auto_map"] == model.config.auto_map
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(model)
    _check(reloaded, inputs, expected)
    for loader in (AutoModelForImageClassification.from_pretrained, DeepVRMForImageClassification.from_pretrained):
        classifier = loader(tmp_path).eval()
        assert classifier.config.backbone == model.config.backbone
        processor = AutoProcessor.from_pretrained(tmp_path)
        image_inputs = processor.detection_inputs([random_image(128, 128), random_image(64, 200, seed=1)])
        with torch.no_grad():
            got = classifier(pixel_values=image_inputs["pixel_values"], image_grid_thw=image_inputs["image_grid_thw"]).logits
        chat = _expected(model, image_inputs)[:, -1, model.config.answer_token_ids]
        torch.testing.assert_close(got, chat, rtol=0, atol=TOL)
