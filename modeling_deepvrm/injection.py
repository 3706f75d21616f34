"""The residual injection: the one place where Deep-VRM departs from its backbone's decoder.

At the input of decoder layer `injection_layer` (i.e. after layer `injection_layer - 1` has run),
the hidden states at image-placeholder positions are fused with the low-level encoder's image
embeddings; text positions are untouched:

    mean:   h[img] = (h[img] + r) / 2          (the paper)
    add:    h[img] = h[img] + r
    gated:  h[img] = h[img] + g * r            (g: per-channel, initialised to zero)

The low-level embeddings and the image-position mask travel as keyword arguments of the text
model's forward, which transformers hands to every decoder layer; only the injection layer reads
them. They are present only in the pass that encoded images (the prefill), so decoding steps that
reuse the KV cache see no injection.

Every backbone's decoder layer takes the hidden states first and the rest (position embeddings,
masks, cache, ...) as it likes, so one mixin (`InjectionMixin`) does the fusion for all of them;
each backbone's injection layer is that mixin on the backbone's own decoder-layer class:

    DeepVRMInjectionDecoderLayer         Qwen2_5_VLDecoderLayer
    DeepVRMQwen3VLInjectionDecoderLayer  Qwen3VLTextDecoderLayer  (the DeepStack additions of layers
                                         0..2 happen in the text model's loop, after the layer: the
                                         fusion at layer K sees them, as it sees every earlier layer)
    DeepVRMQwen3_5InjectionDecoderLayer  Qwen3_5DecoderLayer      (linear or full attention, as the
                                         layer's type says: the fusion is on its input either way)

The classification path also passes one more keyword argument, `answer_position_layer` (the last
layer's index), read by that layer alone (`AnswerPositionMixin`, also in front of the injection
layers in case K is the last layer): it needs its keys and values at every position but its query,
attention output, MLP and final norm only at the answer position. Every backbone's last layer gets
the mixin (the `DeepVRM*AnswerDecoderLayer` classes); without the keyword it is the stock layer.
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLDecoderLayer
from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5DecoderLayer
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextDecoderLayer


class ResidualFusion(nn.Module):
    """Fuses low-level image embeddings into hidden states at image positions."""

    def __init__(self, mode: str, hidden_size: int):
        super().__init__()
        self.mode = mode
        # Only the gated mode has parameters, so mean/add models keep the official parameter names.
        self.gate = nn.Parameter(torch.zeros(hidden_size)) if mode == "gated" else None

    def forward(self, hidden_states: torch.Tensor, image_mask: torch.Tensor, low_level_embeds: torch.Tensor):
        """`hidden_states` [batch, seq, hidden]; `image_mask` [batch, seq] bool; `low_level_embeds`
        [n_image_tokens, hidden] in the order of the image tokens (as `masked_scatter` fills them)."""
        image_states = hidden_states[image_mask]
        residual = low_level_embeds.to(image_states.dtype)
        if self.mode == "mean":
            fused = (image_states + residual) / 2
        elif self.mode == "add":
            fused = image_states + residual
        else:
            fused = image_states + self.gate.to(image_states.dtype) * residual
        return hidden_states.masked_scatter(image_mask.unsqueeze(-1), fused)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class InjectionMixin:
    """Put before a stock decoder-layer class: that layer, which first applies the residual fusion to
    its input. Same parameters (and names) as the stock layer, plus `fusion.gate` for gated fusion only.
    Being a `GradientCheckpointingLayer` subclass, the fusion is recomputed inside the checkpoint."""

    def __init__(self, config, layer_idx: int, fusion: str):
        super().__init__(config, layer_idx)
        self.fusion = ResidualFusion(fusion, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        *args,
        low_level_image_embeds: torch.Tensor | None = None,
        image_token_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if low_level_image_embeds is not None:
            hidden_states = self.fusion(hidden_states, image_token_mask, low_level_image_embeds)
        return super().forward(hidden_states, *args, **kwargs)


class _PriorKeyValues:
    """Stands in for the cache of one attention call: the keys and values of the earlier positions,
    which the call's own (the answer position's) are appended to, as a cache would."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        self.keys, self.values = keys, values

    def update(self, key_states, value_states, *args, **kwargs):
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


