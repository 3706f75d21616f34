"""deepvrm: Deep-VRM (deep residual injection of low-level visual features into Qwen2.5-VL) for
detecting AI-generated images, native to Hugging Face transformers.

Importing the package registers the config, models and processors with the `Auto*` classes, so
`AutoModel.from_pretrained(path)` and `pipeline("image-classification", model=path)` work without
`trust_remote_code`.
"""

from .configuration import DeepVRMConfig
from .loading import MissingWeightsError
from .modeling import (
    DeepVRMForConditionalGeneration,
    DeepVRMForImageClassification,
    DeepVRMModel,
    DeepVRMPreTrainedModel,
)
from .processing import DeepVRMImageProcessor, DeepVRMProcessor
from .registration import register

register()

__version__ = "0.1.0"

__all__ = [
    "DeepVRMConfig",
    "DeepVRMModel",
    "DeepVRMPreTrainedModel",
    "DeepVRMForConditionalGeneration",
    "DeepVRMForImageClassification",
    "DeepVRMImageProcessor",
    "DeepVRMProcessor",
    "MissingWeightsError",
    "register",
]
