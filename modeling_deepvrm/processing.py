"""Image processor (fixed pixel budget) and processor (image processor + tokenizer + chat template).

Both are Qwen2.5-VL's, with Deep-VRM's defaults: every image is resized to the config's pixel
budget (the paper: 512x512), and the processor knows the detection prompt and its answers.
The image processor uses transformers' PIL backend (no torchvision).
"""

from __future__ import annotations

from transformers import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from .configuration.configuration_deepvrm import DEFAULT_LABELS, DEFAULT_PIXELS, DEFAULT_PROMPT, DEFAULT_SYSTEM_PROMPT
from .tokenization import CHAT_TEMPLATE, IMAGE_PLACEHOLDER, prompt_ids_from_tokenizer, render_prompt


class DeepVRMImageProcessor(Qwen2VLImageProcessorPil):
    """Qwen2-VL image processor with the pixel budget fixed (min = max) to the paper's 512x512.

    Greyscale, palette and RGBA images are converted to RGB; images of any aspect ratio map to a
    patch grid of about the same number of tokens.
    """

    size = {"shortest_edge": DEFAULT_PIXELS, "longest_edge": DEFAULT_PIXELS}

    @classmethod
    def from_config(cls, config) -> "DeepVRMImageProcessor":
        vision = config.vision_config
        return cls(
            size={"shortest_edge": config.min_pixels, "longest_edge": config.max_pixels},
            patch_size=vision.patch_size,
            temporal_patch_size=vision.temporal_patch_size,
            merge_size=vision.spatial_merge_size,
        )


class DeepVRMProcessor(Qwen2_5_VLProcessor):
    """Image processor + tokenizer + chat template for the paper's chat interface.

    `processor(images=..., text=...)` works as for Qwen2.5-VL (text holding `<|image_pad|>` or
    the official data format's `<image>`); `detection_inputs(images)` builds the paper's prompt.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template=None,
        prompt: str = DEFAULT_PROMPT,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        **kwargs,
    ):
        self.prompt = prompt
        self.system_prompt = system_prompt
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template or CHAT_TEMPLATE, **kwargs)

    @classmethod
    def get_attributes(cls):
        return ["image_processor", "tokenizer"]

    def __call__(self, images=None, text=None, **kwargs):
        if text is not None:
            # The official data format marks the image with "<image>"; Qwen's processor expects the
            # vision segment whose placeholder it expands to one token per merged patch.
            texts = [text] if isinstance(text, str) else list(text)
            texts = [t.replace(IMAGE_PLACEHOLDER, "<|vision_start|><|image_pad|><|vision_end|>") for t in texts]
            text = texts[0] if isinstance(text, str) else texts
        return super().__call__(images=images, text=text, **kwargs)

    def detection_inputs(self, images, prompt: str | None = None, answers=None, return_tensors: str = "pt", **kwargs):
        """Model inputs asking the detection question about each image (left-padded batch).

        `answers` (one string per image, optional) appends the assistant's answer, for training.
        """
        images = images if isinstance(images, (list, tuple)) else [images]
        answers = answers if answers is not None else [None] * len(images)
        texts = [render_prompt(prompt or self.prompt, self.system_prompt, answer) for answer in answers]
        kwargs.setdefault("padding_side", "left")  # answers are read (or generated) at the last position
        return self(images=list(images), text=texts, padding=True, return_tensors=return_tensors, **kwargs)

    def configure_model(self, model_or_config, labels=DEFAULT_LABELS) -> None:
        """Write this tokenizer's prompt and answer token ids into a model's config."""
        config = getattr(model_or_config, "config", model_or_config)
        config.update(prompt_ids_from_tokenizer(self.tokenizer, config.prompt, config.system_prompt, config.labels or labels))

    def decode_answers(self, generated_ids, input_length: int) -> list[str]:
        """The generated answers, without the prompt."""
        return [s.strip() for s in self.batch_decode(generated_ids[:, input_length:], skip_special_tokens=True)]
