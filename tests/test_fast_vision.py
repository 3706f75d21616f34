"""The faster vision modules give the stock modules' outputs (float round-off only)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

from deepvrm import DeepVRMConfig, DeepVRMModel

from deepvrm.configuration import preset_config
from deepvrm.fast_vision import BatchedWindowVisionAttention, LinearPatchEmbed, use_fast_vision_modules


def _stock_tower(attn="sdpa"):
    torch.manual_seed(0)
    config = preset_config("tiny").vision_config
    config._attn_implementation = attn
    return Qwen2_5_VisionTransformerPretrainedModel._from_config(config).eval()


@pytest.mark.parametrize(
    "grids",
    [
        [[1, 8, 8]],                      # windows all equal: the reshape path
        [[1, 8, 8], [1, 4, 20]],          # two images, border windows of other lengths
        [[1, 36, 36]],                    # the 512x512 grid: 36 is not a multiple of the window
        [[1, 2, 2], [1, 6, 10], [1, 8, 8]],
    ],
)
def test_fast_tower_equals_stock_tower(grids):
    stock = _stock_tower()
    fast = copy.deepcopy(stock)
    use_fast_vision_modules(fast)
    assert isinstance(fast.patch_embed, LinearPatchEmbed) and isinstance(fast.blocks[0].attn, BatchedWindowVisionAttention)
    grid = torch.tensor(grids)
    pixels = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * 14 * 14)
    with torch.no_grad():
        expected = stock(pixels, grid_thw=grid).pooler_output
        got = fast(pixels, grid_thw=grid).pooler_output
    assert (got - expected).abs().max() < 1e-5


def test_fast_attention_gradients_equal_stock():
    stock = _stock_tower()
    fast = copy.deepcopy(stock)
    use_fast_vision_modules(fast)
    grid = torch.tensor([[1, 8, 12]])
    pixels = torch.randn(96, 1176)
    for tower in (stock, fast):
        tower(pixels, grid_thw=grid).pooler_output.square().sum().backward()
    for (name, a), b in zip(stock.named_parameters(), fast.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


def test_eager_backend_keeps_the_stock_path_for_attention_outputs():
    model = DeepVRMModel(preset_config("tiny"))
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    grid = torch.tensor([[1, 8, 8]])
    pixels = torch.randn(64, 1176)
    with torch.no_grad():
        a = model.get_image_features(pixels, grid).pooler_output[0]
        b = eager.get_image_features(pixels, grid).pooler_output[0]
    assert (a - b).abs().max() < 1e-5


def test_vision_plan_is_computed_once_per_grid():
    model = DeepVRMModel(preset_config("tiny"))
    grid = torch.tensor([[1, 8, 8], [1, 8, 8]])
    first = model.vision_plan(grid)
    assert model.vision_plan(grid)["window_index"] is first["window_index"]
    assert len(model._vision_plans) == 1
