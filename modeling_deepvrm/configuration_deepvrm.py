"""Deep-VRM configs: a backbone's own config plus the few fields that make it Deep-VRM.

Deep-VRM keeps its backbone's architecture and adds a second vision tower whose image-token
embeddings are fused into the hidden states at the input of decoder layer `injection_layer`. One
config class per backbone, each subclassing that backbone's transformers config, so every helper
that reads it (`vision_config`, `text_config`, `image_token_id`, ...) works unchanged on ours:

    DeepVRMConfig          Qwen2_5_VLConfig   model_type "deepvrm"           (the paper; the official release)
    DeepVRMQwen3VLConfig   Qwen3VLConfig      model_type "deepvrm_qwen3_vl"
    DeepVRMQwen3_5Config   Qwen3_5Config      model_type "deepvrm_qwen3_5"

The Deep-VRM fields, their validation and helpers are one dataclass mixin (`DeepVRMConfigMixin`)
shared by all three. `from_pretrained` on any of them reads a folder of any backbone and returns that
backbone's config (so `DeepVRMConfig.from_pretrained(path)` works for every Deep-VRM folder), and a
plain checkpoint of a backbone (`qwen2_5_vl`, `qwen3_vl`, `qwen3_5`) reads as Deep-VRM with the
official settings (injection layer 16, mean fusion) unless the caller chooses others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PretrainedConfig, Qwen2_5_VLConfig, Qwen3_5Config, Qwen3VLConfig

from .defaults_deepvrm import (  # noqa: F401  (re-exported: what the model files and the package read)
    DEFAULT_PROMPT,
    DEFAULT_SYSTEM_PROMPT,
    DEFAULT_LABELS,
    DEFAULT_PIXELS,
    FUSIONS,
    OFFICIAL_INJECTION_LAYER,
    OFFICIAL_FUSION,
    BACKBONES,
    DEEPVRM_MODEL_TYPES,
    backbone_of,
    QWEN2_5_VL_7B_VISION_CONFIG,
    QWEN2_5_VL_7B_TEXT_CONFIG,
    QWEN3_VL_8B_VISION_CONFIG,
    QWEN3_VL_8B_TEXT_CONFIG,
    QWEN3_5_9B_VISION_CONFIG,
    QWEN3_5_9B_TEXT_CONFIG,
    QWEN3_5_TOKENS,
)


def _auto_map(modeling_file: str, prefix: str) -> dict:
    # Where `trust_remote_code` finds the classes in a saved folder: `save_pretrained` copies this file
    # and the modeling and processing files (and what they import) beside the weights. Every model class
    # is listed, not only the one that saved, so any Auto class loads any Deep-VRM folder. With deepvrm
    # installed the registered classes are used instead of the copies.
    return {
        "AutoConfig": f"configuration_deepvrm.{prefix}Config",
        "AutoModel": f"{modeling_file}.{prefix}Model",
        "AutoModelForImageClassification": f"{modeling_file}.{prefix}ForImageClassification",
        "AutoModelForImageTextToText": f"{modeling_file}.{prefix}ForConditionalGeneration",
    }


AUTO_MAP = _auto_map("modeling_deepvrm", "DeepVRM")  # Qwen2.5-VL, as every folder written before the other backbones
AUTO_MAPS = {
    "qwen2_5_vl": AUTO_MAP,
    "qwen3_vl": _auto_map("modeling_deepvrm_qwen3_vl", "DeepVRMQwen3VL"),
    "qwen3_5": _auto_map("modeling_deepvrm_qwen3_5", "DeepVRMQwen3_5"),
}


@dataclass(repr=False)
class DeepVRMConfigMixin:
    r"""
    The Deep-VRM fields of a config, whatever its backbone. All the backbone's fields (`text_config`,
    `vision_config`, `image_token_id`, ...) keep their meaning.

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
        System turn of the chat prompt (Qwen2.5-VL's default when built by the official code; none
        for Qwen3-VL and Qwen3.5, whose chat templates have no default system turn).
    answer_token_ids (`list[int]` or `None`):
        Token id of each label's answer, in `id2label` order (`[id("real"), id("fake")]`).
        Classification scores these two tokens at the answer position.
    prompt_prefix_ids / prompt_suffix_ids (`list[int]` or `None`):
        Token ids of the chat prompt before and after the run of image-placeholder tokens, so that
        the classification model can build its input ids from pixel values alone. Filled from a
        tokenizer by `DeepVRMProcessor.configure_model` / `prompt_ids_from_tokenizer`.
    min_pixels / max_pixels (`int`, default 262144):
        Pixel budget every image is resized to (the paper fixes both to 512x512; with Qwen3-VL's and
        Qwen3.5's 32-pixel merged patches a 512x512 image is 16x16 tokens, unresampled).
    low_level_tower (`str`, defaults to `"separate"`):
        `"separate"`: `visual_low_level` is a full second tower (the official layout).
        `"shared"`: the low-level encoder is `visual` plus LoRA deltas of rank `low_level_lora_rank`
        (`visual_low_level_lora.*`), with no second copy of the tower's weights. Convert with
        `model.share_vision_tower()` / `model.unshare_vision_tower()`.
    low_level_lora_rank (`int` or `None`):
        Rank of the shared tower's deltas (required when `low_level_tower="shared"`).
    """

    backbone = None  # the stock model_type this config extends (a class attribute, not a field)

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

    # The shapes a bare config describes (the backbone's flagship size of the presets).
    _default_text_config = None  # (plain class attributes, not fields)
    _default_vision_config = None
    _default_fields = None

    def __post_init__(self, **kwargs):
        if self.text_config is None and self.vision_config is None and "hidden_size" not in kwargs:
            self.text_config = dict(type(self)._default_text_config)
            self.vision_config = dict(type(self)._default_vision_config)
            for key, value in (type(self)._default_fields or {}).items():
                setattr(self, key, value)
        if self.id2label is None:
            self.id2label = dict(enumerate(DEFAULT_LABELS))
        super().__post_init__(**kwargs)
        # JSON turns int keys into strings; keep them ints so `config.id2label[0]` works after a reload.
        self.id2label = {int(k): v for k, v in self.id2label.items()}
        self.label2id = {v: k for k, v in self.id2label.items()}
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(AUTO_MAPS[self.backbone])

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
    def from_base_config(cls, base, **deepvrm_fields: Any):
        """Wrap a plain config of this backbone (object or dict) as a Deep-VRM config.

        Without overrides this gives what the official release hard-codes: injection layer 16 and
        mean fusion (pass `injection_layer` for a backbone of another depth).
        """
        config_dict = base.to_dict() if isinstance(base, PretrainedConfig) else dict(base)
        config_dict = _base_to_deepvrm_dict(config_dict, cls)
        config_dict.update(deepvrm_fields)
        return cls(**config_dict)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        # A folder of another backbone gets that backbone's config class (so one entry point reads all).
        target = config_class_for_path(pretrained_model_name_or_path, kwargs)
        if target is not None and target is not cls:
            return target.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        # A plain checkpoint of the backbone (e.g. the official release: `qwen2_5_vl` and nothing about
        # Deep-VRM) reads as Deep-VRM with the official hard-coded settings, not with a type warning.
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type") == cls.backbone:
            # Settings the caller passes (e.g. injection_layer for a smaller backbone) apply before validation.
            chosen = {k: kwargs[k] for k in ("injection_layer", "fusion") if k in kwargs}
            config_dict = {**_base_to_deepvrm_dict(config_dict, cls), **chosen}
        return config_dict, kwargs


def _base_to_deepvrm_dict(config_dict: dict, cls=None) -> dict:
    config_dict = {k: v for k, v in config_dict.items() if k not in ("model_type", "architectures", "auto_map")}
    if cls is not None and cls.backbone != "qwen2_5_vl" and "injection_layer" not in config_dict:
        # No official release to follow: the paper's relative depth, 16 of 28 layers.
        text = config_dict.get("text_config") or {}
        layers = text.get("num_hidden_layers") if isinstance(text, dict) else getattr(text, "num_hidden_layers", None)
        if layers:
            config_dict["injection_layer"] = min(layers - 1, max(1, round(layers * 16 / 28)))
    config_dict.setdefault("injection_layer", OFFICIAL_INJECTION_LAYER)
    config_dict.setdefault("fusion", OFFICIAL_FUSION)
    # Stock configs carry a generic LABEL_0/LABEL_1 map; ours names the two answers.
    config_dict["id2label"] = dict(enumerate(DEFAULT_LABELS))
    config_dict.pop("label2id", None)
    return config_dict


_official_to_deepvrm_dict = _base_to_deepvrm_dict  # the name it had while Qwen2.5-VL was the only backbone


@strict
class DeepVRMConfig(DeepVRMConfigMixin, Qwen2_5_VLConfig):
    r"""
    Configuration of a Deep-VRM model on Qwen2.5-VL (the paper's backbone and the official release's):
    a Qwen2.5-VL config plus the Deep-VRM fields of `DeepVRMConfigMixin`. A bare `DeepVRMConfig()` is
    the paper's model (Qwen2.5-VL-7B; token ids are Qwen2_5_VLConfig's defaults).
    """

    model_type = "deepvrm"
    backbone = "qwen2_5_vl"
    _default_text_config = QWEN2_5_VL_7B_TEXT_CONFIG
    _default_vision_config = QWEN2_5_VL_7B_VISION_CONFIG

    @classmethod
    def from_qwen2_5_vl_config(cls, base: Qwen2_5_VLConfig | dict, **deepvrm_fields: Any) -> "DeepVRMConfig":
        """Wrap a plain Qwen2.5-VL config (object or dict) as a Deep-VRM config (see `from_base_config`)."""
        return cls.from_base_config(base, **deepvrm_fields)


@strict
class DeepVRMQwen3VLConfig(DeepVRMConfigMixin, Qwen3VLConfig):
    r"""
    Configuration of a Deep-VRM model on Qwen3-VL: a Qwen3-VL config plus the Deep-VRM fields of
    `DeepVRMConfigMixin`. A bare `DeepVRMQwen3VLConfig()` is Qwen3-VL-8B-Instruct's shape.
    """

    model_type = "deepvrm_qwen3_vl"
    backbone = "qwen3_vl"
    system_prompt: str | None = None  # Qwen3-VL's chat template has no default system turn
    _default_text_config = QWEN3_VL_8B_TEXT_CONFIG
    _default_vision_config = QWEN3_VL_8B_VISION_CONFIG
    _default_fields = {"injection_layer": 21}  # the paper's relative depth, 16/28 of 36 layers


@strict
class DeepVRMQwen3_5Config(DeepVRMConfigMixin, Qwen3_5Config):
    r"""
    Configuration of a Deep-VRM model on Qwen3.5 (hybrid linear/full-attention decoder): a Qwen3.5
    config plus the Deep-VRM fields of `DeepVRMConfigMixin`. A bare `DeepVRMQwen3_5Config()` is
    Qwen3.5-9B's shape.
    """

    model_type = "deepvrm_qwen3_5"
    backbone = "qwen3_5"
    system_prompt: str | None = None  # Qwen3.5's chat template has no default system turn
    _default_text_config = QWEN3_5_9B_TEXT_CONFIG
    _default_vision_config = QWEN3_5_9B_VISION_CONFIG
    _default_fields = {"injection_layer": 18}  # the paper's relative depth, 16/28 of 32 layers


CONFIG_CLASSES = {"qwen2_5_vl": DeepVRMConfig, "qwen3_vl": DeepVRMQwen3VLConfig, "qwen3_5": DeepVRMQwen3_5Config}


def config_class_for_path(path, kwargs: dict | None = None):
    """The Deep-VRM config class of the backbone a folder or Hub id holds, or None when it holds none
    of them (then the caller's class reports what is wrong)."""
    kwargs = kwargs or {}
    hub = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only", "subfolder") if k in kwargs}
    try:
        config_dict, _ = PretrainedConfig.get_config_dict(os.fspath(path) if isinstance(path, os.PathLike) else path, **hub)
    except Exception:  # noqa: BLE001  (the caller's own load reports it)
        return None
    return CONFIG_CLASSES.get(backbone_of(config_dict.get("model_type")))


# `save_pretrained` copies this file into the saved folder (custom code for `trust_remote_code`).
for _config_class in CONFIG_CLASSES.values():
    _config_class.register_for_auto_class()

__all__ = ["DeepVRMConfig", "DeepVRMConfigMixin", "DeepVRMQwen3VLConfig", "DeepVRMQwen3_5Config"]
