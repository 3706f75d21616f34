"""Recipes, `deepvrm train` argument parsing, the paper's trainable-parameter counts, accelerate configs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from deepvrm.trainers.cli import main as train_main
from deepvrm.trainers.cli import parse_args
from deepvrm.trainers.recipes import load_recipe, recipe_names

ACCELERATE_DIR = Path(__file__).resolve().parent.parent / "configuration" / "accelerate"


def test_shipped_recipes():
    assert {"stage1", "stage2"} <= set(recipe_names())
    stage1, stage2 = load_recipe("stage1"), load_recipe("stage2")
    assert (stage1["lora_r"], stage1["lora_alpha"], stage1["lora_targets"]) == (128, 256, ["language_model"])
    assert (stage2["lora_r"], stage2["lora_alpha"]) == (64, 128)
    assert stage2["lora_targets"] == ["language_model_from_injection", "visual_low_level"]
    for recipe in (stage1, stage2):  # the paper's optimiser and schedule, both stages
        assert (recipe["adam_beta1"], recipe["adam_beta2"], recipe["learning_rate"]) == (0.9, 0.95, 1e-4)
        assert (recipe["merger_learning_rate"], recipe["weight_decay"], recipe["warmup_steps"]) == (1e-6, 1e-3, 0.05)
        assert (recipe["lr_scheduler_type"], recipe["num_train_epochs"], recipe["global_batch_size"]) == ("cosine", 2, 512)
        assert recipe["bf16"] is True and recipe["objective"] == "lm"


def test_recipe_defaults_and_cli_overrides_both_spellings(tmp_path):
    model, data, recipe, training = parse_args(
        ["--stage", "2", "--model", "tiny", "--train-data", "a.json", "b/", "--output_dir", str(tmp_path),
         "--lora-r", "8", "--lora_alpha", "32", "--learning-rate", "3e-4", "--per_device_train_batch_size", "2",
         "--global-batch-size", "8", "--eval-data", "val/"]
    )
    assert (model.stage, model.model, data.train_data, data.eval_data) == (2, "tiny", ["a.json", "b/"], ["val/"])
    assert (recipe.lora_r, recipe.lora_alpha, recipe.recipe) == (8, 32, "stage2")
    assert recipe.lora_targets == ["language_model_from_injection", "visual_low_level"]  # from the recipe
    assert training.learning_rate == 3e-4 and training.adam_beta2 == 0.95 and training.weight_decay == 1e-3
    assert training.lr_scheduler_type.value == "cosine" and training.num_train_epochs == 2
    assert training.gradient_accumulation_steps == 4  # global 8 = 2 per device x 1 process x 4
    assert recipe.merger_learning_rate == 1e-6
    assert training.bf16 is False  # the recipe's bf16 is dropped without a GPU...
    _, _, _, forced = parse_args(["--stage", "1", "--model", "tiny", "--output-dir", str(tmp_path), "--bf16", "--use-cpu"])
    assert forced.bf16 is True  # ...unless asked for on the command line


def test_custom_recipe_file_and_unknown_keys(tmp_path):
    custom = tmp_path / "mine.yaml"
    custom.write_text(yaml.safe_dump({"stage": 2, "lora_targets": ["visual_low_level"], "lora_r": 4, "objective": "classification"}))
    model, _, recipe, training = parse_args(["--recipe", str(custom), "--model", "tiny", "--output-dir", str(tmp_path)])
    assert (model.stage, recipe.lora_r, recipe.objective, recipe.lora_targets) == (2, 4, "classification", ["visual_low_level"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: 1\nlora_rank: 4\n")
    with pytest.raises(ValueError, match="lora_rank"):
        parse_args(["--recipe", str(bad), "--model", "tiny"])
    with pytest.raises(ValueError, match="for stage 2"):
        parse_args(["--recipe", "stage2", "--stage", "1", "--model", "tiny"])
    with pytest.raises(ValueError, match="Unknown recipe"):
        parse_args(["--recipe", "stage9", "--model", "tiny"])


@pytest.mark.parametrize("stage, trainable", [(2, 115_023_872), (1, 322_961_408)])
def test_dry_run_counts_paper_numbers(capsys, stage, trainable):
    assert train_main(["--stage", str(stage), "--model", "qwen2.5-vl-7b", "--dry-run"]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("trainable params")][-1]
    assert line.startswith(f"trainable params: {trainable:,d} || all params: ")
    assert "|| trainable%: " in line


def test_dry_run_tiny_targets_what_the_recipe_says(capsys):
    from deepvrm.trainers.train import ModelArguments, RecipeArguments, build_peft_model

    recipe = RecipeArguments(**{k: v for k, v in load_recipe("stage2").items() if k in ("lora_r", "lora_alpha", "lora_targets")})
    model = build_peft_model(ModelArguments(model="tiny", stage=2), recipe, meta=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    config = model.get_base_model().config
    layers = {int(n.split("layers.")[1].split(".")[0]) for n in trainable if ".language_model." in n}
    assert layers == set(range(config.injection_layer, config.text_config.num_hidden_layers))
    assert all("lora_" in n for n in trainable)
    assert any(".visual_low_level.merger.mlp.0." in n for n in trainable)
    assert not any(".visual." in n or "patch_embed" in n or "embed_tokens" in n or "lm_head" in n for n in trainable)


# ------------------------------------------------------------------------------------ accelerate
def _launch_args(name: str):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(ACCELERATE_DIR / f"{name}.yaml"), "-m", "deepvrm.cli", "train"])
    return _validate_launch_command(args)


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero3", "DEEPSPEED")])
def test_accelerate_configs_parse(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils.launch import prepare_multi_gpu_env

    config = load_config_from_file(str(ACCELERATE_DIR / f"{name}.yaml"))
    assert config.distributed_type.value == kind and config.num_processes == 8 and config.mixed_precision == "bf16"
    args, defaults, _ = _launch_args(name)
    assert args.num_processes == 8
    if name == "fsdp":
        env = prepare_multi_gpu_env(args)
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
        assert "Qwen2_5_VLDecoderLayer" in env["FSDP_TRANSFORMER_CLS_TO_WRAP"]
    if name == "deepspeed_zero3":
        assert args.use_deepspeed and defaults.deepspeed_config["zero_stage"] == 3


def test_trainer_accepts_fsdp_and_gradient_checkpointing_on_cpu(tmp_path):
    """What accelerate's FSDP config sets, given to TrainingArguments (accelerate enables FSDP only
    on GPUs; this checks the arguments validate and our model's layer classes exist)."""
    import transformers
    from transformers import TrainingArguments

    fsdp = yaml.safe_load((ACCELERATE_DIR / "fsdp.yaml").read_text())["fsdp_config"]
    classes = fsdp["fsdp_transformer_layer_cls_to_wrap"].split(",")
    import deepvrm.injection

    for name in classes:
        assert hasattr(transformers.models.qwen2_5_vl.modeling_qwen2_5_vl, name) or hasattr(deepvrm.injection, name)
    args = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", gradient_checkpointing=True,
        fsdp="full_shard auto_wrap",
        fsdp_config={k.removeprefix("fsdp_"): v for k, v in fsdp.items() if k != "fsdp_transformer_layer_cls_to_wrap"}
        | {"transformer_layer_cls_to_wrap": classes},
    )
    assert args.fsdp_config["version"] == 2 and args.gradient_checkpointing


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_trainer_accepts_deepspeed_zero3_on_cpu(tmp_path):
    """The ZeRO-3 settings as the Trainer's DeepSpeed config, its "auto" values filled from CPU
    TrainingArguments as the Trainer does (without initialising a process group in this process)."""
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    ds = yaml.safe_load((ACCELERATE_DIR / "deepspeed_zero3.yaml").read_text())["deepspeed_config"]
    config = HfTrainerDeepSpeedConfig({
        "zero_optimization": {"stage": ds["zero_stage"], "stage3_gather_16bit_weights_on_model_save": ds["zero3_save_16bit_model"]},
        "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
    })
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", gradient_checkpointing=True,
                             per_device_train_batch_size=4, gradient_accumulation_steps=16)
    config.trainer_config_process(args)
    assert config.is_zero3() and config.config["gradient_accumulation_steps"] == 16
    assert config.config["train_micro_batch_size_per_gpu"] == 4
