"""deepvrm: Deep-VRM (deep residual injection of low-level visual features into Qwen2.5-VL) for
detecting AI-generated images, native to Hugging Face transformers.

The model files are this folder's `configuration_deepvrm.py`, `modeling_deepvrm.py` and
`processing_deepvrm.py` (with the `injection.py`, `fast_vision.py` and `shared_tower.py` they
import): they import only torch and transformers, and `save_pretrained` copies them verbatim into
every saved folder, so what a Hub user runs with `trust_remote_code=True` is this code.

Importing the package registers the config, models and processors with the `Auto*` classes, so
`AutoModel.from_pretrained(path)` and `pipeline("image-classification", model=path)` work without
`trust_remote_code`.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from .configuration_deepvrm import DeepVRMConfig
from .modeling_deepvrm import (
    DeepVRMForConditionalGeneration,
    DeepVRMForImageClassification,
    DeepVRMModel,
    DeepVRMPreTrainedModel,
    MissingWeightsError,
)
from .processing_deepvrm import DeepVRMImageProcessor, DeepVRMProcessor

AutoConfig.register(DeepVRMConfig.model_type, DeepVRMConfig, exist_ok=True)
AutoModel.register(DeepVRMConfig, DeepVRMModel, exist_ok=True)
AutoModelForImageClassification.register(DeepVRMConfig, DeepVRMForImageClassification, exist_ok=True)
AutoModelForImageTextToText.register(DeepVRMConfig, DeepVRMForConditionalGeneration, exist_ok=True)
AutoImageProcessor.register(DeepVRMConfig, image_processor_classes={"pil": DeepVRMImageProcessor}, exist_ok=True)
AutoProcessor.register(DeepVRMConfig, DeepVRMProcessor, exist_ok=True)

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
]
