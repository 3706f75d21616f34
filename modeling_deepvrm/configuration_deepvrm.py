"""`DeepVRMConfig`: a Qwen2.5-VL config plus the few fields that make it Deep-VRM.

Deep-VRM keeps the Qwen2.5-VL architecture and adds a second vision tower whose image-token
embeddings are fused into the hidden states at the input of decoder layer `injection_layer`.
Subclassing `Qwen2_5_VLConfig` means every transformers helper that reads a Qwen2.5-VL config
(`vision_config`, `text_config`, `image_token_id`, ...) works unchanged on ours.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import Qwen2_5_VLConfig

DEFAULT_PROMPT = "Is this image real or fake? Please just answer 'real' or 'fake'."
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
DEFAULT_LABELS = ("real", "fake")
# The paper's fixed pixel budget: min_pixels = max_pixels = 512 * 512.
DEFAULT_PIXELS = 512 * 512
FUSIONS = ("mean", "add", "gated")
# What the official release hard-codes (nothing about it is written in its config.json).
OFFICIAL_INJECTION_LAYER = 16
OFFICIAL_FUSION = "mean"
# Where `trust_remote_code` finds the classes in a saved folder: `save_pretrained` copies this file,
# modeling_deepvrm.py and processing_deepvrm.py (and what they import) beside the weights. Every model
# class is listed, not only the one that saved, so any Auto class loads any Deep-VRM folder. With
# deepvrm installed the registered classes are used instead of the copies.
AUTO_MAP = {
    "AutoConfig": "configuration_deepvrm.DeepVRMConfig",
    "AutoModel": "modeling_deepvrm.DeepVRMModel",
    "AutoModelForImageClassification": "modeling_deepvrm.DeepVRMForImageClassification",
    "AutoModelForImageTextToText": "modeling_deepvrm.DeepVRMForConditionalGeneration",
}
# The paper's backbone, Qwen2.5-VL-7B-Instruct (its config.json on the Hub): what a bare
# `DeepVRMConfig()` describes. Qwen2_5_VLConfig's own defaults mix a 72B text model with a 7B vision tower.
QWEN2_5_VL_7B_VISION_CONFIG = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "hidden_act": "silu",
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "tokens_per_second": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "out_hidden_size": 3584,
}
QWEN2_5_VL_7B_TEXT_CONFIG = {
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    "use_sliding_window": False,
    "sliding_window": 32768,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_window_layers": 28,
}


@strict
class DeepVRMConfig(Qwen2_5_VLConfig):
    r"""
    Configuration of a Deep-VRM model: a Qwen2.5-VL model with a low-level vision encoder
    (`visual_low_level`, same shape as `visual`) injected as a residual into the decoder.

    All Qwen2.5-VL fields (`text_config`, `vision_config`, `image_token_id`, ...) keep their
    meaning. The Deep-VRM fields:

    injection_layer (`int`, defaults to 16):
        Index of the first decoder layer that sees the fused hidden states, i.e. the fusion runs
        after layer `injection_layer - 1`. Must lie in `1 .. num_hidden_layers - 1`. The paper
        uses 16 of Qwen2.5-VL-7B's 28 layers.
    fusion (`str`, defaults to `"mean"`):
        How the low-level embeddings `r` enter the hidden states `h` at image-token positions:
        `"mean"`: `(h + r) / 2` (the paper); `"add"`: `h + r`; `"gated"`: `h + g * r` with a learned
        per-channel gate `g` initialised to zero, so a fresh model equals its base model.
    prompt (`str`):
        The user-turn text that precedes the image, as in the paper's instruction data.
    system_prompt (`str` or `None`):
        System turn of the chat prompt (Qwen2.5-VL's default when built by the official code).
    answer_token_ids (`list[int]` or `None`):
        Token id of each label's answer, in `id2label` order (`[id("real"), id("fake")]`).
        Classification scores these two tokens at the answer position.
    prompt_prefix_ids / prompt_suffix_ids (`list[int]` or `None`):
        Token ids of the chat prompt before and after the run of image-placeholder tokens, so that
        `DeepVRMForImageClassification` can build its input ids from pixel values alone. Filled
        from a tokenizer by `DeepVRMProcessor.configure_model` / `set_prompt_ids_from_tokenizer`.
    min_pixels / max_pixels (`int`, default 262144):
        Pixel budget every image is resized to (the paper fixes both to 512x512).
    low_level_tower (`str`, defaults to `"separate"`):
        `"separate"`: `visual_low_level` is a full second tower (the official layout).
        `"shared"`: the low-level encoder is `visual` plus LoRA deltas of rank `low_level_lora_rank`
        (`visual_low_level_lora.*`), with no second copy of the tower's weights. Convert with
        `model.share_vision_tower()` / `model.unshare_vision_tower()`.
    low_level_lora_rank (`int` or `None`):
        Rank of the shared tower's deltas (required when `low_level_tower="shared"`).
    """

    model_type = "deepvrm"

    injection_layer: int = OFFICIAL_INJECTION_LAYER
    fusion: str = OFFICIAL_FUSION
    prompt: str = DEFAULT_PROMPT
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    answer_token_ids: list[int] | None = None
    prompt_prefix_ids: list[int] | None = None
    prompt_suffix_ids: list[int] | None = None
    min_pixels: int = DEFAULT_PIXELS
    max_pixels: int = DEFAULT_PIXELS
    low_level_tower: str = "separate"
    low_level_lora_rank: int | None = None

    def __post_init__(self, **kwargs):
        if self.text_config is None and self.vision_config is None and "hidden_size" not in kwargs:
            # A bare DeepVRMConfig() is the paper's model (Qwen2.5-VL-7B); token ids are Qwen2_5_VLConfig's defaults.
            self.text_config = dict(QWEN2_5_VL_7B_TEXT_CONFIG)
            self.vision_config = dict(QWEN2_5_VL_7B_VISION_CONFIG)
        if self.id2label is None:
            self.id2label = dict(enumerate(DEFAULT_LABELS))
        super().__post_init__(**kwargs)
        # JSON turns int keys into strings; keep them ints so `config.id2label[0]` works after a reload.
        self.id2label = {int(k): v for k, v in self.id2label.items()}
        self.label2id = {v: k for k, v in self.id2label.items()}
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(AUTO_MAP)

    # ------------------------------------------------------------------ validation
    def validate_deepvrm(self):
        """Part of `@strict` validation: the Deep-VRM fields must describe a runnable model."""
        num_layers = self.text_config.num_hidden_layers
        if not isinstance(self.injection_layer, int) or not 1 <= self.injection_layer <= num_layers - 1:
            raise ValueError(
                f"injection_layer must be an integer in 1..{num_layers - 1} (the decoder has {num_layers} "
                f"layers, and the fusion runs after layer injection_layer - 1), got {self.injection_layer!r}."
            )
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}.")
        if self.vision_config.out_hidden_size != self.text_config.hidden_size:
            raise ValueError(
                f"vision_config.out_hidden_size ({self.vision_config.out_hidden_size}) must equal "
                f"text_config.hidden_size ({self.text_config.hidden_size}): image embeddings replace token embeddings."
            )
        if len(self.id2label) != 2:
            raise ValueError(f"Deep-VRM has exactly two labels (real, fake), got id2label={self.id2label}.")
        vocab_size = self.text_config.vocab_size
        if self.answer_token_ids is not None:
            ids = list(self.answer_token_ids)
            if len(ids) != len(self.id2label) or len(set(ids)) != len(ids):
                raise ValueError(
                    f"answer_token_ids must hold one distinct token id per label {list(self.id2label.values())}, got {ids}."
                )
            if not all(isinstance(i, int) and 0 <= i < vocab_size for i in ids):
                raise ValueError(f"answer_token_ids must lie in 0..{vocab_size - 1}, got {ids}.")
        for name in ("prompt_prefix_ids", "prompt_suffix_ids"):
            ids = getattr(self, name)
            if ids is not None and not all(isinstance(i, int) and 0 <= i < vocab_size for i in ids):
                raise ValueError(f"{name} must be token ids in 0..{vocab_size - 1}.")
        if (self.prompt_prefix_ids is None) != (self.prompt_suffix_ids is None):
            raise ValueError("prompt_prefix_ids and prompt_suffix_ids must be set together.")
        if self.low_level_tower not in ("separate", "shared"):
            raise ValueError(f"low_level_tower must be 'separate' or 'shared', got {self.low_level_tower!r}.")
        if self.low_level_tower == "shared" and not (isinstance(self.low_level_lora_rank, int) and self.low_level_lora_rank >= 1):
            raise ValueError("low_level_tower='shared' needs low_level_lora_rank >= 1.")
        unit = self.vision_config.patch_size * self.vision_config.spatial_merge_size
        if not unit * unit <= self.min_pixels <= self.max_pixels:
            raise ValueError(
                f"Need {unit * unit} <= min_pixels <= max_pixels (one {unit}x{unit} merged patch at least), "
                f"got min_pixels={self.min_pixels}, max_pixels={self.max_pixels}."
            )

    # ------------------------------------------------------------------ helpers
    @property
    def has_prompt_ids(self) -> bool:
        return self.prompt_prefix_ids is not None and self.answer_token_ids is not None

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in sorted(self.id2label)]

    @classmethod
    def from_qwen2_5_vl_config(cls, base: Qwen2_5_VLConfig | dict, **deepvrm_fields: Any) -> "DeepVRMConfig":
        """Wrap a plain Qwen2.5-VL config (object or dict) as a Deep-VRM config.

        Without overrides this gives what the official release hard-codes: injection layer 16 and
        mean fusion.
        """
        config_dict = base.to_dict() if isinstance(base, Qwen2_5_VLConfig) else dict(base)
        config_dict = _official_to_deepvrm_dict(config_dict)
        config_dict.update(deepvrm_fields)
        return cls(**config_dict)

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        # The official checkpoint's config.json says `qwen2_5_vl` and nothing about Deep-VRM; read it
        # as Deep-VRM with the official hard-coded settings instead of warning about a type mismatch.
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type") == "qwen2_5_vl":
            # Settings the caller passes (e.g. injection_layer for a smaller backbone) apply before validation.
            chosen = {k: kwargs[k] for k in ("injection_layer", "fusion") if k in kwargs}
            config_dict = {**_official_to_deepvrm_dict(config_dict), **chosen}
        return config_dict, kwargs


def _official_to_deepvrm_dict(config_dict: dict) -> dict:
    config_dict = {k: v for k, v in config_dict.items() if k not in ("model_type", "architectures", "auto_map")}
    config_dict.setdefault("injection_layer", OFFICIAL_INJECTION_LAYER)
    config_dict.setdefault("fusion", OFFICIAL_FUSION)
    # Qwen2.5-VL configs carry a generic LABEL_0/LABEL_1 map; ours names the two answers.
    config_dict["id2label"] = dict(enumerate(DEFAULT_LABELS))
    config_dict.pop("label2id", None)
    return config_dict


# `save_pretrained` copies this file into the saved folder (custom code for `trust_remote_code`).
DeepVRMConfig.register_for_auto_class()

__all__ = ["DeepVRMConfig"]
