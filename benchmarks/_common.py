"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import torch

from deepvrm import deepvrm_class
from deepvrm.fast_vision import use_fast_vision_modules


def base_model_sharing_weights(deepvrm_model):
    """The plain model of the backbone inside a Deep-VRM (no low-level tower, no injection), holding
    the same tensors (no copy) and the same vision engine, so timing it gives the floor Deep-VRM is
    compared against."""
    config = deepvrm_model.config
    stock = deepvrm_class(config.backbone, "stock")
    base_config = stock.config_class(
        text_config=config.text_config.to_dict(), vision_config=config.vision_config.to_dict(),
        image_token_id=config.image_token_id, video_token_id=config.video_token_id,
        vision_start_token_id=config.vision_start_token_id, vision_end_token_id=config.vision_end_token_id,
        tie_word_embeddings=config.tie_word_embeddings,
    )
    base_config._attn_implementation = config._attn_implementation or "sdpa"
    with torch.device("meta"):
        base = stock(base_config)
    state = {k: v for k, v in deepvrm_model.state_dict().items()
             if "visual_low_level" not in k and ".fusion." not in k}
    if "lm_head.weight" not in state:  # a bare DeepVRMModel
        raise ValueError("Need a model with an LM head (chat or classification class).")
    base.load_state_dict(state, assign=True, strict=True)
    for name, buffer in deepvrm_model.named_buffers():
        if "visual_low_level" not in name:
            module, _, leaf = name.rpartition(".")
            base.get_submodule(module)._buffers[leaf] = buffer
    if config.backbone == "qwen2_5_vl":  # the faster modules of fast_vision.py are Qwen2.5-VL's
        use_fast_vision_modules(base.model.visual)
    return base.eval()
