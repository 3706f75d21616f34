"""Named model shapes, per backbone. `tiny`, `small` (Qwen2.5-VL), `tiny-qwen3-vl` and `tiny-qwen3.5`
are random-weight shapes for tests, demos and CPU benchmarks, with an offline tokenizer each; the
others are the exact shapes of released checkpoints plus the low-level tower (their weights come
from the checkpoint; their prompt ids from its tokenizer):

    preset           checkpoint (config.json on the Hub)   stock parameters      Deep-VRM (+ visual_low_level)
    qwen2.5-vl-3b    Qwen/Qwen2.5-VL-3B-Instruct            3,754,622,976         4,423,307,264
    qwen2.5-vl-7b    Qwen/Qwen2.5-VL-7B-Instruct            8,292,166,656         8,968,716,800
    qwen3-vl-2b      Qwen/Qwen3-VL-2B-Instruct              2,127,532,032         2,534,489,088
    qwen3-vl-4b      Qwen/Qwen3-VL-4B-Instruct              4,437,815,808         4,853,163,520
    qwen3-vl-8b      Qwen/Qwen3-VL-8B-Instruct              8,767,123,696         9,343,512,032
    qwen3.5-0.8b     Qwen/Qwen3.5-0.8B                        852,985,920           953,578,816
    qwen3.5-2b       Qwen/Qwen3.5-2B                        2,213,241,664         2,544,658,240
    qwen3.5-4b       Qwen/Qwen3.5-4B                        4,539,265,536         4,872,779,776
    qwen3.5-9b       Qwen/Qwen3.5-9B                        9,409,813,744         9,865,824,224

Stock parameters: the backbone's transformers model on the meta device (tests/test_config.py checks
every number). They equal the Hub's safetensors totals for Qwen2.5-VL and Qwen3-VL (the model pages
show 3.75B, 8.29B, 2.13B, 4.44B, 8.77B). Qwen3.5 checkpoints also hold a multi-token-prediction head
(`mtp.*`, e.g. ~464 MiB in Qwen3.5-9B) that transformers leaves out when it loads them, so the Hub's
totals are larger by that; Qwen3.5-9B's language model alone is 8,953,803,264 parameters, the 8.95B
that llama.cpp reports for its text-only GGUF, and its model card's "9B".
Shapes: Qwen2.5-VL from its config.json; Qwen3-VL-2B from Qwen/Qwen3-VL-2B-Instruct@89644892, 4B and 8B
from their config.json (transformers 4.57.0.dev0); Qwen3.5 from their config.json (all sizes: head_dim
256, 16 linear-attention key heads of 128, conv kernel 4, full attention every 4th layer, vocab 248320).
Injection layers not given by the paper keep its relative depth, 16 of 28 layers
(`deepvrm.modeling_deepvrm.default_injection_layer`).
"""

from __future__ import annotations

import copy
from typing import Any

# Plain values (no torch): `deepvrm init --help` lists the presets at once; the config classes are
# imported where a config is built.
from deepvrm.defaults_deepvrm import (
    QWEN2_5_VL_7B_TEXT_CONFIG,
    QWEN2_5_VL_7B_VISION_CONFIG,
    QWEN3_5_9B_TEXT_CONFIG,
    QWEN3_5_9B_VISION_CONFIG,
    QWEN3_5_TOKENS,
    QWEN3_VL_8B_TEXT_CONFIG,
    QWEN3_VL_8B_VISION_CONFIG,
)

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

# Qwen3-VL: the vision settings all sizes share, and the text settings.
_QWEN3_VL_VISION = {k: QWEN3_VL_8B_VISION_CONFIG[k] for k in (
    "hidden_act", "in_channels", "patch_size", "spatial_merge_size", "temporal_patch_size", "num_position_embeddings")}  # fmt: skip