def rotated_keys_values(attn: nn.Module, hidden_states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """The keys (normed where the backbone norms them, rotated) and values a stock attention module
    computes from `hidden_states` [batch, seq, hidden], as [batch, kv_heads, seq, head_dim]."""
    shape = (*hidden_states.shape[:-1], -1, attn.head_dim)
    keys = attn.k_proj(hidden_states).view(shape)
    if getattr(attn, "k_norm", None) is not None:  # Qwen3-VL, Qwen3.5
        keys = attn.k_norm(keys)
    keys = keys.transpose(1, 2)
    values = attn.v_proj(hidden_states).view(shape).transpose(1, 2)
    # The rotary function of the attention's own module (Qwen3.5's rotates only part of each head).
    rotate = sys.modules[type(attn).__module__].apply_rotary_pos_emb
    _, keys = rotate(keys, keys, cos, sin)
    return keys, values


class AnswerPositionMixin:
    """Put before a stock decoder-layer class (the last layer): given `answer_position_layer` equal to
    its own index it returns `[batch, 1, hidden]`, the stock layer's output at the last position only.

    Causal attention: the last position's output needs every position's keys and values, but no
    other position's query, attention output or MLP. So the keys/values of the earlier positions
    are computed here (input norm, k/v projections, k-norm, rotary: `rotated_keys_values`), and the
    stock layer itself runs on the last position alone, with those keys/values handed to its
    attention as a cache (behind a cached prompt prefix, if there is one). Where the mixer needs
    every position anyway (Qwen3.5's linear attention) or the mask is not a [batch, 1, q, kv] tensor
    (flash attention's 2-D padding mask, flex attention), the stock layer runs in full and the last
    row is kept."""

    def forward(self, hidden_states: torch.Tensor, *args, answer_position_layer: int | None = None, **kwargs):
        attn = getattr(self, "self_attn", None)
        mixer = attn if attn is not None else self.linear_attn  # Qwen3.5's linear-attention layers
        if answer_position_layer != mixer.layer_idx:  # every layer sees the keyword; one reads it
            return super().forward(hidden_states, *args, **kwargs)
        mask = kwargs.get("attention_mask")
        cuttable = mask is None or (torch.is_tensor(mask) and mask.ndim == 4)
        if args or attn is None or not cuttable or "position_embeddings" not in kwargs:
            return super().forward(hidden_states, *args, **kwargs)[:, -1:]
        cos, sin = kwargs["position_embeddings"]  # [batch, seq, dim] after the backbone's M-RoPE layout
        keys, values = rotated_keys_values(attn, self.input_layernorm(hidden_states[:, :-1]), cos[:, :-1], sin[:, :-1])
        cache = kwargs.get("cache")
        if cache is None:
            cache = _PriorKeyValues(keys, values)
        else:  # a prompt prefix's keys/values are in it: append the earlier positions' behind them
            cache.update(keys, values, attn.layer_idx)
        kwargs["cache"] = cache
        kwargs["position_embeddings"] = (cos[:, -1:], sin[:, -1:])
        # The last query row of the mask (None: no padding, and the last position sees every key).
        kwargs["attention_mask"] = None if mask is None else mask[..., -1:, :]
        if torch.is_tensor(kwargs.get("position_ids")):
            kwargs["position_ids"] = kwargs["position_ids"][..., -1:]
        return super().forward(hidden_states[:, -1:], **kwargs)


class DeepVRMInjectionDecoderLayer(InjectionMixin, AnswerPositionMixin, Qwen2_5_VLDecoderLayer):
    """A stock Qwen2.5-VL decoder layer that first applies the residual fusion to its input."""


class DeepVRMQwen3VLInjectionDecoderLayer(InjectionMixin, AnswerPositionMixin, Qwen3VLTextDecoderLayer):
    """A stock Qwen3-VL decoder layer that first applies the residual fusion to its input."""


class DeepVRMQwen3_5InjectionDecoderLayer(InjectionMixin, AnswerPositionMixin, Qwen3_5DecoderLayer):
    """A stock Qwen3.5 decoder layer (linear or full attention) that first applies the residual fusion."""


class DeepVRMAnswerDecoderLayer(AnswerPositionMixin, Qwen2_5_VLDecoderLayer):
    """A stock Qwen2.5-VL decoder layer that can compute its output at the answer position only."""


class DeepVRMQwen3VLAnswerDecoderLayer(AnswerPositionMixin, Qwen3VLTextDecoderLayer):
    """A stock Qwen3-VL decoder layer that can compute its output at the answer position only."""


class DeepVRMQwen3_5AnswerDecoderLayer(AnswerPositionMixin, Qwen3_5DecoderLayer):
    """A stock Qwen3.5 decoder layer that can compute its output at the answer position only."""
