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
naming the file; only a batch where every image fails stops training (`deepvrm train` checks every
image before it starts, see trainers/checks.py).

With `transformers.Trainer` directly (`from deepvrm.trainers import DeepVRMCollator`), samples are
any `datasets.Dataset` rows with an `image` (a PIL image, a path, or datasets' Image feature) and a
`label` (0 real / 1 fake, or the label word); pass `TrainingArguments(remove_unused_columns=False)`
so that the Trainer keeps the `image` column for the collator. Rows already processed (per image
`pixel_values` `[n_patches, patch_dim]` and `image_grid_thw`, e.g. from a `with_transform`) are
concatenated as the model expects, whatever each image's grid (classification objective).
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
        if features and "image" not in features[0]:
            raise KeyError(
                f"'image': the samples reaching the collator hold {sorted(features[0])}, no image. With "
                "transformers.Trainer pass TrainingArguments(remove_unused_columns=False): by default the Trainer "
                "drops the columns the model's forward() does not name, the image among them."
            )
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
        label = self._label(feature)
        if label is None:
            raise ValueError(f"{_where(feature)}: a training sample needs an answer or a label.")
        return self.labels[label]

    # ------------------------------------------------------------------ batches
    def _label(self, feature: dict) -> int | None:
        """0/1 from a sample's `label` (or `labels`): an integer, a bool or a label word."""
        label = feature.get("label", feature.get("labels"))
        if isinstance(label, torch.Tensor):
            label = label.item()
        if isinstance(label, str):
            word = label.strip().lower()
            label = self.labels.index(word) if word in self.labels else None
        return None if label is None or int(label) < 0 else int(label)

    def __call__(self, features: list[dict]) -> dict:
        if self.objective == "classification" and features and "pixel_values" in features[0]:
            return self.processed_batch(features)
        images, features = self._decode(features)
        if self.objective == "classification":
            labels = [self._label(f) for f in features]
            for feature, label in zip(features, labels):
                if label is None:
                    raise ValueError(f"{_where(feature)}: the classification objective needs a label.")
            inputs = self.processor.image_processor(images=images, return_tensors="pt")
            return {
                "pixel_values": inputs["pixel_values"],
                "image_grid_thw": inputs["image_grid_thw"],
                "labels": torch.tensor(labels, dtype=torch.long),
            }
        return self.lm_batch(images, features)

    def processed_batch(self, features: list[dict]) -> dict:
        """Rows already through the image processor, one image each: their flattened patches
        concatenated and their grids stacked (images of different grids may share the batch)."""
        pixel_values = [torch.as_tensor(f["pixel_values"]) for f in features]
        pixel_values = [p.reshape(-1, p.shape[-1]) for p in pixel_values]
        grids = torch.stack([torch.as_tensor(f["image_grid_thw"]).reshape(-1, 3)[0] for f in features]).long()
        batch = {"pixel_values": torch.cat(pixel_values), "image_grid_thw": grids}
        labels = [self._label(f) for f in features]
        if any(label is not None for label in labels):
            if any(label is None for label in labels):
                raise ValueError("a batch mixes samples with and without a label.")
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch

    def lm_batch(self, images: list, features: list[dict]) -> dict:
        tokenizer = self.processor.tokenizer
        prompts = [
            # in the processor's chat template: the backbone's (Qwen3.5's answers follow an empty thinking block)
            render_prompt((None if self.eval_mode else f.get("prompt")) or self.prompt, self.system_prompt,
                          chat_template=getattr(self.processor, "chat_template", None))
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
                [-1 if (label := self._label(f)) is None else label for f in features], dtype=torch.long
            ),
        }


def _where(feature: dict) -> str:
    image = feature.get("image")
    if isinstance(image, dict):
        return image.get("path") or "a sample"
    return str(image)


__all__ = ["DeepVRMCollator", "IGNORE_INDEX"]
