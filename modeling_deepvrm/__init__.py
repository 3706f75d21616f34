"""deepvrm: Deep-VRM (deep residual injection of low-level visual features into a multimodal LLM:
Qwen2.5-VL as in the paper, Qwen3-VL, Qwen3.5) for detecting AI-generated images, native to Hugging
Face transformers.

The model files are this folder's `configuration_deepvrm.py`, `modeling_deepvrm.py` (the method and
the Qwen2.5-VL classes), `modeling_deepvrm_qwen3_vl.py`, `modeling_deepvrm_qwen3_5.py` and
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

from .configuration_deepvrm import CONFIG_CLASSES, DeepVRMConfig, DeepVRMQwen3_5Config, DeepVRMQwen3VLConfig
from .modeling_deepvrm import (
    DeepVRMForConditionalGeneration,
    DeepVRMForImageClassification,
    DeepVRMModel,
    DeepVRMPreTrainedModel,
    MissingWeightsError,
    deepvrm_class,
    is_deepvrm_model,
)
from .modeling_deepvrm_qwen3_5 import (
    DeepVRMQwen3_5ForConditionalGeneration,
    DeepVRMQwen3_5ForImageClassification,
    DeepVRMQwen3_5Model,
)
from .modeling_deepvrm_qwen3_vl import (
    DeepVRMQwen3VLForConditionalGeneration,
    DeepVRMQwen3VLForImageClassification,
    DeepVRMQwen3VLModel,
)
from .processing_deepvrm import DeepVRMImageProcessor, DeepVRMProcessor

# Each backbone's config routes the Auto classes to that backbone's classes.
for _backbone, _config_class in CONFIG_CLASSES.items():
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModel.register(_config_class, deepvrm_class(_backbone, "model"), exist_ok=True)
    AutoModelForImageClassification.register(_config_class, deepvrm_class(_backbone, "classification"), exist_ok=True)
    AutoModelForImageTextToText.register(_config_class, deepvrm_class(_backbone, "generation"), exist_ok=True)
    AutoImageProcessor.register(_config_class, image_processor_classes={"pil": DeepVRMImageProcessor}, exist_ok=True)
    AutoProcessor.register(_config_class, DeepVRMProcessor, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "DeepVRMConfig",
    "DeepVRMQwen3VLConfig",
    "DeepVRMQwen3_5Config",
    "DeepVRMQwen3VLModel",
    "DeepVRMQwen3VLForConditionalGeneration",
    "DeepVRMQwen3VLForImageClassification",
    "DeepVRMQwen3_5Model",
    "DeepVRMQwen3_5ForConditionalGeneration",
    "DeepVRMQwen3_5ForImageClassification",
    "deepvrm_class",
    "is_deepvrm_model",
    "DeepVRMModel",
    "DeepVRMPreTrainedModel",
    "DeepVRMForConditionalGeneration",
    "DeepVRMForImageClassification",
    "DeepVRMImageProcessor",
    "DeepVRMProcessor",
    "MissingWeightsError",
]
