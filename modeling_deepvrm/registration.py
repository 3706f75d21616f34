"""Registration with transformers' Auto classes (done once, on `import deepvrm`)."""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from .configuration import DeepVRMConfig
from .loading import register_weight_renaming
from .modeling import DeepVRMForConditionalGeneration, DeepVRMForImageClassification, DeepVRMModel
from .processing import DeepVRMImageProcessor, DeepVRMProcessor

_registered = False


def register() -> None:
    """Register Deep-VRM with the Auto classes.

    Saved configs carry `auto_map` (see `configuration_deepvrm.AUTO_MAP`); we do not call
    `register_for_auto_class`, whose save hook would copy this package's modules (which import
    `deepvrm`) into every folder. `hub_upload` writes self-contained remote code instead.
    """
    global _registered
    if _registered:
        return
    AutoConfig.register(DeepVRMConfig.model_type, DeepVRMConfig, exist_ok=True)
    AutoModel.register(DeepVRMConfig, DeepVRMModel, exist_ok=True)
    AutoModelForImageClassification.register(DeepVRMConfig, DeepVRMForImageClassification, exist_ok=True)
    AutoModelForImageTextToText.register(DeepVRMConfig, DeepVRMForConditionalGeneration, exist_ok=True)
    AutoImageProcessor.register(DeepVRMConfig, image_processor_classes={"pil": DeepVRMImageProcessor}, exist_ok=True)
    AutoProcessor.register(DeepVRMConfig, DeepVRMProcessor, exist_ok=True)
    register_weight_renaming()

    _registered = True
