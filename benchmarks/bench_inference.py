"""Inference benchmark: Deep-VRM's paths side by side on the same weights and images.

    python benchmarks/bench_inference.py --preset small --device cpu --batch-sizes 1,8 --json out.json

Paths (each in its own process, so peak memory is its own):
  generate-official  what a user of the official code runs: processor + chat prompt + generate()
                     (one new token: the answer), stock transformers vision modules
  generate           the same through our model (batched window attention, shared grid plan)
  classify           our classification path: one forward, two answer-token logits
  classify-shared    the same with the shared vision tower (base tower + LoRA, no second copy)
  base               the plain Qwen2.5-VL forward on the same prompt (no low-level tower), the floor
  tower              one vision-tower pass alone; ideal Deep-VRM time = base + tower

Prints images/s, latency per image, peak memory (RSS on CPU, max_memory_allocated on GPU) and
the ratios between paths, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PATHS = ["generate-official", "generate", "classify", "classify-shared", "base", "tower"]


def _images(n: int, size: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def _time(fn, min_seconds: float, min_repeats: int, sync) -> float:
    fn()  # warm-up (allocations, plan caches, lazy init)
    sync()
    times = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]  # median


def run_path(args) -> dict:
    """One path, in this process; returns seconds per batch and peak memory."""
    import torch
    from _common import base_model_sharing_weights
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as stock

    import deepvrm  # noqa: F401
    from deepvrm import DeepVRMForImageClassification

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    processor = AutoProcessor.from_pretrained(args.model_dir)
    images = _images(args.batch_size, args.image_size)
    load = dict(dtype=dtype, attn_implementation="sdpa")

    if args.path.startswith("generate"):
        model = AutoModelForImageTextToText.from_pretrained(args.model_dir, **load).to(device).eval()
        if args.path == "generate-official":
            for tower in (model.model.visual, model.model.visual_low_level):
                tower.patch_embed.__class__ = stock.Qwen2_5_VisionPatchEmbed
                for block in tower.blocks:
                    block.attn.__class__ = stock.Qwen2_5_VLVisionAttention
            model.model.vision_plan = lambda grid: {}  # the official code recomputes it per tower

        def step():
            inputs = processor.detection_inputs(images).to(device)
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
            with torch.inference_mode():
                model.generate(**inputs, max_new_tokens=1, do_sample=False)

    elif args.path.startswith("classify"):
        model = DeepVRMForImageClassification.from_pretrained(args.model_dir, **load)
        if args.path == "classify-shared":
            model.share_vision_tower()
        model = model.to(device).eval()

        def step():
            inputs = processor.image_processor(images, return_tensors="pt").to(device)
            with torch.inference_mode():
                model(pixel_values=inputs["pixel_values"].to(dtype), image_grid_thw=inputs["image_grid_thw"])

    else:
        chat = AutoModelForImageTextToText.from_pretrained(args.model_dir, **load)
        if args.path == "tower":
            tower = chat.model.visual.to(device).eval()
            plan_model = chat.model

            def step():
                inputs = processor.image_processor(images, return_tensors="pt").to(device)
                with torch.inference_mode():
                    grid = inputs["image_grid_thw"]
                    tower(inputs["pixel_values"].to(dtype), grid_thw=grid, **plan_model.vision_plan(grid))
        else:
            model = base_model_sharing_weights(chat).to(device=device, dtype=dtype)
            del chat

            def step():
                inputs = processor.detection_inputs(images).to(device)
                with torch.inference_mode():
                    model(**{**inputs, "pixel_values": inputs["pixel_values"].to(dtype)}, logits_to_keep=1)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = _time(step, args.min_seconds, args.min_repeats, sync)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    return {"seconds_per_batch": seconds, "peak_memory_mib": peak}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--model-dir", default=None, help="a model folder instead of a random preset model")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--image-size", type=int, default=448, help="input images are resized to the model's budget")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--min-repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("--path", help=argparse.SUPPRESS)  # internal: run one path in this process
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.path:
        print(json.dumps(run_path(args)))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        if args.model_dir is None:
            from deepvrm.configuration.init_model import init_model_folder

            args.model_dir = str(init_model_folder(args.preset, Path(tmp) / "model", seed=0))
        results = {"preset": args.preset, "device": args.device, "dtype": args.dtype, "threads": args.threads, "runs": {}}
        paths = args.paths.split(",")
        for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
            row = {}
            for path in paths:
                cmd = [sys.executable, __file__, "--path", path, "--batch-size", str(batch_size), "--model-dir", args.model_dir,
                       "--device", args.device, "--dtype", args.dtype, "--image-size", str(args.image_size),
                       "--threads", str(args.threads), "--min-seconds", str(args.min_seconds),
                       "--min-repeats", str(args.min_repeats)]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    print(out.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"path {path} failed")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                result["images_per_second"] = batch_size / result["seconds_per_batch"]
                result["ms_per_image"] = 1000 * result["seconds_per_batch"] / batch_size
                row[path] = result
            ratios = {}
            if "classify" in row and "generate-official" in row:
                ratios["classify_vs_generate_official_speedup"] = row["classify"]["images_per_second"] / row["generate-official"]["images_per_second"]
            if "classify" in row and "generate" in row:
                ratios["classify_vs_generate_speedup"] = row["classify"]["images_per_second"] / row["generate"]["images_per_second"]
            if {"classify", "base", "tower"} <= row.keys():
                ideal = row["base"]["seconds_per_batch"] + row["tower"]["seconds_per_batch"]
                ratios["classify_time_over_ideal"] = row["classify"]["seconds_per_batch"] / ideal
                ratios["classify_time_over_base"] = row["classify"]["seconds_per_batch"] / row["base"]["seconds_per_batch"]
            if {"classify", "classify-shared"} <= row.keys():
                ratios["shared_tower_memory_saving_mib"] = row["classify"]["peak_memory_mib"] - row["classify-shared"]["peak_memory_mib"]
            results["runs"][str(batch_size)] = {"paths": row, "ratios": ratios}

            print(f"\nbatch size {batch_size} ({args.preset}, {args.device}, {args.dtype}, {args.threads} threads)")
            print(f"  {'path':<18} {'images/s':>9} {'ms/image':>9} {'peak MiB':>9}")
            for path, r in row.items():
                print(f"  {path:<18} {r['images_per_second']:>9.2f} {r['ms_per_image']:>9.1f} {r['peak_memory_mib']:>9.0f}")
            for name, value in ratios.items():
                print(f"  {name}: {value:.3f}")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
