"""DeepVRMForImageClassification, the Auto classes and pipeline("image-classification")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_image
from PIL import Image
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForImageTextToText,
    AutoProcessor,
    pipeline,
)

from deepvrm import (
    DeepVRMConfig,
    DeepVRMForConditionalGeneration,
    DeepVRMForImageClassification,
    DeepVRMImageProcessor,
    DeepVRMModel,
    DeepVRMProcessor,
)
from deepvrm.cli import main as cli_main


def _images():
    rgb = random_image(120, 90, seed=1)
    grey = random_image(64, 200, "L", seed=2)
    rgba = random_image(300, 50, "RGBA", seed=3)
    tiny = random_image(1, 1, seed=4)
    return [rgb, grey, rgba, tiny]


def test_init_folder_round_trips_through_the_auto_classes(tiny_model_dir):
    assert isinstance(AutoConfig.from_pretrained(tiny_model_dir), DeepVRMConfig)
    assert type(AutoModel.from_pretrained(tiny_model_dir)) is DeepVRMModel
    assert type(AutoModelForImageClassification.from_pretrained(tiny_model_dir)) is DeepVRMForImageClassification
    assert type(AutoModelForImageTextToText.from_pretrained(tiny_model_dir)) is DeepVRMForConditionalGeneration
    assert type(AutoImageProcessor.from_pretrained(tiny_model_dir)) is DeepVRMImageProcessor
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert type(processor) is DeepVRMProcessor and processor.prompt == DeepVRMConfig().prompt


def test_weights_are_the_same_in_every_class(tiny_model_dir):
    chat = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).state_dict()
    classifier = AutoModelForImageClassification.from_pretrained(tiny_model_dir).state_dict()
    bare = AutoModel.from_pretrained(tiny_model_dir).state_dict()
    assert chat.keys() == classifier.keys()
    assert {k for k in chat if k.startswith("model.visual_low_level.")}
    for key in chat:
        assert torch.equal(chat[key], classifier[key]), key
    for key in bare:
        assert torch.equal(bare[key], chat["model." + key]), key


def test_scores_equal_the_chat_models_renormalised_first_token_probabilities(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    chat = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    classifier = AutoModelForImageClassification.from_pretrained(tiny_model_dir).eval()
    images = _images()
    with torch.no_grad():
        first = chat.generate(**processor.detection_inputs(images), max_new_tokens=1, do_sample=False,
                              output_logits=True, return_dict_in_generate=True).logits[0]
        probs = first.softmax(-1)[:, chat.config.answer_token_ids]
        expected = probs / probs.sum(-1, keepdim=True)
        got = classifier(**processor.image_processor(images, return_tensors="pt")).logits.softmax(-1)
    assert torch.allclose(got, expected, atol=1e-5)


def test_labels_give_a_cross_entropy_loss_and_gradients(tiny_model_dir):
    processor = AutoImageProcessor.from_pretrained(tiny_model_dir)
    classifier = AutoModelForImageClassification.from_pretrained(tiny_model_dir)
    inputs = processor(_images()[:2], return_tensors="pt")
    labels = torch.tensor([0, 1])
    out = classifier(**inputs, labels=labels)
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    out.loss.backward()
    assert classifier.model.visual_low_level.blocks[0].mlp.up_proj.weight.grad.abs().sum() > 0


def test_only_two_lm_head_rows_are_used(tiny_model_dir):
    """Changing any other row of lm_head leaves the scores unchanged."""
    processor = AutoImageProcessor.from_pretrained(tiny_model_dir)
    classifier = AutoModelForImageClassification.from_pretrained(tiny_model_dir).eval()
    inputs = processor(_images()[:2], return_tensors="pt")
    with torch.no_grad():
        before = classifier(**inputs).logits
        keep = classifier.config.answer_token_ids
        others = torch.ones(classifier.lm_head.weight.shape[0], dtype=torch.bool)
        others[keep] = False
        classifier.lm_head.weight[others] = 123.0
        assert torch.equal(classifier(**inputs).logits, before)


def test_pipeline_scores_every_mode_and_size_and_batches_consistently(tiny_model_dir):
    classify = pipeline("image-classification", model=str(tiny_model_dir))
    images = _images()
    one_by_one = [classify(image) for image in images]
    batched = classify(images, batch_size=4)
    for single, batch in zip(one_by_one, batched):
        assert {r["label"] for r in single} == {"real", "fake"}
        assert sum(r["score"] for r in single) == pytest.approx(1.0, abs=1e-6)
        scores = {r["label"]: r["score"] for r in single}
        for r in batch:
            assert r["score"] == pytest.approx(scores[r["label"]], abs=1e-5)
    # Different images give different scores: the images really reach the model.
    fakes = [next(r["score"] for r in s if r["label"] == "fake") for s in one_by_one]
    assert len({round(f, 6) for f in fakes}) == len(fakes)


def test_image_processor_uses_the_fixed_pixel_budget(tiny_model_dir):
    processor = AutoImageProcessor.from_pretrained(tiny_model_dir)
    out = processor([Image.fromarray(np.zeros((500, 500, 3), np.uint8)), random_image(30, 30)], return_tensors="pt")
    patch = processor.patch_size
    areas = (out["image_grid_thw"][:, 1] * out["image_grid_thw"][:, 2] * patch * patch).tolist()
    assert areas == [112 * 112, 112 * 112]


def test_processor_chat_template_matches_the_classification_prompt(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    config = AutoConfig.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": [{"type": "text", "text": config.prompt + " "}, {"type": "image"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image = random_image(112, 112)
    from_template = processor(images=[image], text=[text], return_tensors="pt")["input_ids"][0].tolist()
    official_format = processor(images=[image], text=[processor.apply_chat_template(
        [{"role": "user", "content": config.prompt + " <image>"}], add_generation_prompt=True, tokenize=False)],
        return_tensors="pt")["input_ids"][0].tolist()
    n = from_template.count(config.image_token_id)
    built = config.prompt_prefix_ids + [config.image_token_id] * n + config.prompt_suffix_ids
    assert from_template == built == official_format


def test_deepvrm_init_command_writes_a_loadable_folder(tmp_path, capsys):
    assert cli_main(["init", "--preset", "tiny", "--output", str(tmp_path / "m"), "--fusion", "gated"]) == 0
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "m")
    assert model.config.fusion == "gated"
    assert torch.count_nonzero(model.model.language_model.layers[2].fusion.gate) == 0
    assert cli_main(["no-such-command"]) == 2


def test_the_detection_prompt_is_the_chat_template_rendered(tiny_model_dir):
    """One source of the prompt's text: the processor's chat template (saved with the model)."""
    from deepvrm.processing_deepvrm import detection_messages, render_prompt

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    config = AutoConfig.from_pretrained(tiny_model_dir)
    for answer in (None, "fake"):
        messages = detection_messages(config.prompt, config.system_prompt, answer)
        saved = processor.apply_chat_template(messages, add_generation_prompt=answer is None, tokenize=False)
        assert render_prompt(config.prompt, config.system_prompt, answer) == saved
    # The text, written out (Qwen2.5-VL's format); without a system prompt, no system turn.
    segment = "<|vision_start|><|image_pad|><|vision_end|>"
    assert render_prompt("Real? <image> Say.", None, "real") == (
        f"<|im_start|>user\nReal? {segment} Say.<|im_end|>\n<|im_start|>assistant\nreal<|im_end|>\n"
    )
    assert render_prompt("Real?", "Be brief.") == (
        f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nReal? {segment}<|im_end|>\n<|im_start|>assistant\n"
    )
