"""Deep-VRM on Qwen3-VL: the four classes of modeling_deepvrm.py's mixins on transformers' Qwen3-VL.

Qwen3-VL's vision tower returns, besides its merged image embeddings, DeepStack features that its
text model adds to the image positions after the first decoder layers. The semantic tower
(`visual`) keeps doing exactly that; the low-level tower (`visual_low_level`, a copy of `visual`)
contributes only its merged embeddings, fused at the input of layer `injection_layer` as in every
backbone (its own DeepStack features are computed by the stock tower and left unused).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Qwen3VLForConditionalGeneration, Qwen3VLModel
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    BaseModelOutputWithDeepstackFeatures,
    Qwen3VLPreTrainedModel,
    Qwen3VLTextModel,
    Qwen3VLVisionModel,
)

from .configuration_deepvrm import DeepVRMQwen3VLConfig
from .injection import DeepVRMQwen3VLAnswerDecoderLayer, DeepVRMQwen3VLInjectionDecoderLayer
from .modeling_deepvrm import (
    DeepVRMClassificationMixin,
    DeepVRMGenerationMixin,
    DeepVRMModelMixin,
    DeepVRMPreTrainedMixin,
)


@dataclass
class DeepVRMQwen3VLImageFeatures(BaseModelOutputWithDeepstackFeatures):
    r"""
    low_level_pooler_output (`tuple[torch.Tensor]`): the low-level encoder's embeddings, one
        `[n_image_tokens_i, hidden]` tensor per image (as `pooler_output` for the semantic tower).
    """

    low_level_pooler_output: tuple[torch.Tensor, ...] | None = None


class DeepVRMQwen3VLPreTrainedModel(DeepVRMPreTrainedMixin, Qwen3VLPreTrainedModel):
    config: DeepVRMQwen3VLConfig
    config_class = DeepVRMQwen3VLConfig
    _no_split_modules = ["Qwen3VLTextDecoderLayer", "DeepVRMQwen3VLInjectionDecoderLayer", "DeepVRMQwen3VLAnswerDecoderLayer",
                         "Qwen3VLVisionBlock"]


class DeepVRMQwen3VLModel(DeepVRMModelMixin, DeepVRMQwen3VLPreTrainedModel, Qwen3VLModel):
    """Qwen3-VL + `visual_low_level` + the injection layer."""

    vision_tower_class = Qwen3VLVisionModel
    text_model_class = Qwen3VLTextModel
    injection_layer_class = DeepVRMQwen3VLInjectionDecoderLayer
    answer_layer_class = DeepVRMQwen3VLAnswerDecoderLayer
    image_features_class = DeepVRMQwen3VLImageFeatures


class DeepVRMQwen3VLForConditionalGeneration(DeepVRMGenerationMixin, DeepVRMQwen3VLPreTrainedModel, Qwen3VLForConditionalGeneration):
    """The chat interface: `generate()` answers "real"/"fake" (or longer text)."""

    model_class = DeepVRMQwen3VLModel


class DeepVRMQwen3VLForImageClassification(DeepVRMClassificationMixin, DeepVRMQwen3VLPreTrainedModel):
    """Real/fake classification through the language-model head (see `DeepVRMClassificationMixin`)."""

    model_class = DeepVRMQwen3VLModel


# model, generation, classification, and the stock model a base is (see modeling_deepvrm.deepvrm_class)
CLASSES = (DeepVRMQwen3VLModel, DeepVRMQwen3VLForConditionalGeneration, DeepVRMQwen3VLForImageClassification,
           Qwen3VLForConditionalGeneration)  # fmt: skip

# `save_pretrained` copies the model files into the saved folder (custom code for `trust_remote_code`).
DeepVRMQwen3VLModel.register_for_auto_class("AutoModel")
DeepVRMQwen3VLForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
DeepVRMQwen3VLForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "DeepVRMQwen3VLPreTrainedModel",
    "DeepVRMQwen3VLModel",
    "DeepVRMQwen3VLForConditionalGeneration",
    "DeepVRMQwen3VLForImageClassification",
]
