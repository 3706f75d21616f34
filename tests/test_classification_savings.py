"""The classification path's exact savings (answer-position last layer, prompt prefix computed once)
against an independent computation: the backbone's stock transformers modules driven by hand with
the paper's formula (tests/_reference.py, tests/_reference_backbones.py), at float32 round-off.

Each test also checks which path ran (the savings engaged where they should, and the full forward
ran where they must not apply), so a saving that silently stopped applying, or applied where it is
not exact, fails here."""

from __future__ import annotations

import _reference
import _reference_backbones
import pytest
import torch
from conftest import random_image

from deepvrm import deepvrm_class
from deepvrm.configuration import preset_config
from deepvrm.configuration.init_model import build_processor

TOL = 1e-5
PRESETS = ["tiny", "tiny-qwen3-vl", "tiny-qwen3.5"]


def _model(preset, attn="sdpa", seed=0, **overrides):
    """A random classification model of the preset's backbone, its two towers made to differ (as after training)."""
    torch.manual_seed(seed)
    config = preset_config(preset, **overrides)
    config._attn_implementation = attn
    model = deepvrm_class(config.backbone, "classification")(config)
    with torch.no_grad():
        for p in model.model.visual_low_level.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def _images(n, sizes=None):
    sizes = sizes or [(96, 96)] * n
    return [random_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]


def _expected(model, images):
    """Reference answer-token logits [batch, 2]: the chat prompt from the processor (tokenizer + chat
    template, not the model's prompt ids), the stock modules, the paper's fusion."""
    inputs = build_processor(model.config).detection_inputs(images)
    reference = _reference if model.config.backbone == "qwen2_5_vl" else _reference_backbones
    base, low = reference.stock_models_from(model)
    config = model.config
    gate = model.model.language_model.layers[config.injection_layer].fusion.gate
    logits = reference.reference_logits(
        base, low, inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"], inputs["image_grid_thw"],
        config.injection_layer, config.fusion, None if gate is None else gate.detach(),
    )
    return logits[:, -1, list(config.answer_token_ids)]


