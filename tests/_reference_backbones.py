"""An independent Deep-VRM forward for Qwen3-VL and Qwen3.5: stock transformers modules driven by hand.

As tests/_reference.py does for Qwen2.5-VL, it shares no code with `deepvrm`'s model files: the
decoder loop, the masks, and the fusion formula are written out here from the paper's definition
(README.md, "How it works": after layer K-1, h[image] = (h[image] + r) / 2, text positions
untouched, r the low-level tower's merged image embeddings). Per backbone, what the stock text model
does besides its layers is also written out:

- Qwen3-VL: after each of the first decoder layers its DeepStack features (from the *semantic*
  tower) are added at the image positions; the low-level tower's DeepStack features are unused.
- Qwen3.5: linear-attention layers get the 2-D padding mask (they zero padded positions), full-
  attention layers the additive causal mask; positions come from the same M-RoPE index.
"""

from __future__ import annotations

import torch
from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration, Qwen3VLConfig, Qwen3VLForConditionalGeneration
from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5VisionModel
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

from _reference import DEEPVRM_ONLY, load_stock_models

STOCK = {
    "deepvrm_qwen3_vl": (Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLVisionModel),
    "deepvrm_qwen3_5": (Qwen3_5Config, Qwen3_5ForConditionalGeneration, Qwen3_5VisionModel),
}
EXTRA = {"low_level_tower", "low_level_lora_rank"}


def stock_config_from(deepvrm_config):
    """The stock config (Qwen3-VL or Qwen3.5) holding a Deep-VRM config's shapes."""
    config_class, _, _ = STOCK[deepvrm_config.model_type]
    return config_class(**{k: v for k, v in deepvrm_config.to_dict().items() if k not in DEEPVRM_ONLY | EXTRA})


def stock_models_from(deepvrm_model):
    """A stock model of the backbone and a stock vision tower holding the Deep-VRM model's weights."""
    _, model_class, tower_class = STOCK[deepvrm_model.config.model_type]
    return load_stock_models(deepvrm_model, stock_config_from(deepvrm_model.config), model_class, tower_class)


@torch.no_grad()
def reference_logits(base, low, input_ids, attention_mask, pixel_values, image_grid_thw,
                     injection_layer, fusion="mean", gate=None):
    """Logits [batch, seq, vocab] of Deep-VRM on a Qwen3-VL or Qwen3.5 base, from the paper's definition."""
    cfg = base.config
    lm = base.model.language_model
    batch, seq = input_ids.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)

    image_mask = input_ids == cfg.image_token_id
    embeds = lm.embed_tokens(input_ids)
    semantic = base.model.visual(pixel_values, grid_thw=image_grid_thw)
    low_level = low(pixel_values, grid_thw=image_grid_thw).pooler_output  # merged embeddings only
    embeds[image_mask] = semantic.pooler_output
    deepstack = getattr(semantic, "deepstack_features", None) or []  # Qwen3-VL: the semantic tower's

    # M-RoPE positions: text tokens count up; each image's tokens take (t, row, col) offsets.
    positions, _ = base.model.get_rope_index(
        input_ids, mm_token_type_ids=image_mask.int(), image_grid_thw=image_grid_thw, attention_mask=attention_mask
    )
    position_embeddings = lm.rotary_emb(embeds, positions)

    # Additive causal + padding mask [batch, 1, seq, seq] for attention layers; the 2-D padding mask
    # for Qwen3.5's linear-attention layers (None without padding, as the stock model passes it).
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    allowed = causal[None] & attention_mask.bool()[:, None, :]
    additive = torch.zeros(batch, 1, seq, seq)
    additive.masked_fill_(~allowed[:, None], torch.finfo(torch.float32).min)
    padding = None if bool(attention_mask.all()) else attention_mask
    layer_types = getattr(cfg.text_config, "layer_types", None) or ["full_attention"] * len(lm.layers)

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
        mask = padding if layer_types[index] == "linear_attention" else additive
        hidden = layer(hidden, attention_mask=mask, position_embeddings=position_embeddings)
        if index < len(deepstack):
            hidden = hidden.clone()
            hidden[image_mask] = hidden[image_mask] + deepstack[index]
    return base.lm_head(lm.norm(hidden))
