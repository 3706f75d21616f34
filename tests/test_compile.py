"""`Detector(compile=...)` / `compile_model`: the compiled model scores as the uncompiled one.

The uncompiled model's P(fake) is the reference. Images of two aspect ratios at the fixed pixel
budget give two grids: batches of one grid take the classification savings (cached prompt
prefix, last layer at the answer position), mixed batches the padded full forward, and the
batch sizes differ (a partial last batch), so the compiled code meets new shapes after its first.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepvrm.inference.detector import Detector, compile_mode, compile_model, compiled_regions, is_compiled
from conftest import random_image

# 112x112 and 84x140 (the same budget, another grid); the order makes batches of 3 one-grid,
# mixed, and a partial last batch of one.
SIZES = [(112, 112)] * 3 + [(112, 112), (84, 140), (112, 112)] + [(84, 140)]


def images():
    return [random_image(h, w, seed=i) for i, (h, w) in enumerate(SIZES)]


@pytest.fixture
def fresh_dynamo():
    import torch._dynamo

    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compile_values():
    assert [compile_mode(v) for v in (False, None, "off", "no")] == [None] * 4
    assert [compile_mode(v) for v in (True, "on", "true", "default")] == ["default"] * 4
    assert compile_mode("max-autotune") == "max-autotune" and compile_mode("reduce-overhead") == "reduce-overhead"
    for bad in ("fast", 2, "inductor"):
        with pytest.raises(ValueError, match="compile must be"):
            compile_mode(bad)


def test_bad_compile_value_fails_before_loading(tmp_path):
    # A folder that holds no model: the compile value is refused first, with its own message.
    with pytest.raises(ValueError, match="compile must be"):
        Detector.from_pretrained(tmp_path / "nothing", device="cpu", compile="fast")


def test_regions_and_undo(tiny_model_dir):
    detector = Detector.from_pretrained(tiny_model_dir, device="cpu", workers=0)
    model = detector.model
    regions = compiled_regions(model)
    inner = model.model
    expected = [*inner.visual.blocks, *inner.visual_low_level.blocks, inner.language_model.norm]
    for layer in inner.language_model.layers:
        expected += [layer.input_layernorm, layer.post_attention_layernorm, layer.mlp]
    assert {id(m) for m in regions} == {id(m) for m in expected} and len(regions) == len(expected)
    assert not is_compiled(model) and detector.compile is None
    compile_model(model, True, backend="eager")
    assert is_compiled(model) and all("forward" in m.__dict__ for m in regions)
    compile_model(model, False)
    assert not is_compiled(model) and not any("forward" in m.__dict__ for m in regions)
    assert set(model.state_dict()) == set(Detector.from_pretrained(tiny_model_dir, device="cpu").model.state_dict())


@pytest.mark.parametrize("count", [3, pytest.param(len(SIZES), marks=pytest.mark.slow)])
def test_compiled_graphs_score_as_eager(tiny_model_dir, fresh_dynamo, count):
    """The wiring, with a backend that runs dynamo's graphs as they are: the towers' blocks and the
    decoder's norms and MLPs go through dynamo (their ops are in the graphs), and P(fake) is the
    eager model's: one batch (quick), or both classification paths and three batch sizes (slow)."""
    detector = Detector.from_pretrained(tiny_model_dir, device="cpu", batch_size=3, workers=0)
    reference = detector.score_images(images()[:count])
    graphs = []

    def recording_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    compile_model(detector.model, True, backend=recording_backend)
    compiled = detector.score_images(images()[:count])
    np.testing.assert_allclose(compiled, reference, rtol=0, atol=1e-6)
    code = "\n".join(g.code for g in graphs)
    for op in ("silu", "rsqrt", "scaled_dot_product_attention"):  # MLP, RMSNorm, the vision attention
        assert op in code, op
    # The vision blocks are traced: their qkv projection is in some graph.
    assert any("qkv" in g.code for g in graphs)


@pytest.mark.slow  # inductor compiles on the CPU: ~30-60 s on 2 cores
def test_inductor_scores_as_eager(tiny_model_dir, fresh_dynamo, tmp_path):
    eager = Detector.from_pretrained(tiny_model_dir, device="cpu", batch_size=3, workers=0)
    compiled = Detector.from_pretrained(tiny_model_dir, device="cpu", batch_size=3, workers=0, compile=True)
    assert compiled.compile == "default" and is_compiled(compiled.model) and not is_compiled(eager.model)
    reference = eager.score_images(images())
    # Float32 round-off: inductor fuses and reorders the elementwise work (norms, rotary, MLP).
    np.testing.assert_allclose(compiled.score_images(images()), reference, rtol=0, atol=1e-5)
    # score_paths too (threads prepare batches while the compiled model runs).
    paths = []
    for i, image in enumerate(images()):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    compiled.workers = 2
    scores = [r.score for r in compiled.score_paths(paths)]
    np.testing.assert_allclose(scores, reference, rtol=0, atol=1e-5)


def test_gpu_check_flop_formula_matches_the_counter(monkeypatch):
    """benchmarks/gpu_check.py's utilisation divides FLOPs by time: its formula for the Qwen2.5-VL
    parts (from the config and token counts) equals what FlopCounterMode counts on the model's full
    forward, for both towers, Deep-VRM and the plain base, at a batch of several images."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import gpu_check
    from _common import base_model_sharing_weights

    from deepvrm import DeepVRMForImageClassification
    from deepvrm.configuration import preset_config

    prefix, suffix = list(range(100, 110)), list(range(110, 113))
    config = preset_config("tiny", prompt_prefix_ids=prefix, prompt_suffix_ids=suffix, answer_token_ids=[1, 2])
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = DeepVRMForImageClassification(config).eval()
    model.classification_savings = False  # the formula is the full forward of every prompt position
    side, batch = 8, 3  # 112x112: 8x8 patches of 14, 16 image tokens
    pixels = torch.randn(batch * side * side, 3 * 2 * 14 * 14)
    grid = torch.tensor([[1, side, side]] * batch)
    input_ids, mask = model.build_prompt_inputs(grid)
    base = base_model_sharing_weights(model)
    with torch.inference_mode():
        counted = {
            "tower": gpu_check.count_flops(lambda: model.model.visual_low_level(pixels, grid_thw=grid)),
            "deepvrm": gpu_check.count_flops(lambda: model(pixel_values=pixels, image_grid_thw=grid)),
            "base": gpu_check.count_flops(lambda: base(
                input_ids=input_ids, attention_mask=mask, pixel_values=pixels, image_grid_thw=grid, logits_to_keep=1,
                mm_token_type_ids=(input_ids == config.image_token_id).int())),
        }
    analytic = gpu_check.analytic_flops(config, side, batch, len(prefix) + side * side // 4 + len(suffix))
    assert counted == {k: analytic[k] for k in counted}
    assert counted["tower"] > 0 and analytic["deepvrm"] == 2 * analytic["tower"] + analytic["decoder"]
