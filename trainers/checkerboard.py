"""Learning check: stage 2 learns a purely low-level artifact on CPU in about two minutes.

    python -m deepvrm.trainers.checkerboard [--work-dir DIR] [--amplitude 4] [--with-stage1] [--preset tiny-qwen3-vl]

Real images are smooth random colour fields; each fake is the *same* smooth image plus a faint
2-pixel checkerboard (+-`amplitude` grey levels of 255, invisible to the eye) -- like the paper's
D2, where real and fake share content and differ only in pixel-level traces. Nothing semantic
tells them apart. The script

1. writes train and held-out test folders (`DIR/{train,test}/{real,fake}/*.png`, at the preset's
   pixel budget: 112x112 for `tiny`, 128x128 for `tiny-qwen3-vl` and `tiny-qwen3.5`, so no
   resampling blurs the pattern);
2. writes a random Deep-VRM of the preset (`deepvrm init --preset tiny`, or another backbone's tiny
   preset with `--preset`), or stage 1 trained on the data first (`--with-stage1`);
3. runs `deepvrm train --stage 2` on it (the paper's LoRA targets; a CPU-sized schedule);
4. evaluates on the test folder after every epoch (the Trainer's evaluation), then loads the saved
   folder with `AutoModelForImageClassification` and reports its held-out accuracy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image


def smooth_image(rng: np.random.Generator, size: int = 112) -> np.ndarray:
    """A smooth random colour field (bicubic upsampling of a 4x4 grid), values inside [40, 215]."""
    low = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.float32)
    channels = [np.asarray(Image.fromarray(low[..., c], mode="F").resize((size, size), Image.BICUBIC)) for c in range(3)]
    return np.clip(np.stack(channels, -1), 40, 215)


def checkerboard(size: int = 112, cell: int = 2) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return (((y // cell + x // cell) % 2) * 2 - 1).astype(np.float32)[..., None]


def write_split(root: Path, n_pairs: int, amplitude: float, seed: int, size: int = 112) -> None:
    rng = np.random.default_rng(seed)
    pattern = checkerboard(size)
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(n_pairs):
        base = smooth_image(rng, size)
        Image.fromarray(np.round(base).astype(np.uint8)).save(root / "real" / f"{i:05d}.png")
        Image.fromarray(np.round(base + amplitude * pattern).astype(np.uint8)).save(root / "fake" / f"{i:05d}.png")


def held_out_accuracy(model_dir: Path, test_dir: Path, batch_size: int = 32) -> dict:
    """Accuracy of the saved model folder on the test folder (through AutoModelForImageClassification)."""
    import torch
    from transformers import AutoModelForImageClassification

    from deepvrm import DeepVRMProcessor

    from .data import load_image, read_samples

    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    processor = DeepVRMProcessor.from_pretrained(model_dir)
    samples = read_samples(test_dir)
    correct = {0: 0, 1: 0}
    total = {0: 0, 1: 0}
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            batch = samples[start : start + batch_size]
            inputs = processor.image_processor(images=[load_image(s.image) for s in batch], return_tensors="pt")
            predictions = model(**inputs).logits.argmax(-1).tolist()
            for sample, prediction in zip(batch, predictions):
                total[sample.label] += 1
                correct[sample.label] += int(prediction == sample.label)
    return {
        "accuracy": (correct[0] + correct[1]) / (total[0] + total[1]),
        "real_accuracy": correct[0] / total[0],
        "fake_accuracy": correct[1] / total[1],
        "n": total[0] + total[1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepvrm.trainers.checkerboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="checkerboard-run")
    parser.add_argument("--amplitude", type=float, default=4.0, help="checkerboard amplitude in grey levels (of 255)")
    parser.add_argument("--train-pairs", type=int, default=192)
    parser.add_argument("--test-pairs", type=int, default=64)
    parser.add_argument("--objective", default="classification", choices=["lm", "classification"])
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--with-stage1", action="store_true", help="train stage 1 first and start stage 2 from it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="tiny", help="the tiny preset of a backbone: tiny, tiny-qwen3-vl, tiny-qwen3.5")
    args, extra = parser.parse_known_args(argv)

    import torch

    from deepvrm.configuration.init_model import init_model_folder

    from .cli import main as train_main

    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = Path(args.work_dir)
    timings = {}
    start = time.perf_counter()
    from deepvrm.configuration import preset_config

    size = int(round(preset_config(args.preset).max_pixels ** 0.5))  # the preset's fixed budget: no resampling
    write_split(work / "data" / "train", args.train_pairs, args.amplitude, seed=args.seed, size=size)
    write_split(work / "data" / "test", args.test_pairs, args.amplitude, seed=args.seed + 1000, size=size)
    base = init_model_folder(args.preset, work / args.preset, seed=args.seed)
    timings["data_and_init_s"] = time.perf_counter() - start

    common = [
        "--train-data", str(work / "data" / "train"),
        "--per-device-train-batch-size", str(args.batch_size),
        "--per-device-eval-batch-size", "64",
        "--global-batch-size", "0",
        "--dataloader-num-workers", "0",
        "--logging-steps", "5",
        "--save-strategy", "no",
        "--seed", str(args.seed),
        "--resume-from-checkpoint", "no",
        "--disable-tqdm", "true",
    ]
    if args.with_stage1:
        start = time.perf_counter()
        stage1 = work / "stage1"
        code = train_main(["--stage", "1", "--model", str(base), "--output-dir", str(stage1), "--num-train-epochs", "1",
                           "--learning-rate", "1e-3", "--lora-r", "8", "--lora-alpha", "16", *common])
        if code:
            return code
        timings["stage1_s"] = time.perf_counter() - start
        base = stage1
    start = time.perf_counter()
    stage2 = work / "stage2"
    code = train_main([
        "--stage", "2", "--model", str(base), "--output-dir", str(stage2),
        "--eval-data", str(work / "data" / "test"), "--eval-strategy", "epoch",
        "--objective", args.objective,
        "--num-train-epochs", str(args.epochs),
        "--learning-rate", str(args.learning_rate),
        "--merger-learning-rate", str(args.learning_rate),
        "--lora-r", str(args.lora_r), "--lora-alpha", str(2 * args.lora_r),
        "--warmup-steps", "0.05",
        *common, *extra,
    ])
    if code:
        return code
    timings["stage2_s"] = time.perf_counter() - start
    start = time.perf_counter()
    metrics = held_out_accuracy(stage2, work / "data" / "test")
    timings["evaluate_s"] = time.perf_counter() - start
    history = json.loads((stage2 / "trainer_state.json").read_text())["log_history"]
    curve = [{"epoch": e["epoch"], "accuracy": e["eval_test_accuracy"], "roc_auc": e.get("eval_test_roc_auc")}
             for e in history if "eval_test_accuracy" in e]
    report = {"held_out": metrics, "held_out_during_training": curve, "timings": {k: round(v, 1) for k, v in timings.items()},
              "settings": {k: v for k, v in vars(args).items()}}
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
