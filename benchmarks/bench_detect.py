"""Throughput of `deepvrm detect` end to end: files on disk -> open, preprocess, forward -> rows.

    python benchmarks/bench_detect.py                      # tiny preset, CPU, batch sizes 1 and 8
    python benchmarks/bench_detect.py --preset small --images 64 --batch-sizes 1,8,16 --threads 2
    python benchmarks/bench_detect.py --model DIR --device cuda

Writes `--images` random JPEGs (`--size` pixels square) to a temporary folder. For each batch
size it prints images/s of a loaded `Detector` scoring the files (open, preprocess, forward; best of
`--repeats` after a warm-up), and of one whole `deepvrm detect` run (`detect.main`: model load,
JSONL rows written and flushed, table off).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder or Hub id (default: a fresh random --preset model)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=256, help="side of the square test images in pixels")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from deepvrm.cli import detect
    from deepvrm.configuration.init_model import init_model_folder
    from deepvrm.inference.detector import Detector

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(init_model_folder(args.preset, os.path.join(tmp, "model"), seed=0))
        folder = os.path.join(tmp, "images")
        os.makedirs(folder)
        rng = np.random.default_rng(0)
        for i in range(args.images):
            array = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
            Image.fromarray(array).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)

        paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
        results = {}
        for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
            # Steady state: the Detector keeps the model loaded; time only scoring the files.
            detector = Detector.from_pretrained(model, device=args.device, dtype=args.dtype, batch_size=batch_size)
            list(detector.score_paths(paths[: max(batch_size, 2)]))  # warm-up
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                scored = [r for r in detector.score_paths(paths) if r.ok]
                times.append(time.perf_counter() - started)
                assert len(scored) == len(paths)
            steady = args.images / min(times)
            # End to end: the command itself (model load, table off, JSONL rows written and flushed).
            out = os.path.join(tmp, f"out-{batch_size}.jsonl")
            argv = [folder, "--model", model, "--batch-size", str(batch_size), "--device", args.device,
                    "--dtype", args.dtype, "-o", out, "--quiet", "--no-progress"]  # fmt: skip
            started = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):
                code = detect.main(argv)
            command = args.images / (time.perf_counter() - started)
            if code != 0:
                raise SystemExit(f"detect failed with exit status {code}")
            results[batch_size] = {"images_per_s": steady, "command_images_per_s": command}
            print(f"batch size {batch_size:>3}: {steady:8.1f} images/s scoring, {command:8.1f} images/s "
                  f"for the whole `deepvrm detect` run (model load included)", flush=True)  # fmt: skip

    info = {
        "preset": None if args.model else args.preset, "model": args.model, "device": args.device,
        "threads": torch.get_num_threads(), "images": args.images, "size": args.size, "results": results,
        "torch": torch.__version__, "python": sys.version.split()[0],
    }  # fmt: skip
    if args.json:
        with open(args.json, "w") as file:
            json.dump(info, file, indent=2)


if __name__ == "__main__":
    main()
