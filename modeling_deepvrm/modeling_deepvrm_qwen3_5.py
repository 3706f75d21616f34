"""Deep-VRM on Qwen3.5: the four classes of modeling_deepvrm.py's mixins on transformers' Qwen3.5.

Qwen3.5's decoder is hybrid: most layers are linear attention (gated DeltaNet, a recurrent state),
every fourth full attention. Every decoder layer receives the hidden states first and the rest as
keyword arguments (position embeddings, its mask, the cache, and whatever the text model's caller
passed), so the injection is the same subclass trick on `Qwen3_5DecoderLayer`, whichever type the
layer `injection_layer` is. Its vision tower has no DeepStack features.
"""

from __future__ import annotations

from transformers import Qwen3_5ForConditionalGeneration, Qwen3_5Model
from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5PreTrainedModel, Qwen3_5TextModel, Qwen3_5VisionModel

from .configuration_deepvrm import DeepVRMQwen3_5Config
from .injection import DeepVRMQwen3_5AnswerDecoderLayer, DeepVRMQwen3_5InjectionDecoderLayer
from .modeling_deepvrm import (
    DeepVRMClassificationMixin,
    DeepVRMGenerationMixin,
    DeepVRMImageFeatures,
    DeepVRMModelMixin,
    DeepVRMPreTrainedMixin,
)


class DeepVRMQwen3_5PreTrainedModel(DeepVRMPreTrainedMixin, Qwen3_5PreTrainedModel):
    config: DeepVRMQwen3_5Config
    config_class = DeepVRMQwen3_5Config
    _no_split_modules = ["Qwen3_5DecoderLayer", "DeepVRMQwen3_5InjectionDecoderLayer", "DeepVRMQwen3_5AnswerDecoderLayer",
                         "Qwen3_5VisionBlock"]


class DeepVRMQwen3_5Model(DeepVRMModelMixin, DeepVRMQwen3_5PreTrainedModel, Qwen3_5Model):
    """Qwen3.5 + `visual_low_level` + the injection layer."""

    vision_tower_class = Qwen3_5VisionModel
    text_model_class = Qwen3_5TextModel
    injection_layer_class = DeepVRMQwen3_5InjectionDecoderLayer
    answer_layer_class = DeepVRMQwen3_5AnswerDecoderLayer
    # Linear-attention layers carry a recurrent state: the prompt prefix is not computed apart.
    supports_prefix_cache = False
    image_features_class = DeepVRMImageFeatures


class DeepVRMQwen3_5ForConditionalGeneration(DeepVRMGenerationMixin, DeepVRMQwen3_5PreTrainedModel, Qwen3_5ForConditionalGeneration):
    """The chat interface: `generate()` answers "real"/"fake" (or longer text)."""

    model_class = DeepVRMQwen3_5Model


class DeepVRMQwen3_5ForImageClassification(DeepVRMClassificationMixin, DeepVRMQwen3_5PreTrainedModel):
    """Real/fake classification through the language-model head (see `DeepVRMClassificationMixin`)."""

    model_class = DeepVRMQwen3_5Model


# model, generation, classification, and the stock model a base is (see modeling_deepvrm.deepvrm_class)
CLASSES = (DeepVRMQwen3_5Model, DeepVRMQwen3_5ForConditionalGeneration, DeepVRMQwen3_5ForImageClassification,
           Qwen3_5ForConditionalGeneration)  # fmt: skip

# `save_pretrained` copies the model files into the saved folder (custom code for `trust_remote_code`).
DeepVRMQwen3_5Model.register_for_auto_class("AutoModel")
DeepVRMQwen3_5ForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
DeepVRMQwen3_5ForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "DeepVRMQwen3_5PreTrainedModel",
    "DeepVRMQwen3_5Model",
    "DeepVRMQwen3_5ForConditionalGeneration",
    "DeepVRMQwen3_5ForImageClassification",
]
