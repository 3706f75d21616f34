"""Inference benchmark: Deep-VRM's paths side by side, interleaved in one process.

    python benchmarks/bench_inference.py --preset small --threads 1 --batch-sizes 1,8 --rounds 30 \\
        --json benchmarks/results/bench_inference_small_cpu.json

Paths (same weights, same images, all from PIL images unless said otherwise):
  generate-official  what a user of the official code runs: processor (chat prompt, tokenizer, images) +
                     generate() of one new token (the answer), stock transformers vision modules
  generate           the same through our model (batched window attention, shared grid plan)
  classify           our classification path: image processor + one forward, two answer-token logits,
                     with its exact savings (answer-position last layer, prompt prefix computed once)
  classify-full      the same without those savings (`classification_savings = False`): the full forward
  classify-shared    classify with the shared vision tower (base tower + LoRA, no second copy)
  base               the plain backbone forward (no low-level tower, stock decoder) on classify's inputs:
                     image processor + the same prompt ids, LM head at the last position only; the floor
  tower              one vision-tower pass alone on already-processed pixels; ideal = base + tower

Method: a machine shared with other work drifts by tens of percent within a minute, so the paths are
not timed one after another but in rounds, each round timing every path once (the order rotating
from round to round) after a warm-up. Every path thus sees the same background load, and the
ratio of two paths is also taken per round (paired): its median and quartiles show how far the
noise moves it. Per path: median time and its spread (min, p25, p75, max). Before timing, the
classify, classify-full and classify-shared scores are checked equal (float round-off).

Peak memory is not measured here: one process holds every path's model, so its peak is no single
path's. `benchmarks/gpu_check.py` reports the weights' memory with and without the shared tower, and
`benchmarks/bench_train.py` the training peak.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

PATHS = ["generate-official", "generate", "classify", "classify-full", "classify-shared", "base", "tower"]
# (numerator, denominator) of the ratios reported per batch size; "ideal" is base + tower.
RATIOS = [
    ("generate-official", "classify"),  # speed-up of classify over the official-style generation
    ("generate", "classify"),
    ("classify-full", "classify"),  # what the exact savings gain
    ("generate-official", "generate"),  # what the vision engine gains inside generate
    ("classify", "ideal"),  # classify time over base + one tower (1.0 = the cost of one more tower)
    ("classify", "base"),
    ("classify-shared", "classify"),
]


def _images(n: int, size: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def build_paths(args, paths: list[str]) -> dict:
    """Per path, a function of the batch's images that runs it once (and returns what it computed)."""
    import torch
    from _common import base_model_sharing_weights
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as stock

    import deepvrm  # noqa: F401
    from deepvrm import DeepVRMForImageClassification
    from deepvrm.modeling_deepvrm import mm_token_type_ids_from_input_ids

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    processor = AutoProcessor.from_pretrained(args.model_dir)
    load = dict(dtype=dtype, attn_implementation="sdpa")
    steps = {}

    def generation(official: bool):
        model = AutoModelForImageTextToText.from_pretrained(args.model_dir, **load).to(device).eval()
        if official:
            for tower in (model.model.visual, model.model.visual_low_level):
                tower.patch_embed.__class__ = stock.Qwen2_5_VisionPatchEmbed
                for block in tower.blocks:
                    block.attn.__class__ = stock.Qwen2_5_VLVisionAttention
            model.model.vision_plan = lambda grid: {}  # the official code recomputes it per tower

        def step(images):
            inputs = processor.detection_inputs(images).to(device)
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
            with torch.inference_mode():
                return model.generate(**inputs, max_new_tokens=1, do_sample=False)

        return step

    def classification(savings: bool = True, shared: bool = False):
        model = DeepVRMForImageClassification.from_pretrained(args.model_dir, **load)
        if shared:
            model.share_vision_tower()
        model = model.to(device).eval()
        model.classification_savings = savings

        def step(images):
            inputs = processor.image_processor(images, return_tensors="pt").to(device)
            with torch.inference_mode():
                return model(pixel_values=inputs["pixel_values"].to(dtype), image_grid_thw=inputs["image_grid_thw"]).logits

        return step, model

    classifier = None
    for path in paths:
        if path.startswith("generate"):
            steps[path] = generation(official=path == "generate-official")
        elif path.startswith("classify"):
            steps[path], model = classification(savings=path != "classify-full", shared=path == "classify-shared")
            classifier = classifier or model
    if "base" in paths or "tower" in paths:
        chat = AutoModelForImageTextToText.from_pretrained(args.model_dir, **load).to(device).eval()
        prompt_model = classifier or DeepVRMForImageClassification.from_pretrained(args.model_dir, **load)
        if "base" in paths:
            base = base_model_sharing_weights(chat).to(device=device, dtype=dtype)

            def base_step(images):
                inputs = processor.image_processor(images, return_tensors="pt").to(device)
                grid = inputs["image_grid_thw"]
                input_ids, attention_mask = prompt_model.build_prompt_inputs(grid)
                # transformers builds the M-RoPE positions only given the token types.
                types = mm_token_type_ids_from_input_ids(input_ids, prompt_model.config)
                with torch.inference_mode():
                    return base(input_ids=input_ids, attention_mask=attention_mask, image_grid_thw=grid, mm_token_type_ids=types,
                                pixel_values=inputs["pixel_values"].to(dtype), logits_to_keep=1).logits

            steps["base"] = base_step
        if "tower" in paths:
            tower, plan_model = chat.model.visual, chat.model
            processed = {}  # per batch: pixels processed once, outside the timed call

            def tower_step(images):
                key = id(images)
                if key not in processed:
                    inputs = processor.image_processor(images, return_tensors="pt").to(device)
                    processed[key] = (inputs["pixel_values"].to(dtype), inputs["image_grid_thw"])
                pixels, grid = processed[key]
                with torch.inference_mode():
                    return tower(pixels, grid_thw=grid, **plan_model.vision_plan(grid)).pooler_output

            steps["tower"] = tower_step
    return steps