_QWEN3_VL_TEXT = {k: QWEN3_VL_8B_TEXT_CONFIG[k] for k in (
    "vocab_size", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_parameters")}  # fmt: skip
_QWEN3_VL_SMALL_VISION = {**_QWEN3_VL_VISION, "depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
                          "deepstack_visual_indexes": [5, 11, 17]}  # 2B and 4B  # fmt: skip
_QWEN3_TOKENS = dict(_QWEN_TOKENS)  # the same ids as Qwen2.5-VL's
# Qwen3.5: the same for every dense size.
_QWEN3_5_VISION = {k: QWEN3_5_9B_VISION_CONFIG[k] for k in (
    "hidden_act", "in_channels", "patch_size", "spatial_merge_size", "temporal_patch_size", "num_position_embeddings")}  # fmt: skip
_QWEN3_5_TEXT = {k: QWEN3_5_9B_TEXT_CONFIG[k] for k in (
    "vocab_size", "head_dim", "linear_conv_kernel_dim", "linear_key_head_dim", "linear_value_head_dim",
    "linear_num_key_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "eos_token_id", "rope_parameters")}  # fmt: skip
_QWEN3_5_SMALL_VISION = {**_QWEN3_5_VISION, "depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16}  # 2B, 4B

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
    # ------------------------------------------------------------------------------------ Qwen3-VL
    "qwen3-vl-2b": {
        "_backbone": "qwen3_vl",
        **_QWEN3_TOKENS,
        "tie_word_embeddings": True,
        "vision_config": {**_QWEN3_VL_SMALL_VISION, "out_hidden_size": 2048},
        "text_config": {**_QWEN3_VL_TEXT, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
                        "num_attention_heads": 16, "num_key_value_heads": 8},
        "injection_layer": 16,  # 28 layers, as the paper's 7B
    },
    "qwen3-vl-4b": {
        "_backbone": "qwen3_vl",
        **_QWEN3_TOKENS,
        "tie_word_embeddings": True,
        "vision_config": {**_QWEN3_VL_SMALL_VISION, "out_hidden_size": 2560},
        "text_config": {**_QWEN3_VL_TEXT, "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
                        "num_attention_heads": 32, "num_key_value_heads": 8},
        "injection_layer": 21,  # 16/28 of 36
    },
    "qwen3-vl-8b": {
        "_backbone": "qwen3_vl",
        **_QWEN3_TOKENS,
        "tie_word_embeddings": False,
        "vision_config": dict(QWEN3_VL_8B_VISION_CONFIG),
        "text_config": dict(QWEN3_VL_8B_TEXT_CONFIG),
        "injection_layer": 21,  # 16/28 of 36
    },
    # Seconds on a CPU: 128x128 images -> 8x8 patches of 16 pixels -> 16 image tokens. DeepStack from
    # both vision blocks enters after decoder layers 0 and 1, before the injection at layer 2.
    "tiny-qwen3-vl": {
        "_backbone": "qwen3_vl",
        "tie_word_embeddings": False,
        "vision_config": {**_QWEN3_VL_VISION, "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                          "num_position_embeddings": 64, "deepstack_visual_indexes": [0, 1], "out_hidden_size": 64},
        "text_config": {**_QWEN3_VL_TEXT, "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128,
                        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                        "max_position_embeddings": 4096,
                        "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [2, 3, 3],
                                            "mrope_interleaved": True}},
        "injection_layer": 2,
        "min_pixels": 128 * 128,
        "max_pixels": 128 * 128,
        "_tiny_tokenizer": True,
    },
    # ------------------------------------------------------------------------------------ Qwen3.5
    "qwen3.5-0.8b": {
        "_backbone": "qwen3_5",
        **QWEN3_5_TOKENS,
        "tie_word_embeddings": True,
        "vision_config": {**_QWEN3_5_VISION, "depth": 12, "hidden_size": 768, "intermediate_size": 3072, "num_heads": 12,
                          "out_hidden_size": 1024},
        "text_config": {**_QWEN3_5_TEXT, "hidden_size": 1024, "intermediate_size": 3584, "num_hidden_layers": 24,
                        "num_attention_heads": 8, "num_key_value_heads": 2, "linear_num_value_heads": 16,
                        "tie_word_embeddings": True},
        "injection_layer": 14,  # 16/28 of 24
    },
    "qwen3.5-2b": {
        "_backbone": "qwen3_5",
        **QWEN3_5_TOKENS,
        "tie_word_embeddings": True,
        "vision_config": {**_QWEN3_5_SMALL_VISION, "out_hidden_size": 2048},
        "text_config": {**_QWEN3_5_TEXT, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 24,
                        "num_attention_heads": 8, "num_key_value_heads": 2, "linear_num_value_heads": 16,
                        "tie_word_embeddings": True},
        "injection_layer": 14,  # 16/28 of 24
    },
    "qwen3.5-4b": {
        "_backbone": "qwen3_5",
        **QWEN3_5_TOKENS,
        "tie_word_embeddings": True,
        "vision_config": {**_QWEN3_5_SMALL_VISION, "out_hidden_size": 2560},
        "text_config": {**_QWEN3_5_TEXT, "hidden_size": 2560, "intermediate_size": 9216, "num_hidden_layers": 32,
                        "num_attention_heads": 16, "num_key_value_heads": 4, "linear_num_value_heads": 32,
                        "tie_word_embeddings": True},
        "injection_layer": 18,  # 16/28 of 32
    },
    "qwen3.5-9b": {
        "_backbone": "qwen3_5",
        **QWEN3_5_TOKENS,
        "tie_word_embeddings": False,
        "vision_config": dict(QWEN3_5_9B_VISION_CONFIG),
        "text_config": dict(QWEN3_5_9B_TEXT_CONFIG),
        "injection_layer": 18,  # 16/28 of 32
    },
    # Seconds on a CPU: 128x128 images -> 16 image tokens; layers 0-2 linear attention, 3 full attention.
    "tiny-qwen3.5": {
        "_backbone": "qwen3_5",
        "tie_word_embeddings": False,
        "vision_config": {**_QWEN3_5_VISION, "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                          "num_position_embeddings": 64, "out_hidden_size": 64},
        "text_config": {**_QWEN3_5_TEXT, "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128,
                        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                        "linear_key_head_dim": 8, "linear_value_head_dim": 8, "linear_num_key_heads": 2,
                        "linear_num_value_heads": 4, "max_position_embeddings": 4096,
                        "rope_parameters": {"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                                            "mrope_section": [1, 1, 0], "mrope_interleaved": True}},
        "injection_layer": 2,
        "min_pixels": 128 * 128,
        "max_pixels": 128 * 128,
        "_tiny_tokenizer": True,
    },
}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset_backbone(name: str) -> str:
    """The backbone of a preset (`qwen2_5_vl`, `qwen3_vl`, `qwen3_5`)."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {preset_names()}.")
    return PRESETS[name].get("_backbone", "qwen2_5_vl")


def preset_config_dict(name: str) -> dict:
    """The keyword arguments of the backbone's Deep-VRM config class for a preset."""
    backbone = preset_backbone(name)
    config = copy.deepcopy(PRESETS[name])
    config.pop("_backbone", None)
    if config.pop("_tiny_tokenizer", False):
        # The small presets ship their own offline tokenizer, so their prompt ids are known here.
        from deepvrm.configuration_deepvrm import DEFAULT_LABELS, DEFAULT_PROMPT
        from deepvrm.processing_deepvrm import prompt_ids_from_tokenizer

        from .tokenizer import build_tiny_tokenizer, tiny_token_ids

        from deepvrm.processing_deepvrm import chat_template_for

        token_ids = tiny_token_ids()
        config.update({k: token_ids[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")})
        config["text_config"].update({k: token_ids[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")})
        from deepvrm.configuration_deepvrm import CONFIG_CLASSES

        system_prompt = CONFIG_CLASSES[backbone].system_prompt  # the backbone's default (none for Qwen3-VL/3.5)
        config.update(
            prompt_ids_from_tokenizer(build_tiny_tokenizer(backbone), DEFAULT_PROMPT, system_prompt, DEFAULT_LABELS,
                                      chat_template=chat_template_for(backbone))
        )
    return config


def preset_config(name: str, **overrides: Any):
    """A config from a named preset (`preset_names()`), of its backbone's config class.

    Keyword arguments override fields, e.g. `preset_config("tiny", injection_layer=1)`; a dict given
    for `text_config` or `vision_config` updates the preset's sub-config instead of replacing it.
    """
    config = preset_config_dict(name)
    for key, value in overrides.items():
        if key in ("text_config", "vision_config") and isinstance(value, dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    from deepvrm.configuration_deepvrm import CONFIG_CLASSES

    return CONFIG_CLASSES[preset_backbone(name)](**config)
