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
"""

from __future__ import annotations

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


class DeepVRMInjectionDecoderLayer(InjectionMixin, Qwen2_5_VLDecoderLayer):
    """A stock Qwen2.5-VL decoder layer that first applies the residual fusion to its input."""


class DeepVRMQwen3VLInjectionDecoderLayer(InjectionMixin, Qwen3VLTextDecoderLayer):
    """A stock Qwen3-VL decoder layer that first applies the residual fusion to its input."""


class DeepVRMQwen3_5InjectionDecoderLayer(InjectionMixin, Qwen3_5DecoderLayer):
    """A stock Qwen3.5 decoder layer (linear or full attention) that first applies the residual fusion."""