def check_classify_paths_agree(steps: dict, images, atol: float) -> float | None:
    """Largest difference between the classify paths' logits; raises if above `atol`."""
    outputs = {path: steps[path](images) for path in ("classify", "classify-full", "classify-shared") if path in steps}
    if len(outputs) < 2:
        return None
    reference = outputs.pop("classify-full", None)
    if reference is None:
        reference = outputs.pop("classify")
    worst = max(float((out.float() - reference.float()).abs().max()) for out in outputs.values())
    if worst > atol:
        raise SystemExit(f"classify paths disagree: max |logit difference| {worst:.3g} > {atol:g}")
    return worst


def _quantiles(values: list[float]) -> dict:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"min": min(values), "p25": q1, "median": median, "p75": q3, "max": max(values)}


def run_batch(steps: dict, images, rounds: int, warmup: int, sync) -> dict:
    """Times every path once per round, rotating the order; returns seconds per round per path."""
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name](images)
    sync()
    times = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            steps[name](images)
            sync()
            times[name].append(time.perf_counter() - t0)
    return times


def summarise(times: dict, batch_size: int) -> dict:
    paths = {}
    for name, seconds in times.items():
        q = _quantiles(seconds)
        paths[name] = {
            "seconds_per_batch": q,
            "ms_per_image": {k: 1000 * v / batch_size for k, v in q.items()},
            "images_per_second": batch_size / q["median"],
        }
    series = dict(times)
    if "base" in series and "tower" in series:
        series["ideal"] = [b + t for b, t in zip(series["base"], series["tower"])]
    ratios = {}
    for num, den in RATIOS:
        if num in series and den in series:
            per_round = [n / d for n, d in zip(series[num], series[den])]
            ratios[f"{num} / {den}"] = {
                "ratio_of_medians": statistics.median(series[num]) / statistics.median(series[den]),
                "per_round": _quantiles(per_round),
            }
    return {"paths": paths, "ratios": ratios}


def print_batch(batch_size: int, row: dict, args) -> None:
    print(f"\nbatch size {batch_size} ({args.preset}, {args.device}, {args.dtype}, {args.threads} threads, "
          f"{args.rounds} interleaved rounds)")
    print(f"  {'path':<18} {'img/s':>7} {'ms/img':>7}   spread ms/img: {'min':>6} {'p25':>6} {'p75':>6} {'max':>6}")
    for name, r in row["paths"].items():
        q = r["ms_per_image"]
        print(f"  {name:<18} {r['images_per_second']:>7.2f} {q['median']:>7.2f}   {'':>13} "
              f"{q['min']:>6.2f} {q['p25']:>6.2f} {q['p75']:>6.2f} {q['max']:>6.2f}")
    print(f"  {'time ratio':<34} {'of medians':>10}   per round: {'p25':>6} {'median':>6} {'p75':>6}")
    for name, r in row["ratios"].items():
        q = r["per_round"]
        print(f"  {name:<34} {r['ratio_of_medians']:>10.3f}   {'':>10} {q['p25']:>6.3f} {q['median']:>6.3f} {q['p75']:>6.3f}")


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
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (each path once per round)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown paths {unknown}; choose from {PATHS}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.model_dir is None:
            from deepvrm.configuration.init_model import init_model_folder

            args.model_dir = str(init_model_folder(args.preset, Path(tmp) / "model", seed=0))
        steps = build_paths(args, paths)
        results = {
            "preset": args.preset, "device": args.device, "dtype": args.dtype, "threads": args.threads,
            "rounds": args.rounds, "warmup": args.warmup, "image_size": args.image_size,
            "method": "interleaved rounds in one process, order rotating; medians and per-round ratios",
            "torch": torch.__version__, "runs": {},
        }
        atol = 1e-4 if args.dtype == "float32" else 5e-2
        for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
            images = _images(batch_size, args.image_size)
            difference = check_classify_paths_agree(steps, images, atol)
            row = summarise(run_batch(steps, images, args.rounds, args.warmup, sync), batch_size)
            row["classify_paths_max_logit_difference"] = difference
            results["runs"][str(batch_size)] = row
            print_batch(batch_size, row, args)
            if difference is not None:
                print(f"  classify paths agree: max |logit difference| {difference:.2e}")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
