"""Deep-VRM's defaults and the shapes of the released checkpoints its presets and bare configs
describe, as plain Python values: no torch, no transformers, so the `deepvrm` command can build its
options (`--fusion`, the preset names) before anything heavy is imported. `configuration_deepvrm`
re-exports them all.
"""

from __future__ import annotations

DEFAULT_PROMPT = "Is this image real or fake? Please just answer 'real' or 'fake'."
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
DEFAULT_LABELS = ("real", "fake")
# The paper's fixed pixel budget: min_pixels = max_pixels = 512 * 512.
DEFAULT_PIXELS = 512 * 512
FUSIONS = ("mean", "add", "gated")
# What the official release hard-codes (nothing about it is written in its config.json).
OFFICIAL_INJECTION_LAYER = 16
OFFICIAL_FUSION = "mean"
# The backbones: the stock model_type of each, and the model_type of its Deep-VRM config.
BACKBONES = ("qwen2_5_vl", "qwen3_vl", "qwen3_5")
DEEPVRM_MODEL_TYPES = {"qwen2_5_vl": "deepvrm", "qwen3_vl": "deepvrm_qwen3_vl", "qwen3_5": "deepvrm_qwen3_5"}


def backbone_of(model_type: str | None) -> str | None:
    """The backbone a config's `model_type` belongs to (stock or Deep-VRM), or None."""
    for backbone, deepvrm_type in DEEPVRM_MODEL_TYPES.items():
        if model_type in (backbone, deepvrm_type):
            return backbone
    return None


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


# Qwen3-VL-8B-Instruct's config.json (Hub, Qwen/Qwen3-VL-8B-Instruct): what a bare DeepVRMQwen3VLConfig() is.
QWEN3_VL_8B_VISION_CONFIG = {
    "depth": 27,
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_heads": 16,
    "hidden_act": "gelu_pytorch_tanh",
    "in_channels": 3,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "num_position_embeddings": 2304,
    "deepstack_visual_indexes": [8, 16, 24],
    "out_hidden_size": 4096,
}
QWEN3_VL_8B_TEXT_CONFIG = {
    "vocab_size": 151936,
    "hidden_size": 4096,
    "intermediate_size": 12288,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 262144,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True},
}
# Qwen3.5-9B's config.json (Hub, Qwen/Qwen3.5-9B): what a bare DeepVRMQwen3_5Config() is.
QWEN3_5_9B_VISION_CONFIG = {
    "depth": 27,
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_heads": 16,
    "hidden_act": "gelu_pytorch_tanh",
    "in_channels": 3,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "num_position_embeddings": 2304,
    "out_hidden_size": 4096,
}
QWEN3_5_9B_TEXT_CONFIG = {
    "vocab_size": 248320,
    "hidden_size": 4096,
    "intermediate_size": 12288,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "linear_conv_kernel_dim": 4,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 262144,
    "rms_norm_eps": 1e-6,
    "eos_token_id": 248044,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                        "mrope_section": [11, 11, 10], "mrope_interleaved": True},
}
# Special-token ids of each backbone's tokenizer (its config.json's).
QWEN3_5_TOKENS = {"image_token_id": 248056, "video_token_id": 248057, "vision_start_token_id": 248053, "vision_end_token_id": 248054}
