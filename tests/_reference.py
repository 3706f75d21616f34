"""An independent Deep-VRM forward: stock transformers Qwen2.5-VL modules driven by hand.

It shares no code with `deepvrm.modeling_deepvrm` / `deepvrm.injection`: the decoder loop, the causal
mask, the M-RoPE positions and the fusion formula are written out here from the paper's
definition (README.md, "How it works": after layer K-1, h[image] = (h[image] + r) / 2, text
positions untouched), so a test comparing the two checks the injection, not itself.
"""

from __future__ import annotations

import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

DEEPVRM_ONLY = {
    "injection_layer", "fusion", "prompt", "system_prompt", "answer_token_ids",
    "prompt_prefix_ids", "prompt_suffix_ids", "min_pixels", "max_pixels", "auto_map",
    "model_type", "architectures", "id2label", "label2id",
}


def stock_models_from(deepvrm_model):
    """A stock Qwen2.5-VL and a stock vision tower holding the Deep-VRM model's weights."""
    config_dict = {k: v for k, v in deepvrm_model.config.to_dict().items() if k not in DEEPVRM_ONLY}
    return load_stock_models(deepvrm_model, Qwen2_5_VLConfig(**config_dict), Qwen2_5_VLForConditionalGeneration,
                             Qwen2_5_VisionTransformerPretrainedModel)


def load_stock_models(deepvrm_model, config, model_class, tower_class):
    """`model_class` holding the Deep-VRM model's base weights and `tower_class` its low-level tower's
    (eager attention: the reference forward drives the stock layers by hand)."""
    config._attn_implementation = "eager"
    base = model_class(config).eval()
    state = deepvrm_model.state_dict()
    prefix = "model.visual_low_level."
    base_state = {k: v for k, v in state.items() if not k.startswith(prefix) and ".fusion." not in k}
    missing, unexpected = base.load_state_dict(base_state, strict=False)
    assert not unexpected and all("inv_freq" in k for k in missing), (missing, unexpected)
    low = tower_class._from_config(config.vision_config).eval()
    low.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return base, low


@torch.no_grad()
def reference_logits(base, low, input_ids, attention_mask, pixel_values, image_grid_thw,
                     injection_layer, fusion="mean", gate=None):
    """Logits [batch, seq, vocab] of Deep-VRM computed from the paper's definition."""
    cfg = base.config
    lm = base.model.language_model
    batch, seq = input_ids.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)

    image_mask = input_ids == cfg.image_token_id
    embeds = lm.embed_tokens(input_ids)
    semantic = base.model.visual(pixel_values, grid_thw=image_grid_thw).pooler_output
    low_level = low(pixel_values, grid_thw=image_grid_thw).pooler_output
    embeds[image_mask] = semantic

    # M-RoPE positions: text tokens count up; each image's tokens take (t, row, col) offsets.
    token_types = image_mask.int()
    positions, _ = base.model.get_rope_index(
        input_ids, mm_token_type_ids=token_types, image_grid_thw=image_grid_thw, attention_mask=attention_mask
    )
    position_embeddings = lm.rotary_emb(embeds, positions)

    # Additive causal + padding mask, [batch, 1, seq, seq].
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    allowed = causal[None] & attention_mask.bool()[:, None, :]
    mask = torch.zeros(batch, 1, seq, seq)
    mask.masked_fill_(~allowed[:, None], torch.finfo(torch.float32).min)

    hidden = embeds
    for index, layer in enumerate(lm.layers):
        if index == injection_layer:
            h = hidden[image_mask]
            if fusion == "mean":
                h = (h + low_level) / 2
            elif fusion == "add":
                h = h + low_level
            else:
                h = h + gate * low_level
            hidden = hidden.clone()
            hidden[image_mask] = h
        hidden = layer(hidden, attention_mask=mask, position_embeddings=position_embeddings)
    return base.lm_head(lm.norm(hidden))
