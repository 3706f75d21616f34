"""Batching samples for the Trainer: decode images (lazily, here), build the chat inputs, mask the loss.

Two objectives:

- `"lm"` (the paper's): the chat prompt (the sample's own user turn, or the model's default prompt)
  followed by the answer (the sample's assistant text, or the label word). `labels` holds the
  answer's tokens (and the closing `<|im_end|>`) and -100 everywhere else, so the loss is on the
  answer only. Rows are left-padded (by the tokenizer), like the prompts `generate()` and the classifier see.
  `class_labels` (0/1, -1 unknown) rides along for evaluation; the trainer removes it before
  the forward pass.
- `"classification"`: `pixel_values`, `image_grid_thw` and `labels` (0/1) for
  `DeepVRMForImageClassification` (cross-entropy over the two answer tokens).

In `eval_mode` (evaluation during training) every sample gets the default question and its label
word as the answer, so the answer position scores what `deepvrm detect` scores.

Images of any size share a batch: Qwen2.5-VL's processor flattens each image's patches and keeps
its grid in `image_grid_thw`. An image that cannot be read is left out of its batch with a warning
naming the file; only a batch where every image fails stops training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from deepvrm.processing_deepvrm import render_prompt

from .data import ImageReadError, load_image

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass
class DeepVRMCollator:
    processor: object  # DeepVRMProcessor (image processor + tokenizer)
    objective: str = "lm"
    labels: tuple[str, ...] = ("real", "fake")  # answer word of label 0 and 1
    prompt: str | None = None  # default user turn (None: the processor's)
    system_prompt: str | None = "__processor__"  # "__processor__": the processor's
    end_of_answer: str = "<|im_end|>"
    max_answer_tokens: int | None = None
    # Evaluation: every sample gets the default question and its label word as the answer (what
    # `deepvrm detect` asks and scores), whatever the sample's own phrasing.
    eval_mode: bool = False
    skipped: list[str] = field(default_factory=list)  # messages of the images left out so far

    def __post_init__(self):
        if self.objective not in ("lm", "classification"):
            raise ValueError(f"objective must be 'lm' or 'classification', got {self.objective!r}.")
        if self.prompt is None:
            self.prompt = getattr(self.processor, "prompt", None)
        if self.system_prompt == "__processor__":
            self.system_prompt = getattr(self.processor, "system_prompt", None)

    # ------------------------------------------------------------------ images
    def _decode(self, features: list[dict]) -> tuple[list, list[dict]]:
        images, kept = [], []
        for index, feature in enumerate(features):
            try:
                images.append(load_image(feature["image"], index))
                kept.append(feature)
            except ImageReadError as error:
                message = f"skipping a sample: {error}"
                self.skipped.append(str(error))
                logger.warning(message)
        if not kept:
            raise ImageReadError("every image of a batch failed to load: " + "; ".join(self.skipped[-len(features) :]))
        return images, kept

    def _answer(self, feature: dict) -> str:
        if feature.get("answer") and not self.eval_mode:
            return feature["answer"]
        label = feature.get("label")
        if label is None or label < 0:
            raise ValueError(f"{_where(feature)}: a training sample needs an answer or a label.")
        return self.labels[label]

    # ------------------------------------------------------------------ batches
    def __call__(self, features: list[dict]) -> dict:
        images, features = self._decode(features)
        if self.objective == "classification":
            for feature in features:
                if feature.get("label") is None or feature["label"] < 0:
                    raise ValueError(f"{_where(feature)}: the classification objective needs a label.")
            inputs = self.processor.image_processor(images=images, return_tensors="pt")
            return {
                "pixel_values": inputs["pixel_values"],
                "image_grid_thw": inputs["image_grid_thw"],
                "labels": torch.tensor([f["label"] for f in features], dtype=torch.long),
            }
        return self.lm_batch(images, features)

    def lm_batch(self, images: list, features: list[dict]) -> dict:
        tokenizer = self.processor.tokenizer
        prompts = [
            render_prompt((None if self.eval_mode else f.get("prompt")) or self.prompt, self.system_prompt)
            for f in features
        ]
        # The prompt (image placeholders expanded) and the answer are tokenized apart, so the answer's
        # tokens are exactly those after the prompt, whatever the tokenizer would merge across them.
        encoded = self.processor(images=images, text=prompts, padding=True, padding_side="right", return_tensors="pt")
        rows, label_rows = [], []
        for row, feature in enumerate(features):
            prompt_ids = encoded["input_ids"][row][encoded["attention_mask"][row].bool()].tolist()
            answer_ids = tokenizer(self._answer(feature) + self.end_of_answer, add_special_tokens=False)["input_ids"]
            if self.max_answer_tokens is not None:
                answer_ids = answer_ids[: self.max_answer_tokens]
            rows.append(prompt_ids + answer_ids)
            label_rows.append([IGNORE_INDEX] * len(prompt_ids) + answer_ids)
        padded = tokenizer.pad({"input_ids": rows}, padding=True, padding_side="left", return_tensors="pt")
        input_ids, attention_mask = padded["input_ids"], padded["attention_mask"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for i, lab in enumerate(label_rows):
            labels[i, input_ids.shape[1] - len(lab) :] = torch.tensor(lab)
        image_token_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            # Stock Qwen2.5-VL (stage 1) computes 3-D positions only when these are given.
            "mm_token_type_ids": (input_ids == image_token_id).long(),
            "pixel_values": encoded["pixel_values"],
            "image_grid_thw": encoded["image_grid_thw"],
            "labels": labels,
            "class_labels": torch.tensor(
                [-1 if f.get("label") is None else int(f["label"]) for f in features], dtype=torch.long
            ),
        }


def _where(feature: dict) -> str:
    image = feature.get("image")
    if isinstance(image, dict):
        return image.get("path") or "a sample"
    return str(image)


__all__ = ["DeepVRMCollator", "IGNORE_INDEX"]
