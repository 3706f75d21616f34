"""Training with the HF Trainer on the tiny preset: what stage 2 freezes, resume, stage 1 -> stage 2,
the saved folders, evaluation during training."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import TrainerCallback

from deepvrm.trainers.cli import main as train_main
from deepvrm.trainers.cli import parse_args
from deepvrm.trainers.train import train

FAST = [
    "--per-device-train-batch-size", "4", "--per-device-eval-batch-size", "8", "--global-batch-size", "0",
    "--dataloader-num-workers", "0", "--disable-tqdm", "true", "--logging-steps", "1", "--report-to", "none",
]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """8 smooth random images per class (real/ fake/), different sizes."""
    root = tmp_path_factory.mktemp("data") / "toy"
    rng = np.random.default_rng(0)
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        for i in range(8):
            h, w = (112, 112) if i % 3 else (90, 150)
            array = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            image = Image.fromarray(array).resize((w, h), Image.BICUBIC)
            if label == "fake":
                image = Image.fromarray(np.clip(np.asarray(image).astype(int) + 20, 0, 255).astype(np.uint8))
            image.save(root / label / f"{i:02d}.png")
    return root


def _stage2_trainer(tiny_model_dir, image_folder, tmp_path, extra_args=(), **overrides):
    from deepvrm.trainers.collator import DeepVRMCollator
    from deepvrm.trainers.data import load_dataset_source
    from deepvrm.trainers.models import load_processor
    from deepvrm.trainers.train import build_peft_model
    from deepvrm.trainers.trainer import DeepVRMTrainer

    model_args, _, recipe, training_args = parse_args(
        ["--stage", "2", "--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "out"), *FAST,
         "--max-steps", "2", "--learning-rate", "1e-2", "--weight-decay", "0", "--warmup-steps", "0", "--save-strategy", "no",
         *extra_args]
    )
    for key, value in overrides.items():
        setattr(recipe, key, value)
    model = build_peft_model(model_args, recipe)
    processor = load_processor(str(tiny_model_dir))
    return DeepVRMTrainer(
        model=model,
        args=training_args,
        train_dataset=load_dataset_source(image_folder),
        data_collator=DeepVRMCollator(processor),
        merger_learning_rate=recipe.merger_learning_rate,
        answer_token_ids=[processor.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("real", "fake")],
    )


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "gradient-checkpointing"])
def test_stage2_freezes_exactly_what_the_recipe_says(tiny_model_dir, image_folder, tmp_path, checkpointing):
    """With gradient checkpointing too: the low-level embeddings reach the injection layer as keyword
    arguments, and the low-level tower must still receive gradients through the checkpoint."""
    trainer = _stage2_trainer(tiny_model_dir, image_folder, tmp_path, ["--gradient-checkpointing"] if checkpointing else [])
    model = trainer.model
    config = model.get_base_model().config
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    # The recipe: LoRA on every linear of decoder layers K..N-1 and of the low-level encoder, nothing else.
    def in_recipe(name):
        if "lora_" not in name:
            return False
        if ".language_model.layers." in name:
            return int(name.split(".language_model.layers.")[1].split(".")[0]) >= config.injection_layer
        return ".visual_low_level." in name

    assert trainable == {n for n in before if in_recipe(n)}
    assert any(".visual_low_level.merger." in n for n in trainable) and any(".mlp.down_proj." in n for n in trainable)
    # Two optimiser steps: LoRA's B starts at zero, so A first receives a gradient in the second.
    trainer.train()
    assert model.get_base_model().is_activation_checkpointing == checkpointing
    merger_groups = [g for g in trainer.optimizer.param_groups if g.get("deepvrm_group") == "merger"]
    assert merger_groups and all(".merger." in n for n, p in model.named_parameters()
                                 if any(p is q for g in merger_groups for q in g["params"]))
    after = dict(model.named_parameters())
    unchanged_trainable = [n for n in trainable if torch.equal(before[n], after[n].detach())]
    changed_frozen = [n for n in before if n not in trainable and not torch.equal(before[n], after[n].detach())]
    assert not unchanged_trainable, unchanged_trainable[:5]
    assert not changed_frozen, changed_frozen[:5]


class _StopAt(TrainerCallback):
    """Interrupt training after `step` (saving a checkpoint there), as a crash after a save would."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_save = True
            control.should_training_stop = True
        return control


