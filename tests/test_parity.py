"""The residual injection against an independent computation (tests/_reference.py)."""

from __future__ import annotations

import pytest
import torch
from _reference import reference_logits, stock_models_from
from conftest import random_image

from deepvrm import DeepVRMConfig, DeepVRMForConditionalGeneration

from deepvrm.configuration import preset_config
from deepvrm.configuration.init_model import build_processor

TOL = 1e-4


def _model(fusion="mean", attn="eager", seed=0, **overrides):
    torch.manual_seed(seed)
    config = preset_config("tiny", fusion=fusion, **overrides)
    config._attn_implementation = attn
    model = DeepVRMForConditionalGeneration(config).eval()
    # Make the two towers differ, as after training, so that fusing the wrong tower would show.
    with torch.no_grad():
        for p in model.model.visual_low_level.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        if fusion == "gated":
            model.model.language_model.layers[config.injection_layer].fusion.gate.normal_()
    return model


def _inputs(model, sizes=((112, 112), (60, 200)), two_images_in_first=False, padding_side="left"):
    processor = build_processor(model.config)
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    texts = [processor.prompt + " <image>"] * len(images)
    if two_images_in_first:
        texts[0] = "Compare <image> and <image>. Which is fake?"
        images = [images[0], random_image(90, 150, seed=7)] + images[1:]
    return processor(images=images, text=texts, padding=True, padding_side=padding_side, return_tensors="pt")


def _check(model, inputs, **ref_kwargs):
    base, low = stock_models_from(model)
    config = model.config
    gate = None
    if config.fusion == "gated":
        gate = model.model.language_model.layers[config.injection_layer].fusion.gate.detach()
    expected = reference_logits(
        base, low, inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"],
        inputs["image_grid_thw"], config.injection_layer, config.fusion, gate,
    )
    with torch.no_grad():
        got = model(**inputs).logits
    real = inputs["attention_mask"].bool()
    error = (got[real] - expected[real]).abs().max().item()
    assert error < TOL, error
    return error


@pytest.mark.parametrize("fusion", ["mean", "add", "gated"])
def test_logits_match_independent_reference(fusion):
    model = _model(fusion)
    _check(model, _inputs(model))


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_padding_and_several_images_per_sample(padding_side):
    model = _model()
    inputs = _inputs(model, sizes=((112, 112), (60, 200), (200, 40)), two_images_in_first=True, padding_side=padding_side)
    assert inputs["attention_mask"].min() == 0  # the batch really is padded
    _check(model, inputs)


def test_sdpa_matches_eager_reference():
    model = _model(attn="sdpa")
    _check(model, _inputs(model))


def test_injection_changes_only_image_positions_inputs_and_later_layers():
    """Against stock Qwen2.5-VL holding the same weights (no injection) and the stock low-level tower:
    the layers before K see the base's hidden states at every position; at the input of layer K only
    the image positions change, to (h + r) / 2; after it, the text before the image (causal
    attention) is still what the base computes, and the text after the image is not."""
    model = _model()
    inputs = _inputs(model, sizes=((112, 112),))
    base, low = stock_models_from(model)
    k = model.config.injection_layer
    fused = []
    hook = model.model.language_model.layers[k].fusion.register_forward_hook(lambda m, args, out: fused.append(out))
    with torch.no_grad():
        ours = model(**inputs, output_hidden_states=True).hidden_states
        stock = base(**inputs, output_hidden_states=True).hidden_states
        residual = low(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]).pooler_output
    hook.remove()
    (injected,) = fused
    image = (inputs["input_ids"] == model.config.image_token_id)[0]
    positions = torch.arange(image.numel())
    before, after = positions < positions[image].min(), positions > positions[image].max()
    assert inputs["attention_mask"].all() and before.any() and after.any()

    def close(a, b):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)

    assert len(ours) == len(stock) == model.config.text_config.num_hidden_layers + 1
    for index in range(k + 1):  # the embeddings and the outputs of layers 0..K-1
        close(ours[index], stock[index])
    close(injected[0, ~image], stock[k][0, ~image])  # text positions untouched...
    close(injected[0, image], (stock[k][0, image] + residual) / 2)  # ...image positions fused
    assert (injected[0, image] - stock[k][0, image]).abs().max() > 1e-2
    for index in range(k + 1, len(ours)):  # the outputs of layers K..N-1
        close(ours[index][0, before], stock[index][0, before])
        assert (ours[index][0, after] - stock[index][0, after]).abs().max() > 1e-3


def test_official_call_style_without_mm_token_type_ids_gives_same_logits():
    """The official interface passes no mm_token_type_ids; stock 5.x would then fall back to 1-D positions."""
    model = _model()
    inputs = _inputs(model)
    with torch.no_grad():
        with_types = model(**inputs).logits
        official = {k: v for k, v in inputs.items() if k != "mm_token_type_ids"}
        without_types = model(**official).logits
    assert torch.equal(with_types, without_types)


def test_generation_with_kv_cache_matches_full_recompute():
    """Prefill injects, cached decoding steps do not: greedy tokens and scores equal a no-cache run."""
    model = _model()
    inputs = _inputs(model)
    official = {k: v for k, v in inputs.items() if k != "mm_token_type_ids"}
    kwargs = dict(max_new_tokens=4, do_sample=False, output_scores=True, return_dict_in_generate=True)
    cached = model.generate(**official, use_cache=True, **kwargs)
    uncached = model.generate(**inputs, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.scores, uncached.scores):
        assert (a - b).abs().max() < TOL


def test_first_generation_step_scores_equal_forward_logits():
    model = _model()
    inputs = _inputs(model)
    out = model.generate(**inputs, max_new_tokens=1, do_sample=False, output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        forward = model(**inputs).logits[:, -1]
    assert (out.logits[0] - forward).abs().max() < TOL


def test_gradient_checkpointing_gives_same_loss_and_gradients():
    model = _model()
    model.train()
    inputs = _inputs(model)
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)

    def grads():
        model.zero_grad()
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_plain, grads_plain = grads()
    # Asking for re-entrant checkpointing must not cut the low-level tower off its gradient.
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    loss_ckpt, grads_ckpt = grads()
    model.gradient_checkpointing_disable()
    assert abs(loss_plain - loss_ckpt) < 1e-6
    assert grads_plain.keys() == grads_ckpt.keys()
    # The low-level tower learns only through the injection: its gradients must survive checkpointing.
    assert any(k.startswith("model.visual_low_level.") for k in grads_ckpt)
    for name in grads_plain:
        assert torch.allclose(grads_plain[name], grads_ckpt[name], atol=1e-6), name


def test_beam_search_and_several_return_sequences_keep_the_injection():
    model = _model()
    inputs = _inputs(model)
    out = model.generate(**inputs, max_new_tokens=2, do_sample=False, num_beams=2, num_return_sequences=2)
    assert out.shape[0] == 4
    greedy = model.generate(**inputs, max_new_tokens=1, do_sample=False, num_return_sequences=1,
                            output_logits=True, return_dict_in_generate=True)
    sampled = model.generate(**inputs, max_new_tokens=1, do_sample=True, num_return_sequences=3,
                             output_logits=True, return_dict_in_generate=True)
    # Each returned sequence of a sample saw the same (injected) prompt.
    per_sample = sampled.logits[0].view(2, 3, -1)
    assert (per_sample - greedy.logits[0][:, None]).abs().max() < TOL
