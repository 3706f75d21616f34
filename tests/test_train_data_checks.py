"""`deepvrm train` checks its data before it loads a model (garbage answers, unreadable images, empty
folders, one class), lets a recipe's global batch follow small data, leaves a finished run's records
alone, and prints no warning of its own making; the README's `transformers.Trainer` lines run."""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepvrm.trainers import train as train_module
from deepvrm.trainers.cli import main as train_main
from deepvrm.trainers.cli import parse_args

REPO = Path(__file__).resolve().parent.parent
FAST = ["--per-device-train-batch-size", "4", "--dataloader-num-workers", "0", "--disable-tqdm", "true",
        "--report-to", "none", "--save-strategy", "no", "--lora-r", "4", "--lora-alpha", "8"]


class ModelLoaded(Exception):
    pass


@pytest.fixture
def no_model(monkeypatch, caplog):
    """`build_peft_model` raises instead of loading, after noting the log lines before it."""
    seen = {}

    def refuse(*args, **kwargs):
        seen["log"] = caplog.text
        raise ModelLoaded

    monkeypatch.setattr(train_module, "build_peft_model", refuse)
    caplog.set_level(logging.INFO)
    return seen


def _images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _record(image: Path, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": "<image>Is this image real or fake?"},
                         {"role": "assistant", "content": answer}], "images": [str(image)]}


def _run(tmp_path, *args):
    return train_module.train(*parse_args(["--stage", "2", "--model", "tiny", "--output-dir", str(tmp_path / "out"),
                                            *FAST, *args]))


def test_answers_without_a_verdict_are_counted_before_the_model_loads(tmp_path, no_model):
    images = _images(tmp_path / "img", 4)
    data = tmp_path / "banana.json"
    data.write_text(json.dumps([_record(p, "banana") for p in images]))
    with pytest.raises(ModelLoaded):
        _run(tmp_path, "--train-data", str(data))
    assert re.search(r"banana\.json: 4 of 4 training samples carry no verdict", no_model["log"])
    assert "'banana'" in no_model["log"]
    # The classification objective cannot train on them: an error naming them, and no model.
    with pytest.raises(ValueError, match=r"4 of 4 training samples have no label.*00\.png"):
        _run(tmp_path, "--train-data", str(data), "--objective", "classification")


def test_unreadable_images_are_named_once_and_left_out_before_the_model_loads(tmp_path, no_model, monkeypatch):
    images = _images(tmp_path / "img", 6)
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "img" / "empty.png").write_bytes(b"")
    records = [_record(p, "real" if i % 2 else "fake") for i, p in enumerate(images)]
    records[2:2] = [_record(tmp_path / "img" / "broken.png", "fake"), _record(tmp_path / "img" / "empty.png", "real")]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    with pytest.raises(ModelLoaded):
        _run(tmp_path, "--train-data", str(data))
    log = no_model["log"]
    assert log.count("cannot be read") == 1 and "2 of 8 images cannot be read" in log
    assert "broken.png: not an image" in log and "empty.png: empty file" in log

    # The checked dataset is what trains: the unreadable samples are not in it.
    model_args, data_args, recipe, _ = parse_args(["--stage", "2", "--model", "tiny", "--train-data", str(data), *FAST])
    train, _ = train_module.build_datasets(data_args, recipe.objective, 2)
    assert len(train) == 6 and not any("broken" in r["path"] or "empty" in r["path"] for r in train["image"])


def test_no_images_at_all_fails_before_the_model_loads(tmp_path, no_model, capsys):
    (tmp_path / "empty").mkdir()
    code = train_main(["--stage", "2", "--model", "tiny", "--train-data", str(tmp_path / "empty"),
                       "--output-dir", str(tmp_path / "out"), *FAST])
    assert code == 2 and "empty" in capsys.readouterr().err and "log" not in no_model
    broken = tmp_path / "broken"
    (broken / "real").mkdir(parents=True)
    (broken / "fake").mkdir()
    for label in ("real", "fake"):
        (broken / label / "a.png").write_bytes(b"\x89PNG garbage")
    code = train_main(["--stage", "2", "--model", "tiny", "--train-data", str(broken), "--output-dir", str(tmp_path / "o2"), *FAST])
    assert code == 2 and "none of its 2 images can be read" in capsys.readouterr().err and "log" not in no_model