class _Spy:
    """Records which path each classification call took and the sequence length each decoder layer saw."""

    def __init__(self, model):
        self.model, self.fast_calls, self.layer_lengths = model, 0, {}
        inner = model.model.answer_position_states

        def counted(*args, **kwargs):
            self.fast_calls += 1
            return inner(*args, **kwargs)

        model.model.answer_position_states = counted
        layers = model.model.language_model.layers
        for index in (0, len(layers) - 1):
            layers[index].register_forward_hook(self._hook(index))

    def _hook(self, index):
        def hook(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            self.layer_lengths.setdefault(index, []).append(hidden.shape[1])

        return hook


def _classify(model, images, **kwargs):
    pixels = build_processor(model.config).image_processor(images, return_tensors="pt")
    with torch.no_grad():
        return model(pixel_values=pixels["pixel_values"], image_grid_thw=pixels["image_grid_thw"], **kwargs)


@pytest.mark.parametrize(("preset", "attn"), [
    *[(preset, attn) for preset in ("tiny", "tiny-qwen3-vl") for attn in ("sdpa", "eager")],
    ("tiny-qwen3.5", "sdpa"),
    pytest.param("tiny-qwen3.5", "eager", marks=pytest.mark.slow),  # Qwen3.5's reference linear attention: ~5 s
])
def test_savings_give_the_reference_logits_and_probabilities_at_batch_3(preset, attn):
    model = _model(preset, attn)
    spy = _Spy(model)
    images = _images(3)
    got = _classify(model, images).logits
    expected = _expected(model, images)
    assert (got - expected).abs().max().item() < TOL
    assert (got.softmax(-1)[:, 1] - expected.softmax(-1)[:, 1]).abs().max().item() < TOL  # P(fake)
    assert spy.fast_calls == 1
    # Where the backbone computes the prompt prefix apart (every layer is attention), it went through
    # the layers once, alone; then the rest of the prompt, the last layer at the answer position only.
    # Elsewhere the whole prompt went through, the last layer again at the answer position only.
    last = len(model.model.language_model.layers) - 1
    tokens = build_processor(model.config).detection_inputs(images)["input_ids"].shape[1]
    prefix = len(model.config.prompt_prefix_ids)
    if model.model.supports_prefix_cache:
        assert spy.layer_lengths[0] == [prefix, tokens - prefix]
        assert spy.layer_lengths[last] == [prefix, 1]
    else:
        assert preset == "tiny-qwen3.5"
        assert spy.layer_lengths[0] == [tokens] and spy.layer_lengths[last] == [1]


@pytest.mark.parametrize("preset", ["tiny", "tiny-qwen3-vl"])
def test_prefix_is_reused_and_recomputed_when_the_weights_change(preset):
    model = _model(preset)
    images = _images(2)
    first = _classify(model, images).logits
    entry = model.model._prefix_entry
    assert entry is not None
    again = _classify(model, _images(2)).logits
    assert model.model._prefix_entry is entry  # same weights, same prompt: computed once
    assert torch.equal(first, again)
    # An in-place change of a layer the prefix goes through (as an optimizer step makes).
    with torch.no_grad():
        model.model.language_model.layers[0].mlp.down_proj.weight.mul_(1.5)
    changed = _classify(model, images).logits
    assert model.model._prefix_entry is not entry
    assert (changed - _expected(model, images)).abs().max().item() < TOL
    assert (changed - first).abs().max().item() > 1e-3  # the change does reach the scores


@pytest.mark.parametrize("preset", PRESETS)
def test_injection_at_the_last_layer(preset):
    layers = preset_config(preset).text_config.num_hidden_layers
    model = _model(preset, injection_layer=layers - 1)
    spy = _Spy(model)
    images = _images(2)
    assert (_classify(model, images).logits - _expected(model, images)).abs().max().item() < TOL
    assert spy.fast_calls == 1 and spy.layer_lengths[layers - 1][-1] == 1


@pytest.mark.slow  # Qwen3.5's reference linear attention: ~5 s
def test_qwen3_5_last_layer_of_linear_attention_keeps_only_the_answer_row():
    config = preset_config("tiny-qwen3.5")
    layer_types = ["linear_attention", "full_attention", "linear_attention", "linear_attention"]
    assert len(layer_types) == config.text_config.num_hidden_layers
    model = _model("tiny-qwen3.5", text_config={**config.text_config.to_dict(), "layer_types": layer_types})
    assert model.config.text_config.layer_types == layer_types
    spy = _Spy(model)
    images = _images(2)
    assert (_classify(model, images).logits - _expected(model, images)).abs().max().item() < TOL
    assert spy.fast_calls == 1 and spy.layer_lengths[3] == [1]  # no prefix pass: a linear-attention backbone


@pytest.mark.parametrize("preset", PRESETS)
def test_padded_batches_take_the_full_forward(preset):
    model = _model(preset)
    spy = _Spy(model)
    images = _images(2, sizes=[(96, 96), (40, 200)])
    pixels = build_processor(model.config).image_processor(images, return_tensors="pt")
    counts = pixels["image_grid_thw"].prod(-1).tolist()
    assert counts[0] != counts[1]  # different token counts: a left-padded prompt batch
    assert (_classify(model, images).logits - _expected(model, images)).abs().max().item() < TOL
    assert spy.fast_calls == 0


def test_hidden_states_gradients_and_training_mode_take_the_full_forward():
    model = _model("tiny")
    spy = _Spy(model)
    images = _images(2)
    expected = _expected(model, images)
    pixels = build_processor(model.config).image_processor(images, return_tensors="pt")
    inputs = dict(pixel_values=pixels["pixel_values"], image_grid_thw=pixels["image_grid_thw"])

    with_states = _classify(model, images, output_hidden_states=True)
    assert len(with_states.hidden_states) == model.config.text_config.num_hidden_layers + 1
    assert with_states.hidden_states[-1].shape[1] > 1  # every position of every layer
    with torch.enable_grad():
        with_grad = model(**inputs)
    assert with_grad.logits.requires_grad
    model.train()  # the tiny preset has no dropout: training mode computes the same numbers
    with torch.no_grad():
        training = model(**inputs).logits
    model.eval()
    model.classification_savings = False
    switched_off = _classify(model, images).logits
    for logits in (with_states.logits, with_grad.logits.detach(), training, switched_off):
        assert (logits - expected).abs().max().item() < TOL
    assert spy.fast_calls == 0


def _full_forward(model, images):
    model.classification_savings = False
    try:
        return _classify(model, images).logits
    finally:
        model.classification_savings = True


def test_the_kept_prefix_follows_peft_adapter_switches():
    """Switching, disabling or merging a LoRA adapter changes no tensor of the decoder; the kept prefix
    must follow it anyway."""
    from peft import LoraConfig, get_peft_model

    model = _model("tiny")
    images = _images(2)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))  # fmt: skip
    peft_model.eval()
    with_adapter = _classify(model, images).logits
    assert (with_adapter - _full_forward(model, images)).abs().max().item() < TOL
    with peft_model.disable_adapter():
        without = _classify(model, images).logits
        assert (without - _full_forward(model, images)).abs().max().item() < TOL
    assert (with_adapter - without).abs().max().item() > 1e-3  # the adapter does reach the scores
    assert (_classify(model, images).logits - with_adapter).abs().max().item() < TOL  # enabled again


def test_a_write_through_data_is_seen_after_eval():
    model = _model("tiny")
    images = _images(2)
    first = _classify(model, images).logits
    model.model.language_model.layers[0].mlp.down_proj.weight.data.mul_(1.5)  # bypasses the write counter
    model.eval()  # documented: drops what was kept
    changed = _classify(model, images).logits
    assert (changed - _full_forward(model, images)).abs().max().item() < TOL
    assert (changed - first).abs().max().item() > 1e-3


def test_training_after_inference_mode_scoring():
    """Plans kept while scoring under inference_mode (as the Detector does) cannot be saved for
    backward; a later training forward on the same grid must not be handed them."""
    model = _model("tiny")
    images = _images(2)
    pixels = build_processor(model.config).image_processor(images, return_tensors="pt")
    inputs = dict(pixel_values=pixels["pixel_values"], image_grid_thw=pixels["image_grid_thw"])
    with torch.inference_mode():
        scored = model(**inputs).logits
    model.train()
    logits = model(**inputs).logits
    logits[:, 1].sum().backward()
    assert model.model.visual_low_level.patch_embed.proj.weight.grad is not None
    assert (logits.detach() - scored).abs().max().item() < TOL
