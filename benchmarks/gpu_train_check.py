"""GPU check of `deepvrm train`: the paper's stage-2 recipe at the 7B shape, and FSDP through accelerate.

    python benchmarks/gpu_train_check.py --json out.json              # 7B shape, random bf16 weights
    accelerate launch --config_file configuration/accelerate/fsdp.yaml --num_processes 1 \
        benchmarks/gpu_train_check.py --fsdp-smoke --output-dir DIR    # tiny, FSDP2, merged save

The 7B part builds Deep-VRM with random bf16 weights (the tiny offline tokenizer's token ids: the
timing does not depend on them), applies the stage-2 recipe's LoRA (115,023,872 trainable), and runs
a few Trainer steps at the recipe's per-device batch of 4 images of 512x512 (bf16 autocast, AdamW,
merger learning rate), with and without gradient checkpointing: seconds per step and peak memory.
The data is a Python list (no `datasets` needed). Run through gpu_train_check.sh.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image


def _features(n: int, size: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    features = []
    for i in range(n):
        array = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        features.append({"image": Image.fromarray(array), "label": i % 2, "prompt": None, "answer": None,
                         "dataset": "synthetic", "subset": None})
    return features


def _recipe_trainer(model, processor, features, output_dir, steps, batch, checkpointing, bf16):
    from transformers import TrainingArguments

    from deepvrm.trainers.collator import DeepVRMCollator
    from deepvrm.trainers.recipes import load_recipe
    from deepvrm.trainers.trainer import DeepVRMTrainer

    recipe = load_recipe("stage2")
    args = TrainingArguments(
        output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch, learning_rate=recipe["learning_rate"],
        weight_decay=recipe["weight_decay"], adam_beta1=recipe["adam_beta1"], adam_beta2=recipe["adam_beta2"],
        warmup_steps=recipe["warmup_steps"], lr_scheduler_type=recipe["lr_scheduler_type"], bf16=bf16,
        gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
        remove_unused_columns=False, save_strategy="no", report_to="none", logging_steps=1,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    ids = [processor.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("real", "fake")]
    return DeepVRMTrainer(model=model, args=args, train_dataset=features, data_collator=DeepVRMCollator(processor),
                          merger_learning_rate=recipe["merger_learning_rate"], answer_token_ids=ids)


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class _StepTimer:
    def __init__(self):
        self.times, self._start = [], None

    def callback(self):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                _sync()
                timer._start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                _sync()
                timer.times.append(time.perf_counter() - timer._start)

        return Callback()


def seven_b(args) -> dict:
    from deepvrm import DeepVRMConfig, DeepVRMForConditionalGeneration
    from deepvrm.configuration import preset_config
    from deepvrm.configuration.init_model import build_processor
    from deepvrm.configuration.tokenizer import build_tiny_tokenizer, tiny_token_ids
    from deepvrm.trainers.lora import apply_lora

    tok = tiny_token_ids()
    config = preset_config(args.preset, **{k: tok[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")})
    config._attn_implementation = "sdpa"
    processor = build_processor(config, tokenizer=build_tiny_tokenizer())
    cuda = args.device == "cuda"
    report = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__, "preset": args.preset, "runs": {}}
    t0 = time.time()
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(args.device):
        model = DeepVRMForConditionalGeneration(config)
    torch.set_default_dtype(torch.float32)
    model = apply_lora(model, ["language_model_from_injection", "visual_low_level"], 64, 128)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report.update(build_seconds=round(time.time() - t0, 1), trainable=trainable,
                  lora_dtype=str(next(p.dtype for p in model.parameters() if p.requires_grad)))
    print(json.dumps(report), flush=True)
    features = _features(args.batch * (args.steps + 1), args.image_size)
    for checkpointing in (False, True):
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        timer = _StepTimer()
        trainer = _recipe_trainer(model, processor, features, args.output_dir, args.steps, args.batch, checkpointing, cuda)
        trainer.add_callback(timer.callback())
        result = trainer.train()
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        run = {"seconds_per_step": [round(t, 3) for t in timer.times], "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
               "losses": losses, "train_runtime": result.metrics["train_runtime"]}
        report["runs"][f"batch{args.batch}_checkpointing_{checkpointing}"] = run
        print(json.dumps(run), flush=True)
        if checkpointing:
            model.gradient_checkpointing_disable()
        del trainer
    return report


def fsdp_smoke(args) -> dict:
    """Tiny preset under FSDP2 (1 process): trains, saves the adapter, merges it on the main process."""
    from transformers import set_seed

    from deepvrm.trainers.models import load_processor
    from deepvrm.trainers.train import ModelArguments, RecipeArguments, build_peft_model, save_final_model

    set_seed(42)
    model_args = ModelArguments(model="tiny", stage=2)
    recipe = RecipeArguments(lora_targets=["language_model_from_injection", "visual_low_level"], lora_r=4, lora_alpha=8, merger_learning_rate=1e-6)
    model = build_peft_model(model_args, recipe)
    processor = load_processor("tiny")
    trainer = _recipe_trainer(model, processor, _features(16, 112), args.output_dir, 3, 4, False, torch.cuda.is_available())
    result = trainer.train()
    info = {"stage": 2, "base_model": "tiny", "objective": "lm", "seed": 42, "injection_layer": None, "fusion": None}
    save_final_model(trainer, processor, False, info)
    report = {"fsdp_enabled": trainer.is_fsdp_enabled, "distributed_type": str(trainer.accelerator.distributed_type),
              "train_loss": result.metrics["train_loss"]}
    if trainer.args.should_save:
        from transformers import AutoModelForImageClassification

        merged = AutoModelForImageClassification.from_pretrained(args.output_dir)
        report["merged_loads"] = type(merged).__name__
    print(json.dumps(report), flush=True)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="qwen2.5-vl-7b")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--output-dir", default="/tmp/gpu_train_check")
    parser.add_argument("--json", default=None)
    parser.add_argument("--fsdp-smoke", action="store_true")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of this script (with --preset tiny)")
    parser.add_argument("--image-size", type=int, default=512)
    args = parser.parse_args()
    report = fsdp_smoke(args) if args.fsdp_smoke else seven_b(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
