"""Faster drop-ins for two Qwen2.5-VL vision modules; same parameters, same names, same outputs.

Deep-VRM runs two vision towers per image, and the towers dominate its inference time. Stock
transformers (non-flash backends) runs the windowed attention as one small attention call per
window (hundreds per image at 512x512) and the patch embedding as a Conv3d. Here:

- `BatchedWindowVisionAttention`: windows of equal length (nearly all of them: windows are
  8x8 merged patches except at the image border) go through one batched sdpa call per distinct
  length. Used for the sdpa backend; eager (e.g. `output_attentions`) and flash keep the stock path.
- `LinearPatchEmbed`: a Conv3d whose stride equals its kernel is a linear map of each flattened
  patch, so it is one matmul with the conv weight viewed as `[embed_dim, C*T*P*P]`.

`tests/test_fast_vision.py` checks both against the stock modules; `benchmarks/bench_inference.py`
measures what they gain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VisionPatchEmbed,
    Qwen2_5_VLVisionAttention,
    apply_rotary_pos_emb_vision,
)


class LinearPatchEmbed(Qwen2_5_VisionPatchEmbed):
    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weight = self.proj.weight
        return F.linear(hidden_states.reshape(-1, weight[0].numel()).to(weight.dtype), weight.flatten(1))


def _equal_length_groups(cu_seqlens: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """(length, start offsets) for each distinct segment length."""
    starts = cu_seqlens[:-1]
    lengths = cu_seqlens[1:] - starts
    return [(int(length), starts[lengths == length]) for length in torch.unique(lengths).tolist() if length > 0]


class BatchedWindowVisionAttention(Qwen2_5_VLVisionAttention):
    def forward(self, hidden_states, cu_seqlens, position_embeddings=None, max_seqlen=None, **kwargs):
        if self.config._attn_implementation != "sdpa":
            return super().forward(hidden_states, cu_seqlens, position_embeddings, max_seqlen, **kwargs)
        seq_length = hidden_states.shape[0]
        qkv = self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1).permute(1, 0, 2, 3)
        query, key, value = qkv.unbind(0)
        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb_vision(query, key, cos, sin)

        groups = _equal_length_groups(cu_seqlens)
        if len(groups) == 1 and groups[0][1].numel() * groups[0][0] == seq_length:
            # All segments equal and contiguous: a reshape, no gather.
            length = groups[0][0]
            output = self._attend(query, key, value, None, length)
        else:
            output = torch.empty_like(query)
            for length, starts in groups:
                index = (starts[:, None] + torch.arange(length, device=starts.device)).reshape(-1)
                output[index] = self._attend(query, key, value, index, length)
        return self.proj(output.reshape(seq_length, -1))

    def _attend(self, query, key, value, index, length):
        """Attention within each run of `length` tokens: [n*length, heads, dim] in and out."""
        if index is not None:
            query, key, value = query[index], key[index], value[index]
        heads, dim = query.shape[1:]
        q, k, v = (t.reshape(-1, length, heads, dim).transpose(1, 2) for t in (query, key, value))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scaling)
        return out.transpose(1, 2).reshape(-1, heads, dim)


def use_fast_vision_modules(tower) -> None:
    """Swap a vision tower's patch embedding and attention modules for the faster ones, in place
    (parameters are kept as they are, so this is free and loses nothing)."""
    tower.patch_embed.__class__ = LinearPatchEmbed
    for block in tower.blocks:
        block.attn.__class__ = BatchedWindowVisionAttention
