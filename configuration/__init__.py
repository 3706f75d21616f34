"""What configures a Deep-VRM model or a run, declaratively: named model shapes (presets) with the
offline tokenizer of the small ones, training recipes (`recipes/*.yaml`) and accelerate launch
configs (`accelerate/*.yaml`). The config class itself is a model file: `deepvrm.DeepVRMConfig`.

The YAML files are package data, read with `importlib.resources`, so they are found in a wheel
install as in an editable one:

    shipped_files("recipes")        {"stage1": <stage1.yaml>, "stage2": ...}   (importlib Traversables)
    accelerate_config_path("ddp")   a path for `accelerate launch --config_file` (in a wheel install too)
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from importlib.abc import Traversable

DATA_FOLDERS = ("recipes", "accelerate")


def shipped_files(folder: str) -> dict[str, Traversable]:
    """The YAML files of one of `DATA_FOLDERS`, by name (the file name without `.yaml`)."""
    if folder not in DATA_FOLDERS:
        raise ValueError(f"no shipped folder {folder!r}; there are {', '.join(DATA_FOLDERS)}.")
    entries = (files(__name__) / folder).iterdir()
    return dict(sorted((entry.name[: -len(".yaml")], entry) for entry in entries if entry.name.endswith(".yaml")))


def accelerate_config_path(name: str) -> Path:
    """The file of a shipped accelerate config (`ddp`, `fsdp`, `deepspeed_zero3`), as a path on disk."""
    configs = shipped_files("accelerate")
    if name not in configs:
        raise ValueError(f"no accelerate config {name!r}; shipped: {', '.join(configs)}.")
    if not isinstance(configs[name], Path):  # a zipped install: no file to hand to `accelerate launch`
        raise ValueError(f"deepvrm is installed as an archive; copy {name}.yaml out with importlib.resources.as_file.")
    return configs[name]


def __getattr__(name: str):
    # The presets import the config classes (torch); `deepvrm init --help` should not wait for them.
    if name in ("preset_config", "preset_names"):
        from . import presets

        return getattr(presets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["accelerate_config_path", "preset_config", "preset_names", "shipped_files"]
