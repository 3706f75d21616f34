"""Processing for Deep-VRM: the detection prompt, the image processor and the processor.

The chat prompt is the backbone's (for Qwen2.5-VL as the official training framework renders it),
rendered by the processor's chat template (`CHAT_TEMPLATE` for Qwen2.5-VL, `chat_template_for(backbone)`
for each) from the detection messages (`detection_messages`):

    Qwen2.5-VL  <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n{prompt} <|vision_start|><|image_pad|>...<|vision_end|><|im_end|>\\n<|im_start|>assistant\\n
    Qwen3-VL    the same without a default system turn (its template has none)
    Qwen3.5     the same as Qwen3-VL, the answer after the empty thinking block of its non-thinking
                mode: ...<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n

`prompt_ids_from_tokenizer` splits it around the run of image-placeholder tokens, so the
classification head can build input ids for any image grid without a tokenizer at run time.

Both processors are Qwen2.5-VL's (images only, which all three backbones read alike: one
`<|image_pad|>` per merged patch), with Deep-VRM's defaults: every image is resized to the config's
pixel budget (the paper: 512x512) with the backbone's patch size and pixel normalisation
(`DeepVRMImageProcessor.from_config`), and the processor knows the detection prompt and its answers.
The image processor uses transformers' PIL backend (no torchvision).
"""

from __future__ import annotations

from transformers import Qwen2_5_VLProcessor
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.utils.chat_template_utils import render_jinja_template

from .configuration_deepvrm import DEFAULT_LABELS, DEFAULT_PIXELS, DEFAULT_PROMPT, DEFAULT_SYSTEM_PROMPT

IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PLACEHOLDER = "<image>"  # how the official data format marks the image in a user turn
VISION_SEGMENT = f"{VISION_START}{IMAGE_TOKEN}{VISION_END}"

# Qwen2-VL's chat template, extended so that the official data format's "<image>" inside a string
# turn renders the same as an {"type": "image"} content item, and so that `default_system_prompt=False`
# leaves out the default system turn (a config whose `system_prompt` is None has none).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' and default_system_prompt is not false %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] | replace('<image>', '<|vision_start|><|image_pad|><|vision_end|>') }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] | replace('<image>', '<|vision_start|><|image_pad|><|vision_end|>') }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen3-VL's and Qwen3.5's templates (for images) differ from Qwen2.5-VL's in two places: no default
# system turn, and Qwen3.5 answers after an empty thinking block (its non-thinking mode, which is
# what its own template renders with enable_thinking=False, for the prompt and for a final answer).
_EMPTY_THINK = "<think>\n\n</think>\n\n"
QWEN3_CHAT_TEMPLATE = (
    CHAT_TEMPLATE.replace(
        "{% if loop.first and message['role'] != 'system' and default_system_prompt is not false %}"
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}",
        "",
    )
)
QWEN3_5_CHAT_TEMPLATE = (
    QWEN3_CHAT_TEMPLATE.replace(
        "<|im_start|>{{ message['role'] }}\n",
        "<|im_start|>{{ message['role'] }}\n{% if message['role'] == 'assistant' %}" + _EMPTY_THINK + "{% endif %}",
    ).replace(
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        "{% if add_generation_prompt %}<|im_start|>assistant\n" + _EMPTY_THINK + "{% endif %}",
    )
)
CHAT_TEMPLATES = {"qwen2_5_vl": CHAT_TEMPLATE, "qwen3_vl": QWEN3_CHAT_TEMPLATE, "qwen3_5": QWEN3_5_CHAT_TEMPLATE}
# Each backbone's pixel normalisation (its preprocessor_config.json): Qwen2.5-VL uses CLIP's statistics,
# Qwen3-VL and Qwen3.5 map [0, 1] to [-1, 1].
IMAGE_NORMALISATION = {"qwen2_5_vl": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD), "qwen3_vl": ([0.5] * 3, [0.5] * 3), "qwen3_5": ([0.5] * 3, [0.5] * 3)}


def chat_template_for(backbone: str | None) -> str:
    """The detection chat template of a backbone (Qwen2.5-VL's when unknown)."""
    return CHAT_TEMPLATES.get(backbone, CHAT_TEMPLATE)


