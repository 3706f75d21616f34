"""GPU check at the paper's scale: the Qwen2.5-VL-7B shape (or another preset: `--preset qwen3-vl-8b`,
`--preset qwen3.5-9b`) with random bf16 weights, 512x512 images.

Measures, on one GPU, for each batch size: Deep-VRM classification (images/s, latency), the plain
base forward on the same prompt (the floor), one vision-tower pass (ideal = base + tower), the
stock transformers vision modules for comparison, and the weight memory of the separate and the
shared vision-tower forms. Writes a JSON report. Run through gpu_check.sh (installs nothing from
the network; finishes in a few minutes on an H100/H200).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up."""
    fn()
    _sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="qwen2.5-vl-7b")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="gpu_check.json")
    parser.add_argument("--device", default="cuda", help="cpu only for a smoke test of this script (tiny preset)")
    parser.add_argument("--time-budget", type=float, default=200.0, help="seconds; larger batches are skipped past it")
    args = parser.parse_args()

    from _common import base_model_sharing_weights
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as stock

    from deepvrm import deepvrm_class
    from deepvrm.shared_tower import lora_target_names

    from deepvrm.configuration import preset_config
    from deepvrm.fast_vision import use_fast_vision_modules

    t0 = time.time()
    device = torch.device(args.device)
    memory = torch.cuda.memory_allocated if device.type == "cuda" else (lambda: 0)
    config = preset_config(
        args.preset,
        # Prompt ids normally come from Qwen's tokenizer; timing depends only on their number
        # (the paper's prompt is ~40 tokens around the 256 image tokens).
        prompt_prefix_ids=list(range(100, 130)), prompt_suffix_ids=list(range(130, 136)), answer_token_ids=[1, 2],
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with device:
        model = deepvrm_class(config.backbone, "classification")(config).eval()
    torch.set_default_dtype(torch.float32)
    _sync()
    build_seconds = time.time() - t0
    separate_weights = memory() / 2**30
    base = base_model_sharing_weights(model)

    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__, "preset": args.preset,
        "backbone": config.backbone, "dtype": "bfloat16",
        "image_size": "512x512", "parameters": sum(p.numel() for p in model.parameters()),
        "build_seconds": build_seconds, "weights_gib_separate_tower": separate_weights, "runs": {},
    }
    unit = config.vision_config.patch_size * config.vision_config.spatial_merge_size
    # 512x512 -> 36x36 patches of 14 (Qwen2.5-VL) or 32x32 of 16 (Qwen3-VL, Qwen3.5), as smart_resize
    # gives it; the model's own budget for small presets.
    grid_side = int(config.max_pixels**0.5) // unit * unit // config.vision_config.patch_size
    patch_dim = 3 * config.vision_config.temporal_patch_size * config.vision_config.patch_size**2
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        if time.time() - t0 > args.time_budget:
            report["runs"][str(batch_size)] = "skipped: time budget"
            continue
        grid = torch.tensor([[1, grid_side, grid_side]] * batch_size, device=device)
        pixels = torch.randn(batch_size * grid_side * grid_side, patch_dim, device=device, dtype=torch.bfloat16)
        input_ids, mask = model.build_prompt_inputs(grid)

        def deepvrm_step():
            with torch.inference_mode():
                model(pixel_values=pixels, image_grid_thw=grid)

        def base_step():
            with torch.inference_mode():
                base(input_ids=input_ids, attention_mask=mask, pixel_values=pixels, image_grid_thw=grid, logits_to_keep=1,
                     mm_token_type_ids=(input_ids == config.image_token_id).int())

        def tower_step():
            with torch.inference_mode():
                model.model.visual_low_level(pixels, grid_thw=grid, **model.model.vision_plan(grid))

        row = {name: timed(fn, args.repeats) for name, fn in
               [("deepvrm", deepvrm_step), ("base", base_step), ("tower", tower_step)]}
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        row["images_per_second"] = batch_size / row["deepvrm"]
        row["overhead_vs_base"] = row["deepvrm"] / row["base"]
        row["time_over_ideal"] = row["deepvrm"] / (row["base"] + row["tower"])
        report["runs"][str(batch_size)] = row
        print(f"batch {batch_size:>3}: {row['images_per_second']:8.1f} img/s  deepvrm {row['deepvrm']*1000:8.1f} ms  "
              f"base {row['base']*1000:8.1f} ms  tower {row['tower']*1000:7.1f} ms  "
              f"overhead x{row['overhead_vs_base']:.3f}  vs ideal x{row['time_over_ideal']:.3f}", flush=True)

    # The stock transformers vision modules (one attention call per window), at one batch size
    # (Qwen2.5-VL only: the other backbones run their stock vision modules anyway).
    if time.time() - t0 < args.time_budget and config.backbone == "qwen2_5_vl":
        batch_size = 8
        grid = torch.tensor([[1, grid_side, grid_side]] * batch_size, device=device)
        pixels = torch.randn(batch_size * grid_side * grid_side, patch_dim, device=device, dtype=torch.bfloat16)
        tower = model.model.visual_low_level
        tower.patch_embed.__class__ = stock.Qwen2_5_VisionPatchEmbed
        for block in tower.blocks:
            block.attn.__class__ = stock.Qwen2_5_VLVisionAttention
        with torch.inference_mode():
            slow = timed(lambda: tower(pixels, grid_thw=grid), args.repeats)
            use_fast_vision_modules(tower)
            fast = timed(lambda: tower(pixels, grid_thw=grid), args.repeats)
        del tower  # a live reference would keep the tower's weights after sharing
        report["vision_tower_batch8"] = {"fast_seconds": fast, "stock_seconds": slow, "speedup": slow / fast}
        print(f"vision tower, batch 8: ours {fast*1000:.1f} ms, stock {slow*1000:.1f} ms (x{slow/fast:.2f})", flush=True)

    # Shared tower: the low-level encoder as visual + LoRA deltas (rank 64, as stage 2 trains it).
    del base
    with torch.no_grad():
        for name in lora_target_names(model.model.visual_low_level):
            module = model.model.visual_low_level.get_submodule(name)
            a = torch.randn(64, module.in_features, device=device, dtype=torch.float32) * 0.01
            b = torch.randn(module.out_features, 64, device=device, dtype=torch.float32) * 0.01
            module.weight.copy_(model.model.visual.get_submodule(name).weight.float().add(b @ a))
    grid = torch.tensor([[1, grid_side, grid_side]] * 4, device=device)
    pixels = torch.randn(4 * grid_side * grid_side, patch_dim, device=device, dtype=torch.bfloat16)
    with torch.inference_mode():
        separate_scores = model(pixel_values=pixels, image_grid_thw=grid).logits.float().softmax(-1)
    t_share = time.time()
    model.share_vision_tower(rank=64)
    import gc

    gc.collect()
    share_seconds = time.time() - t_share
    if device.type == "cuda":
        torch.cuda.empty_cache()
    shared_weights = memory() / 2**30
    with torch.inference_mode():
        shared_scores = model(pixel_values=pixels, image_grid_thw=grid).logits.float().softmax(-1)
    report["shared_tower"] = {
        "weights_gib_separate": separate_weights, "weights_gib_shared": shared_weights,
        "saving_gib": separate_weights - shared_weights, "convert_seconds": share_seconds,
        "max_abs_p_fake_difference_bf16": float((shared_scores - separate_scores).abs().max()),
    }
    print(f"shared tower: weights {separate_weights:.2f} -> {shared_weights:.2f} GiB, "
          f"max |dP| {report['shared_tower']['max_abs_p_fake_difference_bf16']:.2e}", flush=True)
    report["total_seconds"] = time.time() - t0
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json} in {report['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
