"""Named model shapes. `tiny` and `small` are random-weight shapes for tests, demos and CPU
benchmarks; `qwen2.5-vl-3b` and `qwen2.5-vl-7b` are the exact shapes of Qwen2.5-VL-3B/7B-Instruct
plus the low-level tower (their weights come from a checkpoint; their prompt ids from its tokenizer).
"""

from __future__ import annotations

import copy
from typing import Any

from deepvrm.configuration_deepvrm import QWEN2_5_VL_7B_TEXT_CONFIG, QWEN2_5_VL_7B_VISION_CONFIG, DeepVRMConfig

# Qwen2.5-VL's vision tower (the same for 3B, 7B and 72B but for its output width) and text settings.
_QWEN_VISION = {k: v for k, v in QWEN2_5_VL_7B_VISION_CONFIG.items() if k != "out_hidden_size"}
_QWEN_TEXT = {k: QWEN2_5_VL_7B_TEXT_CONFIG[k] for k in (
    "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_parameters", "use_sliding_window",
    "sliding_window", "bos_token_id", "eos_token_id")}  # fmt: skip
_QWEN_TOKENS = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
}

PRESETS: dict[str, dict] = {
    "qwen2.5-vl-7b": {
        **_QWEN_TOKENS,
        "tie_word_embeddings": False,
        "vision_config": dict(QWEN2_5_VL_7B_VISION_CONFIG),
        "text_config": dict(QWEN2_5_VL_7B_TEXT_CONFIG),
        "injection_layer": 16,  # the paper's K
    },
    "qwen2.5-vl-3b": {
        **_QWEN_TOKENS,
        "tie_word_embeddings": True,
        "vision_config": {**_QWEN_VISION, "out_hidden_size": 2048},
        "text_config": {
            **_QWEN_TEXT,
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "max_window_layers": 70,
        },
        # Not from the paper: the same relative depth as 16 of 28 (57%), rounded down.
        "injection_layer": 20,
    },
    # Seconds on a CPU: 112x112 images -> 8x8 patches -> 16 image tokens in 4 attention windows.
    "tiny": {
        "tie_word_embeddings": False,
        "vision_config": {
            **_QWEN_VISION,
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
            "out_hidden_size": 64,
        },
        "text_config": {
            **_QWEN_TEXT,
            "vocab_size": 1024,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "max_window_layers": 4,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        },
        "injection_layer": 2,
        "min_pixels": 112 * 112,
        "max_pixels": 112 * 112,
        "_tiny_tokenizer": True,
    },
    # Wider and deeper than tiny, still CPU-friendly: stable CPU benchmark numbers and a demo model
    # that can learn something. 224x224 images -> 64 image tokens.
    "small": {
        "tie_word_embeddings": False,
        "vision_config": {
            **_QWEN_VISION,
            "depth": 4,
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_heads": 4,
            "fullatt_block_indexes": [1, 3],
            "out_hidden_size": 256,
        },
        "text_config": {
            **_QWEN_TEXT,
            "vocab_size": 1024,
            "hidden_size": 256,
            "intermediate_size": 512,
            "num_hidden_layers": 8,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "max_window_layers": 8,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
        },
        "injection_layer": 4,
        "min_pixels": 224 * 224,
        "max_pixels": 224 * 224,
        "_tiny_tokenizer": True,
    },
}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset_config_dict(name: str) -> dict:
    """The keyword arguments of `DeepVRMConfig` for a preset."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {preset_names()}.")
    config = copy.deepcopy(PRESETS[name])
    if config.pop("_tiny_tokenizer", False):
        # The small presets ship their own offline tokenizer, so their prompt ids are known here.
        from deepvrm.configuration_deepvrm import DEFAULT_LABELS, DEFAULT_PROMPT, DEFAULT_SYSTEM_PROMPT
        from deepvrm.processing_deepvrm import prompt_ids_from_tokenizer

        from .tokenizer import build_tiny_tokenizer, tiny_token_ids

        token_ids = tiny_token_ids()
        config.update({k: token_ids[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")})
        config["text_config"].update({k: token_ids[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")})
        config.update(
            prompt_ids_from_tokenizer(build_tiny_tokenizer(), DEFAULT_PROMPT, DEFAULT_SYSTEM_PROMPT, DEFAULT_LABELS)
        )
    return config


def preset_config(name: str, **overrides: Any) -> DeepVRMConfig:
    """A config from a named preset (`"tiny"`, `"small"`, `"qwen2.5-vl-3b"`, `"qwen2.5-vl-7b"`).

    Keyword arguments override fields, e.g. `preset_config("tiny", injection_layer=1)`; a dict given
    for `text_config` or `vision_config` updates the preset's sub-config instead of replacing it.
    """
    config = preset_config_dict(name)
    for key, value in overrides.items():
        if key in ("text_config", "vision_config") and isinstance(value, dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return DeepVRMConfig(**config)
