"""What a model argument names (deepvrm.inference.sources): one resolver behind detect, evaluate,
probe, attribute, train and convert. Folders are written here in each layout; nothing is downloaded."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from deepvrm.inference.errors import ModelLoadError
from deepvrm.inference.sources import is_hub_id, resolve_model

from test_official_checkpoint import _write_official, reference_model  # noqa: F401  (reference_model: a fixture)


@pytest.fixture(scope="module")
def layouts(reference_model, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("layouts")
    official = _write_official(reference_model, root / "official")
    plain = _write_official(reference_model, root / "plain", drop=("model.visual_low_level.",))
    adapter = root / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (root / "empty").mkdir()
    return {"official": official, "plain": plain, "adapter": adapter, "empty": root / "empty"}


def test_each_layout_is_told_apart(layouts, tiny_model_dir):
    assert resolve_model(tiny_model_dir).kind == "deepvrm"
    official = resolve_model(layouts["official"])
    assert (official.kind, official.local, official.is_deepvrm) == ("official", True, True)
    plain = resolve_model(layouts["plain"])
    assert (plain.kind, plain.is_deepvrm) == ("qwen2_5_vl", False)
    assert resolve_model(layouts["adapter"], adapters=True).kind == "adapter"
    with pytest.raises(ModelLoadError, match="LoRA adapter"):
        resolve_model(layouts["adapter"])  # the commands that score need a complete model
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model(layouts["empty"])


def test_a_plain_qwen_with_unlisted_weights_is_left_to_loading(layouts, tmp_path):
    folder = tmp_path / "no-safetensors"
    folder.mkdir()
    shutil.copy(layouts["plain"] / "config.json", folder / "config.json")
    source = resolve_model(folder)
    assert (source.kind, source.weights_listed, source.is_deepvrm) == ("qwen2_5_vl", False, None)


def test_hub_ids_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("Kaiqing/Deep-VRM-Qwen-25-VL-7B") and is_hub_id("Qwen/Qwen2.5-VL-7B-Instruct")
    for name in ("tiny2", "./models/x", "/abs/x", "~/x", "a/b/c", "a\\b", "a--b/c", "", None):
        assert not is_hub_id(name), name
    (tmp_path / "models" / "x").mkdir(parents=True)
    assert not is_hub_id("models/x")  # a folder here, whatever its form
    with pytest.raises(ModelLoadError, match=r"^no such model folder: tiny2 \(a name of the form owner/name"):
        resolve_model("tiny2")
    with pytest.raises(ModelLoadError, match=r"^no such model folder: \./gone$"):
        resolve_model("./gone")


def test_training_takes_the_official_layout_as_deepvrm_with_its_trained_low_level_tower(layouts, reference_model):  # noqa: F811
    from deepvrm.trainers.models import load_stage2_model, model_kind

    assert model_kind(str(layouts["official"])) == "deepvrm" and model_kind(str(layouts["plain"])) == "qwen2_5_vl"
    assert model_kind(str(layouts["adapter"])) == "adapter" and model_kind("tiny") == "preset"
    with pytest.raises(ValueError, match="nor a preset"):
        model_kind("tiny2")
    model = load_stage2_model(str(layouts["official"]), dtype="float32")
    trained = dict(reference_model.model.visual_low_level.named_parameters())
    for name, value in model.model.visual_low_level.named_parameters():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0)  # kept, not rebuilt from `visual`
    first = next(iter(trained))
    assert not torch.equal(trained[first], dict(reference_model.model.visual.named_parameters())[first])


def test_scoring_refuses_a_plain_qwen_checkpoint_and_says_why(layouts):
    from deepvrm.inference.detector import Detector

    with pytest.raises(ModelLoadError, match="plain Qwen2.5-VL checkpoint"):
        Detector.from_pretrained(layouts["plain"], device="cpu")
