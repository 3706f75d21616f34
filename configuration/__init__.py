"""What configures a Deep-VRM model: the config class, named presets and training recipes."""

from .configuration_deepvrm import DeepVRMConfig
from .presets import preset_names

__all__ = ["DeepVRMConfig", "preset_names"]
