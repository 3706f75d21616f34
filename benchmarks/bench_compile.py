"""Does `Detector(compile=True)` pay? The classification forward eager and compiled, timed in turns.

A preset's classifier with random weights (float32 on a CPU, bfloat16 on a GPU), images at its pixel
budget. For each batch size: the first compiled call (the compilation), then `--repeats` rounds of
one eager and one compiled call, alternating (both see the same machine load: this machine may be
shared), median of each, and the largest P(fake) difference. Compilation is switched on and off
on the same model with `compile_model`; dynamo keeps what it compiled across the switches.

    python benchmarks/bench_compile.py --preset small --batch-sizes 1,8 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--mode", default="default", help="torch.compile mode")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from deepvrm import deepvrm_class
    from deepvrm.configuration import preset_config
    from deepvrm.inference.detector import compile_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    config = preset_config(args.preset, prompt_prefix_ids=list(range(100, 130)), prompt_suffix_ids=list(range(130, 136)),
                           answer_token_ids=[1, 2])
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = deepvrm_class(config.backbone, "classification")(config).to(device, dtype).eval()
    unit = config.vision_config.patch_size * config.vision_config.spatial_merge_size
    side = int(config.max_pixels**0.5) // unit * unit // config.vision_config.patch_size
    patch_dim = 3 * config.vision_config.temporal_patch_size * config.vision_config.patch_size**2

    report = {"preset": args.preset, "device": str(device), "dtype": str(dtype), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "mode": args.mode, "runs": {}}
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        pixels = torch.randn(batch_size * side * side, patch_dim, generator=torch.Generator().manual_seed(batch_size))
        pixels = pixels.to(device, dtype)
        grid = torch.tensor([[1, side, side]] * batch_size, device=device)

        def call():
            with torch.inference_mode():
                out = model(pixel_values=pixels, image_grid_thw=grid).logits.float().softmax(-1)[:, 1]
            sync()
            return out

        def seconds():
            start = time.perf_counter()
            call()
            return time.perf_counter() - start

        compile_model(model, False)
        eager_scores = call()  # also warms the eager path (and the cached prompt prefix)
        compile_model(model, args.mode)
        start = time.perf_counter()
        compiled_scores = call()
        first = time.perf_counter() - start
        eager, compiled = [], []
        for _ in range(args.repeats):
            compile_model(model, False)
            eager.append(seconds())
            compile_model(model, args.mode)
            compiled.append(seconds())
        row = {"eager_seconds": statistics.median(eager), "compiled_seconds": statistics.median(compiled),
               "first_compiled_call_seconds": first,
               "max_abs_p_fake_difference": float((compiled_scores - eager_scores).abs().max())}
        row["speedup"] = row["eager_seconds"] / row["compiled_seconds"]
        report["runs"][str(batch_size)] = row
        print(f"batch {batch_size:>3}: eager {batch_size / row['eager_seconds']:7.1f} img/s, compiled "
              f"{batch_size / row['compiled_seconds']:7.1f} img/s (x{row['speedup']:.2f}); first compiled call "
              f"{first:.1f} s; max |dP(fake)| {row['max_abs_p_fake_difference']:.1e}", flush=True)
    compile_model(model, False)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
