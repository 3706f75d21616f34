"""What configures a Deep-VRM model or a run, declaratively: named model shapes (presets) with the
offline tokenizer of the small ones, training recipes (`recipes/*.yaml`) and accelerate launch
configs (`accelerate/*.yaml`). The config class itself is a model file: `deepvrm.DeepVRMConfig`."""

from .presets import preset_config, preset_names

__all__ = ["preset_config", "preset_names"]