def test_one_class_refuses_a_classification_run_and_warns_an_lm_run(tmp_path, no_model):
    _images(tmp_path / "only" / "real", 4)
    with pytest.raises(ValueError, match="real samples only.*classifier needs both classes"):
        _run(tmp_path, "--train-data", str(tmp_path / "only"), "--objective", "classification")
    assert "log" not in no_model
    with pytest.raises(ModelLoaded):
        _run(tmp_path, "--train-data", str(tmp_path / "only"))
    assert "real samples only (4) and no fake one" in no_model["log"]
    assert "from real/ 4 (real)" in no_model["log"]  # which folders were used


def test_the_global_batch_follows_data_smaller_than_it(tmp_path, no_model):
    _images(tmp_path / "toy" / "real", 4)
    _images(tmp_path / "toy" / "fake", 4, seed=1)
    args = parse_args(["--stage", "2", "--model", "tiny", "--train-data", str(tmp_path / "toy"),
                       "--output-dir", str(tmp_path / "out"), *FAST])  # the recipe's global batch: 512
    assert args[3].gradient_accumulation_steps == 128
    with pytest.raises(ModelLoaded):
        train_module.train(*args)
    assert args[3].gradient_accumulation_steps == 2  # 4 per step x 2 = the 8 samples
    assert "global batch of 512 is more than the 8 training samples: using 8" in no_model["log"]
    # An accumulation asked for on the command line is kept (and said to be more than the data).
    args = parse_args(["--stage", "2", "--model", "tiny", "--train-data", str(tmp_path / "toy"),
                       "--output-dir", str(tmp_path / "out"), *FAST, "--gradient-accumulation-steps", "4"])
    with pytest.raises(ModelLoaded):
        train_module.train(*args)
    assert args[3].gradient_accumulation_steps == 4