class _CountSteps(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_resume_ends_where_an_uninterrupted_run_ends(tiny_model_dir, image_folder, tmp_path):
    """Gated fusion, so that the checkpoint must hold the trained gate as well as the LoRA weights."""
    def run(output_dir, callbacks=None):
        argv = ["--stage", "2", "--model", str(tiny_model_dir), "--fusion", "gated", "--train-data", str(image_folder),
                "--output-dir", str(output_dir), *FAST, "--max-steps", "4", "--save-steps", "100", "--learning-rate",
                "5e-3", "--lora-r", "4", "--lora-alpha", "8", "--seed", "3"]
        return train(*parse_args(argv), callbacks=callbacks)

    run(tmp_path / "straight")
    interrupted = tmp_path / "interrupted"
    first = run(interrupted, callbacks=[_StopAt(2)])
    assert (interrupted / "checkpoint-2").is_dir() and first["epoch"] < 1
    counter = _CountSteps()
    run(interrupted, callbacks=[counter])  # finds checkpoint-2 in the output folder and goes on from there
    assert counter.steps == [3, 4]  # only the remaining steps ran...

    def history(folder):
        state = json.loads((tmp_path / folder / "trainer_state.json").read_text())
        return state["global_step"], {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}

    (straight_steps, straight_losses), (resumed_steps, resumed_losses) = history("straight"), history("interrupted")
    assert straight_steps == resumed_steps == 4
    for step in (3, 4):  # ...on the same batches, from the same weights and optimiser state
        assert resumed_losses[step] == pytest.approx(straight_losses[step], abs=1e-5)
    expected = load_file(tmp_path / "straight" / "model.safetensors")
    got = load_file(interrupted / "model.safetensors")
    assert expected.keys() == got.keys()
    worst = max((expected[k] - got[k]).abs().max().item() for k in expected)
    assert worst < 1e-6, worst
    gate = [k for k in got if k.endswith("fusion.gate")]
    assert len(gate) == 1 and got[gate[0]].abs().max() > 1e-3


def test_stage1_then_stage2_end_to_end(tiny_model_dir, image_folder, tmp_path):
    from transformers import AutoModelForImageClassification, pipeline

    stage1 = tmp_path / "stage1"
    assert train_main(["--stage", "1", "--model", str(tiny_model_dir), "--train-data", str(image_folder),
                       "--output-dir", str(stage1), *FAST, "--max-steps", "2", "--save-strategy", "no",
                       "--lora-r", "4", "--lora-alpha", "8"]) == 0
    assert json.loads((stage1 / "config.json").read_text())["model_type"] == "qwen2_5_vl"  # the stock base
    stage2 = tmp_path / "stage2"
    assert train_main(["--stage", "2", "--model", str(stage1), "--train-data", str(image_folder),
                       "--eval-data", str(image_folder), "--output-dir", str(stage2), *FAST, "--max-steps", "2",
                       "--save-strategy", "no", "--eval-strategy", "no", "--lora-r", "4", "--lora-alpha", "8"]) == 0
    config = json.loads((stage2 / "config.json").read_text())
    assert config["model_type"] == "deepvrm" and config["injection_layer"] == 2
    results = json.loads((stage2 / "eval_results.json").read_text())
    for metric in ("accuracy", "real_accuracy", "fake_accuracy", "average_precision", "roc_auc"):
        assert f"eval_toy_{metric}" in results
    assert results["eval_toy_n_real"] == 8 and results["eval_toy_n_fake"] == 8
    # The merged folder loads with the Auto classes and the pipeline.
    model = AutoModelForImageClassification.from_pretrained(stage2)
    assert type(model).__name__ == "DeepVRMForImageClassification"
    scores = pipeline("image-classification", model=str(stage2))(str(image_folder / "fake" / "00.png"))
    assert {s["label"] for s in scores} == {"real", "fake"}

    # --save-adapter-only keeps the adapter; rebuilt and merged, it equals the merged run's model.
    adapter = tmp_path / "adapter"
    assert train_main(["--stage", "2", "--model", str(stage1), "--train-data", str(image_folder),
                       "--output-dir", str(adapter), *FAST, "--max-steps", "2", "--save-strategy", "no",
                       "--lora-r", "4", "--lora-alpha", "8", "--save-adapter-only"]) == 0
    assert (adapter / "adapter_model.safetensors").exists() and not (adapter / "model.safetensors").exists()
    from deepvrm.trainers.models import load_adapter_folder

    rebuilt = load_adapter_folder(str(adapter)).state_dict()
    merged = model.state_dict()
    assert set(merged) <= set(rebuilt)
    for key, value in merged.items():
        torch.testing.assert_close(rebuilt[key], value, rtol=0, atol=1e-6)
    # The card's PEFT code builds Deep-VRM from the stage-1 (Qwen2.5-VL) folder, as training did.
    code = re.findall(r"```python\n(.*?)```", (adapter / "README.md").read_text(), re.S)[-1]
    assert ".from_base_model(" in code
    namespace = {}
    exec(code, namespace)
    for key, value in namespace["model"].state_dict().items():
        torch.testing.assert_close(value, rebuilt[key], rtol=0, atol=1e-6)


class _KeepModel(TrainerCallback):
    """Keeps the run's PEFT model (to merge it afterwards) and the fusion gate it started from."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.start_gates = [p.detach().clone() for n, p in model.named_parameters() if n.endswith(".gate") and p.requires_grad]

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.model = model


@pytest.mark.parametrize("fusion", ["mean", "add", "gated"])
def test_adapter_only_folder_reloads_from_anywhere_as_the_runs_merged_model(tiny_model_dir, image_folder, tmp_path,
                                                                             monkeypatch, fusion):
    """--save-adapter-only, stage 2 on a mean checkpoint trained with each fusion, run with relative
    paths: rebuilt from another directory (by deepvrm, and by the card's own PEFT code), the adapter
    gives the logits of the run's merged model. The gated fusion's gate is no LoRA weight: it must
    travel in the adapter (PEFT's modules_to_save); it starts at zero, the checkpoint having none."""
    from deepvrm import DeepVRMProcessor
    from deepvrm.trainers.models import load_adapter_folder

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    keep = _KeepModel()
    metrics = train(*parse_args(
        ["--stage", "2", "--model", os.path.relpath(tiny_model_dir, work), "--fusion", fusion, "--train-data",
         str(image_folder), "--output-dir", "run", *FAST, "--max-steps", "3", "--learning-rate", "1e-2",
         "--warmup-steps", "0", "--save-strategy", "no", "--lora-r", "4", "--lora-alpha", "8", "--save-adapter-only"]
    ), callbacks=[keep])
    assert np.isfinite(metrics["train_loss"])
    merged = keep.model.merge_and_unload().eval()
    adapter = work / "run"
    monkeypatch.chdir(tmp_path)

    base = str(tiny_model_dir.resolve())
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == base
    assert json.loads((adapter / "deepvrm_training.json").read_text())["base_model"] == base
    card = (adapter / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft\n") and "deepvrm train --save-adapter-only" in card
    rebuilt = [load_adapter_folder(str(adapter))]
    for code in re.findall(r"```python\n(.*?)```", card, re.S):  # deepvrm's loader, then PEFT's
        namespace = {}
        exec(code, namespace)
        rebuilt.append(namespace["model"])
    assert len(rebuilt) == 3

    processor = DeepVRMProcessor.from_pretrained(adapter)
    inputs = processor.detection_inputs([Image.open(image_folder / label / "00.png") for label in ("real", "fake")])
    with torch.no_grad():
        expected = merged(**inputs).logits
        for model in rebuilt:
            assert model.config.fusion == fusion
            torch.testing.assert_close(model.eval()(**inputs).logits, expected, rtol=0, atol=1e-5)
    if fusion == "gated":
        assert len(keep.start_gates) == 1 and torch.count_nonzero(keep.start_gates[0]) == 0
        layer = merged.config.injection_layer
        trained = merged.model.language_model.layers[layer].fusion.gate
        assert trained.abs().max() > 1e-3  # it did train...
        for model in rebuilt:  # ...and came back
            assert torch.equal(model.model.language_model.layers[layer].fusion.gate, trained)


def test_stage2_from_missing_model_fails_clearly(tmp_path, image_folder, capsys):
    code = train_main(["--stage", "2", "--model", str(tmp_path / "nope"), "--train-data", str(image_folder),
                       "--output-dir", str(tmp_path / "o"), *FAST])
    assert code == 2 and "nope" in capsys.readouterr().err


def test_saving_an_adapter_of_a_preset_base_asks_the_hub_nothing(image_folder, tmp_path, monkeypatch):
    """PEFT's default adapter save asks the Hub whether the base (here the preset name "tiny") has a
    config.json: no request may leave a training run."""
    import peft.utils.save_and_load as peft_saving

    asked = []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # PEFT skips the request only in offline mode
    monkeypatch.setattr(peft_saving, "check_file_exists_on_hf_hub", lambda repo, name, **kw: asked.append((repo, name)))
    adapter = tmp_path / "adapter"
    assert train_main(["--stage", "2", "--model", "tiny", "--train-data", str(image_folder), "--output-dir", str(adapter),
                       *FAST, "--max-steps", "1", "--save-strategy", "no", "--save-adapter-only"]) == 0  # fmt: skip
    assert (adapter / "adapter_model.safetensors").exists()
    assert asked == []