def detection_messages(prompt: str, system_prompt: str | None, answer: str | None = None) -> list[dict]:
    """The chat of one detection question: the system turn (unless None), the user turn with the
    image placeholder (after the text, unless the text places it), and the answer when given."""
    user = prompt if IMAGE_PLACEHOLDER in prompt else f"{prompt} {IMAGE_PLACEHOLDER}"
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": user})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def render_prompt(prompt: str, system_prompt: str | None, answer: str | None = None, chat_template: str | None = None) -> str:
    """The chat prompt as text, rendered by the chat template (`CHAT_TEMPLATE`, Qwen2.5-VL's, unless
    another is given) from `detection_messages`, with one un-expanded image placeholder: up to the
    assistant's turn, or through the answer when one is given."""
    (text,), _ = render_jinja_template(
        [detection_messages(prompt, system_prompt, answer)],
        chat_template=chat_template or CHAT_TEMPLATE,
        add_generation_prompt=answer is None,
        default_system_prompt=bool(system_prompt),
    )
    return text


def prompt_ids_from_tokenizer(tokenizer, prompt: str, system_prompt: str | None, labels, chat_template: str | None = None) -> dict:
    """`prompt_prefix_ids`, `prompt_suffix_ids` and `answer_token_ids` for a config, from the chat
    template given (Qwen2.5-VL's by default; `chat_template_for(config.backbone)` for a config's).

    Each label's answer must be one token (it is scored as the first generated token).
    """
    text = render_prompt(prompt, system_prompt, chat_template=chat_template)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if ids.count(image_id) != 1:
        raise ValueError(f"The prompt must hold exactly one image placeholder, got {ids.count(image_id)}.")
    cut = ids.index(image_id)
    answers = []
    for label in labels:
        answer_ids = tokenizer(label, add_special_tokens=False)["input_ids"]
        if len(answer_ids) != 1:
            raise ValueError(
                f"The answer {label!r} is {len(answer_ids)} tokens for this tokenizer; Deep-VRM scores single-token answers."
            )
        answers.append(answer_ids[0])
    return {"prompt_prefix_ids": ids[:cut], "prompt_suffix_ids": ids[cut + 1 :], "answer_token_ids": answers}


class DeepVRMImageProcessor(Qwen2VLImageProcessorPil):
    """Qwen2-VL image processor with the pixel budget fixed (min = max) to the paper's 512x512.

    Greyscale, palette and RGBA images are converted to RGB; images of any aspect ratio map to a
    patch grid of about the same number of tokens.
    """

    size = {"shortest_edge": DEFAULT_PIXELS, "longest_edge": DEFAULT_PIXELS}

    @classmethod
    def from_config(cls, config) -> "DeepVRMImageProcessor":
        """The image processor of a Deep-VRM config: its pixel budget, its backbone's patch size and
        pixel normalisation."""
        vision = config.vision_config
        mean, std = IMAGE_NORMALISATION.get(getattr(config, "backbone", None), IMAGE_NORMALISATION["qwen2_5_vl"])
        return cls(
            size={"shortest_edge": config.min_pixels, "longest_edge": config.max_pixels},
            patch_size=vision.patch_size,
            temporal_patch_size=vision.temporal_patch_size,
            merge_size=vision.spatial_merge_size,
            image_mean=list(mean),
            image_std=list(std),
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
            texts = [t.replace(IMAGE_PLACEHOLDER, VISION_SEGMENT) for t in texts]
            text = texts[0] if isinstance(text, str) else texts
        return super().__call__(images=images, text=text, **kwargs)

    def detection_inputs(self, images, prompt: str | None = None, answers=None, return_tensors: str = "pt", **kwargs):
        """Model inputs asking the detection question about each image (left-padded batch).

        `answers` (one string per image, optional) appends the assistant's answer, for training.
        """
        images = images if isinstance(images, (list, tuple)) else [images]
        answers = answers if answers is not None else [None] * len(images)
        texts = [render_prompt(prompt or self.prompt, self.system_prompt, answer, self.chat_template) for answer in answers]
        kwargs.setdefault("padding_side", "left")  # answers are read (or generated) at the last position
        return self(images=list(images), text=texts, padding=True, return_tensors=return_tensors, **kwargs)

    def configure_model(self, model_or_config, labels=DEFAULT_LABELS) -> None:
        """Write this tokenizer's prompt and answer token ids into a model's config."""
        config = getattr(model_or_config, "config", model_or_config)
        config.update(prompt_ids_from_tokenizer(self.tokenizer, config.prompt, config.system_prompt, config.labels or labels,
                                                chat_template=self.chat_template))

    def decode_answers(self, generated_ids, input_length: int) -> list[str]:
        """The generated answers, without the prompt."""
        return [s.strip() for s in self.batch_decode(generated_ids[:, input_length:], skip_special_tokens=True)]


# `save_pretrained` copies the processing files into the saved folder (custom code for `trust_remote_code`).
DeepVRMImageProcessor.register_for_auto_class("AutoImageProcessor")
DeepVRMProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["DeepVRMImageProcessor", "DeepVRMProcessor", "chat_template_for", "detection_messages", "prompt_ids_from_tokenizer",
           "render_prompt"]
