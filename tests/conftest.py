"""Shared fixtures: a tiny random Deep-VRM written by `deepvrm init` (seconds, no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import deepvrm  # noqa: F401  (registers the Auto classes)
from deepvrm.configuration.init_model import init_model_folder

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A complete random tiny model folder (config, weights, tokenizer, processor). Read-only: copy it to modify."""
    return init_model_folder("tiny", tmp_path_factory.mktemp("tiny-model") / "model", seed=0)


def random_image(height: int, width: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(array[..., 0] if channels == 1 else array, mode)


@pytest.fixture
def make_image():
    return random_image