def test_dataloader_settings_fit_the_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(train_module.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(train_module, "_has_accelerator", lambda: False)
    *_, training = parse_args(["--stage", "2", "--model", "tiny", "--output-dir", str(tmp_path)])
    assert training.dataloader_num_workers == 4 and training.dataloader_pin_memory  # the recipe's, transformers'
    train_module.fit_dataloader(training)
    assert training.dataloader_num_workers == 2 and not training.dataloader_pin_memory


def test_recipe_and_training_print_no_warning_of_ours(tmp_path, recwarn):
    """No FutureWarning from the recipe's (deprecated) gradient_checkpointing key, none from PEFT's
    reading of it, no DataLoader worker or pin_memory warning; --gradient-checkpointing still works."""
    _images(tmp_path / "toy" / "real", 2)
    _images(tmp_path / "toy" / "fake", 2, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the run
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # third-party imports
        metrics = train_module.train(*parse_args(
            ["--stage", "2", "--model", "tiny", "--train-data", str(tmp_path / "toy"), "--output-dir", str(tmp_path / "out"),
             "--max-steps", "1", "--save-strategy", "no", "--lora-r", "4", "--lora-alpha", "8", "--disable-tqdm", "true"]
        ))  # the recipe's 4 workers, pin_memory on, global batch 512
    assert np.isfinite(metrics["train_loss"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        *_, training = parse_args(["--stage", "2", "--model", "tiny", "--output-dir", str(tmp_path), "--gradient-checkpointing"])
    assert training.activation_checkpointing and training.activation_checkpointing_kwargs == {"use_reentrant": False}


def test_rerunning_a_finished_run_keeps_its_records(tiny_model_dir, tmp_path, caplog):
    _images(tmp_path / "toy" / "real", 4)
    _images(tmp_path / "toy" / "fake", 4, seed=1)
    argv = ["--stage", "2", "--model", str(tiny_model_dir), "--train-data", str(tmp_path / "toy"), "--output-dir", str(tmp_path / "out"),
            *FAST, "--max-steps", "2", "--save-strategy", "steps", "--save-steps", "2", "--global-batch-size", "0"]
    assert train_main(argv) == 0
    records = {name: (tmp_path / "out" / name).read_bytes() for name in ("train_results.json", "trainer_state.json", "model.safetensors")}
    assert json.loads(records["trainer_state.json"])["global_step"] == 2
    caplog.set_level(logging.WARNING)
    assert train_main(argv) == 0
    assert "holds a finished run (2 steps" in caplog.text and "--resume-from-checkpoint no" in caplog.text
    assert {name: (tmp_path / "out" / name).read_bytes() for name in records} == records
    # Asking for more steps trains on from the last checkpoint.
    assert train_main([*argv[:-4], "--max-steps", "3", "--save-strategy", "no"]) == 0
    assert json.loads((tmp_path / "out" / "trainer_state.json").read_text())["global_step"] == 3


def _readme_trainer_snippet() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Training"):readme.index("## Publishing to the Hub")]
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", section, re.S) if "DeepVRMCollator" in c]
    return code


def test_readme_trainer_lines_train_with_transformers_trainer(tiny_model_dir, tmp_path, monkeypatch):
    """The README's lines as written, run in a folder whose examples/ are the repository's, with the
    tiny model in place of the demo model."""
    code = _readme_trainer_snippet()
    assert '"examples/demo-model"' in code
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(code.replace('"examples/demo-model"', repr(str(tiny_model_dir))), namespace)
    state = namespace["trainer"].state
    assert state.global_step == 2 and all(np.isfinite(e["loss"]) for e in state.log_history if "loss" in e)
    assert (tmp_path / "my-detector").is_dir()


def test_trainer_with_processed_rows_and_images_of_different_grids(tiny_model_dir, tmp_path):
    """The HF tutorial's way: a with_transform that runs the image processor per row; the collator
    concatenates the rows' patches even when the images' grids differ (a fixed pixel budget still
    gives other grids to other aspect ratios)."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from deepvrm import DeepVRMForImageClassification, DeepVRMProcessor
    from deepvrm.trainers import DeepVRMCollator

    processor = DeepVRMProcessor.from_pretrained(tiny_model_dir)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for shape in [(64, 64, 3), (40, 120, 3)] * 2]
    data = Dataset.from_dict({"image": images, "label": ["real", "fake", "fake", "real"]})  # label words too

    def transform(batch):
        out = processor.image_processor(images=[image.convert("RGB") for image in batch["image"]], return_tensors="pt")
        sizes = out["image_grid_thw"].prod(-1).tolist()
        return {"pixel_values": list(out["pixel_values"].split(sizes)), "image_grid_thw": list(out["image_grid_thw"]),
                "label": batch["label"]}

    collator = DeepVRMCollator(processor, objective="classification")
    rows = [data.with_transform(transform)[i] for i in range(2)]
    batch = collator(rows)
    assert batch["image_grid_thw"].shape == (2, 3) and batch["image_grid_thw"][0].tolist() != batch["image_grid_thw"][1].tolist()
    model = DeepVRMForImageClassification.from_pretrained(tiny_model_dir)
    trainer = Trainer(model=model, args=TrainingArguments(str(tmp_path / "o"), max_steps=2, per_device_train_batch_size=2,
                                                          remove_unused_columns=False, report_to="none", disable_tqdm=True),
                      train_dataset=data.with_transform(transform), data_collator=collator)
    trainer.train()
    assert trainer.state.global_step == 2


def test_the_collator_says_what_the_trainer_removed(tiny_model_dir):
    from deepvrm import DeepVRMProcessor
    from deepvrm.trainers import DeepVRMCollator

    collator = DeepVRMCollator(DeepVRMProcessor.from_pretrained(tiny_model_dir), objective="classification")
    with pytest.raises(KeyError, match="remove_unused_columns=False"):
        collator([{"label": 0}])
