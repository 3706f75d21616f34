"""Loading is safetensors-only: a folder that holds only pickle weights is refused, with a way out."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from deepvrm import DeepVRMForConditionalGeneration, DeepVRMForImageClassification
from deepvrm.configuration.init_model import init_model_folder


@pytest.fixture(scope="module")
def pickle_only_folder(tmp_path_factory):
    source = init_model_folder("tiny", tmp_path_factory.mktemp("tiny"))
    folder = tmp_path_factory.mktemp("pickle-only")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, folder / name)
    torch.save(load_file(source / "model.safetensors"), folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("cls", [DeepVRMForImageClassification, DeepVRMForConditionalGeneration])
def test_pickle_only_folder_is_refused_with_how_to_convert(pickle_only_folder, cls):
    with pytest.raises(OSError) as raised:
        cls.from_pretrained(pickle_only_folder)
    message = str(raised.value)
    assert str(pickle_only_folder) in message and "pytorch_model.bin" in message
    assert "safetensors only" in message and "weights_only=True" in message


def test_asking_for_pickle_loading_is_refused(pickle_only_folder):
    with pytest.raises(ValueError, match="safetensors weights only"):
        DeepVRMForImageClassification.from_pretrained(pickle_only_folder, use_safetensors=False)


def test_base_model_with_pickle_weights_is_refused(tmp_path):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from deepvrm.configuration import preset_config

    tiny = preset_config("tiny").to_dict()
    base = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=tiny["text_config"], vision_config=tiny["vision_config"]))
    base.config.save_pretrained(tmp_path)
    torch.save(base.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError, match="pickle weights"):
        DeepVRMForConditionalGeneration.from_base_model(tmp_path)
