#!/usr/bin/env python3
"""Train the shipped demo model with this package's own `deepvrm train` (stage 1, then stage 2),
evaluate it on the demo test split with `deepvrm evaluate`, and write its model card.

    python demo/train_demo_model.py [--data demo/data] [--work .cache/demo/runs] [--output examples/demo-model]

Steps (each a `deepvrm` command, run with this Python; the commands are printed):

1. a random `small`-preset Deep-VRM (seed 0), with `initializer_range` raised from 0.02 to
   INIT_RANGE in both towers and the language model: the `small` shape is 128/256 wide, and at 0.02
   its random layers shrink every signal so much that LoRA barely trains; patch embeddings start as
   2-D DCT filters (`deepvrm init --patch-embedding dct`);
2. `deepvrm train --stage 1` (demo/recipes/stage1.yaml) on the training split;
3. `deepvrm train --stage 2` (demo/recipes/stage2.yaml) from stage 1's output;
4. the stage-2 model saved as `DeepVRMForConditionalGeneration` in bfloat16 (the safetensors stay
   under 20 MB; `deepvrm detect` computes in float32 on a CPU) with its processor;
5. `deepvrm evaluate` on the test and validation splits, one evaluation set per fake source;
6. the example images' scores and demo/dct_probe.py's reference numbers;
7. README.md (the model card) with the measured metrics, timings and commands.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dct_probe  # demo/dct_probe.py: this script's folder is on sys.path when it runs

from deepvrm.cli.tables import markdown_table

REPO = Path(__file__).resolve().parent.parent
RECORD = REPO / "demo" / "dataset"  # the dataset's manifest, build_info.json and NOTICE.md (committed)
SEED = 0
INIT_RANGE = 0.06  # ~1/sqrt(width) for the 128/256-wide small preset (the preset's 0.02 is for 3584-wide 7B)
SOURCES = ("comfyui", "autoencoder")


def log(message: str) -> None:
    print(f"[train_demo_model] {message}", flush=True)


def run(command: list[str]) -> float:
    """Run a command (echoed), fail loudly; returns its wall time in seconds."""
    log("$ " + " ".join(shlex.quote(str(c)) for c in command))
    started = time.perf_counter()
    subprocess.run([str(c) for c in command], check=True)
    return time.perf_counter() - started


def deepvrm(*args) -> list[str]:
    return [sys.executable, "-m", "deepvrm.cli", *args]


def evaluate(model: Path, data: Path, split: str, output: Path) -> dict:
    sets = [data / f"{split}_{source}.json" for source in SOURCES]
    run(deepvrm("evaluate", *sets, "--model", model, "--output", output, "--no-progress"))
    return json.loads(output.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO / "demo" / "data"), help="dataset built by demo/build_dataset.py")
    parser.add_argument("--work", default=str(REPO / ".cache" / "demo" / "runs"), help="stage outputs (default .cache/demo/runs)")
    parser.add_argument("--output", default=str(REPO / "examples" / "demo-model"), help="the model folder to write")
    parser.add_argument("--card-only", action="store_true", help="only rewrite the model card from OUTPUT/demo_training.json")
    args = parser.parse_args(argv)
    if args.card_only:
        output = Path(args.output).resolve()
        record = json.loads((output / "demo_training.json").read_text())
        (output / "README.md").write_text(model_card(record), encoding="utf-8")
        log(f"model card rewritten: {output / 'README.md'}")
        return 0
    data, work, output = Path(args.data).resolve(), Path(args.work).resolve(), Path(args.output).resolve()
    if not (data / "train.json").exists():
        raise SystemExit(f"train_demo_model: {data / 'train.json'} is missing; build the dataset first (make demo-data).")

    import torch

    from deepvrm.configuration.init_model import init_model_folder

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    timings: dict[str, float] = {}
    init_dir, stage1_dir, stage2_dir = work / "init", work / "stage1", work / "stage2"

    started = time.perf_counter()
    init_model_folder("small", init_dir, seed=SEED, patch_embedding="dct", text_config={"initializer_range": INIT_RANGE},
                      vision_config={"initializer_range": INIT_RANGE})  # fmt: skip
    timings["init_s"] = time.perf_counter() - started
    log(f"random small model (seed {SEED}, initializer_range {INIT_RANGE}) in {init_dir}")

    eval_sets = [data / f"validation_{source}.json" for source in SOURCES]
    common = ["--train-data", data / "train.json", "--eval-data", *eval_sets, "--seed", SEED, "--disable_tqdm", "true"]
    commands = {
        "stage1": deepvrm("train", "--stage", "1", "--model", init_dir, "--recipe", REPO / "demo/recipes/stage1.yaml",
                          *common, "--output-dir", stage1_dir),
        "stage2": deepvrm("train", "--stage", "2", "--model", stage1_dir, "--recipe", REPO / "demo/recipes/stage2.yaml",
                          *common, "--output-dir", stage2_dir),
    }  # fmt: skip
    timings["stage1_s"] = run(commands["stage1"])
    timings["stage2_s"] = run(commands["stage2"])

    # The shipped folder: the chat class (generate() works; the classifier and the pipeline load the
    # same weights), bfloat16 weights, the processor.
    from deepvrm import DeepVRMForConditionalGeneration, DeepVRMProcessor

    shutil.rmtree(output, ignore_errors=True)
    model = DeepVRMForConditionalGeneration.from_pretrained(stage2_dir, dtype=torch.float32)
    model.to(torch.bfloat16).save_pretrained(output)
    # The weights stay bfloat16 (small files); the config asks for float32, so that the Auto classes
    # and the pipeline (dtype "auto": the config's) compute as `deepvrm detect` does on a CPU.
    config_file = output / "config.json"
    config_file.write_text(config_file.read_text().replace('"dtype": "bfloat16"', '"dtype": "float32"', 1))
    DeepVRMProcessor.from_pretrained(stage2_dir).save_pretrained(output)
    training_info = json.loads((stage2_dir / "deepvrm_training.json").read_text())

    metrics = {split: evaluate(output, data, split, work / f"metrics_{split}.json") for split in ("test", "validation")}
    # P(fake) of the example images, as `deepvrm detect examples` computes it (tests/test_demo.py
    # checks that loading and preprocessing keep giving these numbers).
    from deepvrm.inference.detector import Detector

    examples = sorted(p for p in (REPO / "examples").iterdir() if p.suffix == ".png")
    example_scores = {r.path.rsplit("/", 1)[-1]: round(r.score, 5) for r in Detector.from_pretrained(output).score_paths(map(str, examples))}
    build_info = json.loads((RECORD / "build_info.json").read_text()) if (RECORD / "build_info.json").exists() else {}
    weights = sum(p.stat().st_size for p in output.glob("*.safetensors"))
    record = {
        "seed": SEED,
        "initializer_range": INIT_RANGE,
        "parameters": sum(p.numel() for p in model.parameters()),
        "safetensors_bytes": weights,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "commands": {k: " ".join(shlex.quote(_rel(c)) for c in v[3:]) for k, v in commands.items()},
        "stage2_training": training_info,
        "metrics": metrics,
        "example_scores": example_scores,
        "dataset_counts": build_info.get("counts", {}),
        "dct_probe_roc_auc": dct_probe.probe(data),
        "machine": {"cpus": _cpus(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__},
    }  # fmt: skip
    (output / "demo_training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (output / "README.md").write_text(model_card(record), encoding="utf-8")
    log(f"stage 1 {timings['stage1_s'] / 60:.1f} min, stage 2 {timings['stage2_s'] / 60:.1f} min; "
        f"{weights / 1e6:.1f} MB of safetensors in {output}")  # fmt: skip
    for split in ("test", "validation"):
        for name, m in metrics[split].items():
            log(f"{name:<24} acc {_f(m['accuracy'])}  AP {_f(m['average_precision'])}  ROC-AUC {_f(m['roc_auc'])}")
    return 0


def _rel(value) -> str:
    text = str(value)
    return text.replace(str(REPO) + "/", "") if text.startswith(str(REPO)) else text


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _f(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _counts_table(counts: dict) -> str:
    rows = []
    for split in ("train", "validation", "test"):
        real = sum(n for k, n in counts.items() if k.startswith(f"{split}/real/"))
        rows.append([split, real, counts.get(f"{split}/fake/comfyui", 0), counts.get(f"{split}/fake/autoencoder", 0)])
    return markdown_table(["split", "real", "fake: ComfyUI", "fake: autoencoder"], rows, align="lr")


def _metrics_table(metrics: dict) -> str:
    headers = ["evaluation set", "real", "fake", "accuracy", "real acc.", "fake acc.", "AP", "ROC-AUC"]
    keys = ("accuracy", "real_accuracy", "fake_accuracy", "average_precision", "roc_auc")
    rows = [[name, m["n_real"], m["n_fake"], *(_f(m[key]) for key in keys)] for name, m in metrics.items()]
    return markdown_table(headers, rows, align="lr")


def model_card(record: dict) -> str:
    t = record["timings_s"]
    test, validation = record["metrics"]["test"], record["metrics"]["validation"]
    lines = [
        "---",
        "license: apache-2.0",
        "library_name: transformers",
        "pipeline_tag: image-classification",
        "tags: [deepvrm, ai-generated-image-detection, demo]",
        "---",
        "",
        "# deepvrm demo model (small, trained offline on a CPU)",
        "",
        "**What it is:** a tiny Deep-VRM (Qwen2.5-VL architecture with a second, low-level vision tower",
        f"injected at decoder layer 4 of 8; {record['parameters'] / 1e6:.1f} M parameters, the `small` preset's",
        "shape) trained from random weights by this package's own `deepvrm train` (stage 1, then stage 2),",
        f"on {record['machine']['cpus']} CPU cores in {(t['stage1_s'] + t['stage2_s']) / 60:.0f} minutes, on about a thousand 224x224",
        "crops of 141 images, built offline by `demo/build_dataset.py` from pinned packages of PyPI and Debian.",
        "",
        "**What it is not:** a real-world detector. It has never seen a pretrained weight, a photograph",
        "from outside its demo dataset, or any of the thousands of generators in the wild; its real",
        "photographs come from two dozen originals. Use it to see the package work end to end (`make demo`,",
        "`deepvrm detect`, the `image-classification` pipeline). For actual detection use the official",
        "7B checkpoint (`Kaiqing/Deep-VRM-Qwen-25-VL-7B`, `deepvrm detect --model ...` on a GPU).",
        "",
        "## Test-split metrics",
        "",
        "`deepvrm evaluate` on the demo test split (images of originals that training never saw), one",
        "evaluation set per fake source, each with all real test images. Accuracy at P(fake) >= 0.5; AP and",
        "ROC-AUC of P(fake) with fake as the positive class.",
        "",
        _metrics_table(test),
        "",
        "Validation split (monitored during training; the recipes' epochs, dropout and weight decay were",
        "chosen on it among a handful of trials):",
        "",
        _metrics_table(validation),
        "",
        "The real test images are crops of only six photographs (three MATE wallpapers give most of",
        "them), so these numbers say more about those photographs than about photographs in general.",
        "`make demo` reproduces the test rows from this folder.",
        "",
        "**Reference point** (`demo/dct_probe.py`): a logistic regression on 128 numbers per image, the",
        "log-energies of the DCT patch-filter responses this model's patch embeddings start from, trained",
        "on the same training split, reaches test ROC-AUC "
        f"{record['dct_probe_roc_auc']['comfyui']['test']:.3f} (ComfyUI) and "
        f"{record['dct_probe_roc_auc']['autoencoder']['test']:.3f} (autoencoder). The traces are in",
        "the data; this model, trained from random weights in minutes, picks up only part of them. The",
        "project's targets for it (ROC-AUC 0.85 ComfyUI, 0.95 autoencoder) are not met.",
        "",
        "## Data",
        "",
        "Built by `make demo-data` (`demo/build_dataset.py`; every image's source package, version, file",
        "and licence in `demo/dataset/manifest.jsonl`):",
        "",
        "- real: scikit-image 0.26.0 `skimage.data` colour photographs (CC0 / public domain),",
        "  scikit-learn 1.9.1 sample images (CC-BY 2.0), photographs of Debian bookworm's",
        "  `mate-backgrounds` 1.26.0-1 and `palapeli-data` 4:22.12.3-1 (GPL-2+);",
        "- fake, AI-generated: still generator outputs of `comfyui-workflow-templates-media-image` 0.3.160",
        "  (MIT): thumbnails of Flux, SD3.5, SDXL, Qwen-Image, HiDream, Z-Image, Chroma and other templates;",
        "- fake, autoencoder (D2-style): each real crop reconstructed by a small convolutional autoencoder",
        "  (Stable Diffusion's latent shape: 8x down, 4 channels) trained by the build script on the training",
        "  split's real crops: same content, only the reconstruction's traces differ.",
        "",
        "Every image: square crop (1.3x to 3x the output side), Lanczos resize to 224x224, PNG without",
        "metadata; all crops of one original in one split.",
        "",
        _counts_table(record.get("dataset_counts", {})),
        "",
        "## Training",
        "",
        "Stage 1 (semantic alignment, `demo/recipes/stage1.yaml`): LoRA on every linear of the language",
        "model, vision tower frozen. Stage 2 (artifact-aware refinement, `demo/recipes/stage2.yaml`): the",
        "low-level tower starts as a copy of the vision tower; LoRA on decoder layers 4..7 and on every",
        "linear of the low-level tower (blocks and merger); mean fusion at layer 4.",
        "",
        "Departures from the paper's 7B recipe, all forced by training a random 9 M-parameter model on a",
        "CPU: random initial weights (`initializer_range` "
        f"{record['initializer_range']} instead of 0.02, see `demo/train_demo_model.py`) with the patch",
        "embeddings of both towers initialised as 2-D DCT filters (`deepvrm init --patch-embedding dct`:",
        "with white-noise filters the low frequencies drown the pixel traces and the low-level tower",
        "learned nothing in our trials; a pretrained tower has learned such filters), a",
        "larger learning rate and fewer, smaller batches (see the recipes), float32 training,",
        "and stage 2's `classification` objective (cross-entropy over the two answer tokens) instead of",
        "the language-model loss: a random model's frozen LM head caps the probability of any one token",
        "far below 1, so the full-vocabulary loss is a poor training signal here.",
        "",
        "```bash",
        f"deepvrm train {record['commands']['stage1']}",
        f"deepvrm train {record['commands']['stage2']}",
        "```",
        "",
        f"Wall time on {record['machine']['cpus']} CPU cores: stage 1 {t['stage1_s'] / 60:.1f} min, "
        f"stage 2 {t['stage2_s'] / 60:.1f} min. Weights: bfloat16 safetensors "
        f"({record['safetensors_bytes'] / 1e6:.1f} MB), computed in float32 on a CPU.",
        "`make demo-data && make demo-model` rebuilds the data and retrains this folder (fixed seeds).",
        "",
        "## The example images",
        "",
        "P(fake) for `examples/` (what `make demo` prints; `examples/NOTICE.md` says which are real):",
        "",
        markdown_table(["image", "P(fake)"], [[f"`{name}`", f"{score:.3f}"] for name, score in record["example_scores"].items()], align="lr"),
        "",
        "## Use",
        "",
        "```bash",
        "deepvrm detect examples/          # the default model when --model is not given",
        "```",
        "",
        "```python",
        "import deepvrm",
        "from transformers import pipeline",
        'detector = pipeline("image-classification", model="examples/demo-model")',
        "```",
        "",
        "## Limitations",
        "",
        "- Two dozen real originals: the model partly learns what *these* photographs look like (nature",
        "  close-ups, a few scenes) rather than what makes a photograph real.",
        "- The ComfyUI images are 300-1024 px WebP thumbnails, so their generator traces are mostly gone;",
        "  the model separates them from the real photographs by content and image statistics.",
        "- The autoencoder is small and briefly trained; its reconstructions are softer than those of a",
        "  Stable Diffusion VAE, so these fakes are easier than the paper's D2 data.",
        "- Licence: the weights are Apache-2.0 like the package; the data keeps its own licences",
        "  (`demo/dataset/NOTICE.md`).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
