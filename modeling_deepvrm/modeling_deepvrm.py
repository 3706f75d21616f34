"""Deep-VRM model classes: what every backbone shares, and the Qwen2.5-VL classes (the paper's).

One method, several backbones. This file holds the method once, as mixins that sit in front of a
backbone's own transformers classes (no copy of their modeling files):

    DeepVRMLoadingMixin / DeepVRMPreTrainedMixin   loading (official layout, missing weights, safetensors
                                                   only), `from_base_model`, gradient checkpointing, shared tower
    DeepVRMModelMixin                              `visual_low_level` beside `visual`, the injection layer in
                                                   the decoder, both towers' image features, the forward
    DeepVRMGenerationMixin                         the chat interface's generate() details
    DeepVRMClassificationMixin                     two-way logits from the answer-token rows of `lm_head`

and the Qwen2.5-VL backbone (the official release's classes, unchanged in name and behaviour):

    DeepVRMModel                      Qwen2_5_VLModel + `visual_low_level` + the injection layer
    DeepVRMForConditionalGeneration   the paper's chat interface (`generate()` answers real/fake)
    DeepVRMForImageClassification     two-way logits from the answer-token rows of `lm_head`

The other backbones are one small file each, the same four classes on their transformers classes:
`modeling_deepvrm_qwen3_vl.py` (Qwen3-VL) and `modeling_deepvrm_qwen3_5.py` (Qwen3.5).
`deepvrm_class(backbone, role)` finds any of them; `from_pretrained` and `from_base_model` of any
Deep-VRM class hand a folder or model of another backbone to that backbone's class of the same role,
so `DeepVRMForImageClassification.from_pretrained(path)` loads every Deep-VRM folder.

In-memory module names equal the official release's (`model.visual.*`, `model.visual_low_level.*`,
`model.language_model.*`, `lm_head.*`) in every backbone, so state dicts move between the three
classes of a backbone (and, for Qwen2.5-VL, the official checkpoint) unchanged.

Loading (`DeepVRMLoadingMixin`): our folders, the official release's and plain Qwen2.5-VL bases.
- Key names on disk: transformers 4.5x (which the official code runs on) writes Qwen2.5-VL weights
  under legacy names (`visual.*`, `visual_low_level.*`, `model.layers.*`, `lm_head.*`);
  `register_weight_renaming()` registers transformers' own renaming rules for these classes (the
  `^visual` rule also covers `visual_low_level`). New-style names load unchanged.
- Missing weights fail loudly (`MissingWeightsError`): a Deep-VRM never runs with a random tower.
  The one parameter a checkpoint may lack, a gated model's `fusion.gate`, starts at zero.
- Weights load from safetensors files only.
- `from_base_model` builds a Deep-VRM from a stock model of any backbone whose low-level encoder is
  an exact copy of the vision tower, without holding two copies of the language model.

This file, configuration_deepvrm.py and processing_deepvrm.py (with the files they import, the other
backbones' files among them) are the code `save_pretrained` copies into a model folder for
`trust_remote_code=True`: they import only torch, transformers and each other.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache, PretrainedConfig, PreTrainedModel, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLModel
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VisionTransformerPretrainedModel,
    Qwen2_5_VLPreTrainedModel,
    Qwen2_5_VLTextModel,
)

from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids, get_vision_window_index

from .configuration_deepvrm import DeepVRMConfig, backbone_of, config_class_for_path
from .fast_vision import use_fast_vision_modules
from .injection import DeepVRMAnswerDecoderLayer, DeepVRMInjectionDecoderLayer, ResidualFusion
from .processing_deepvrm import chat_template_for, prompt_ids_from_tokenizer
from .shared_tower import (
    LoRADelta,
    attach,
    build_lora_tree,
    detach,
    factorise_low_level_tower,
    low_level_active,
    merged_low_level_tower,
)


logger = logging.getLogger(__name__)


_LEGACY_TO_NEW = [
    # Listed on its own (before `^visual`) so that saving writes it back as `visual_low_level.*`,
    # the official layout, rather than leaving `model.visual_low_level.*`.
    WeightRenaming(source_patterns=r"^visual_low_level", target_patterns="model.visual_low_level"),
    WeightRenaming(source_patterns=r"^visual", target_patterns="model.visual"),
    WeightRenaming(source_patterns=r"^model(?!\.(language_model|visual))", target_patterns="model.language_model"),
]


class MissingWeightsError(RuntimeError):
    """A checkpoint lacks weights the model needs."""


def register_weight_renaming() -> None:
    """Teach transformers' loader the official checkpoint's legacy key names for our classes."""
    for class_name in ("DeepVRMForConditionalGeneration", "DeepVRMForImageClassification"):
        if get_checkpoint_conversion_mapping(class_name) is None:
            register_checkpoint_conversion_mapping(class_name, list(_LEGACY_TO_NEW))
    if get_checkpoint_conversion_mapping("DeepVRMModel") is None:
        # The bare model (base_model_prefix "model"): legacy `model.layers.*` -> `model.language_model.layers.*`.
        register_checkpoint_conversion_mapping(
            "DeepVRMModel",
            [WeightRenaming(source_patterns=r"^model\.(?!(language_model|visual))", target_patterns="model.language_model.")],
        )


PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


@contextlib.contextmanager
def safetensors_only(path, load_kwargs: dict):
    """Load weights from safetensors files only (pickle files can run code when read): sets
    `use_safetensors=True` in `load_kwargs`, and turns the loader's missing-file error for a folder
    that holds only PyTorch pickle weights into one that says how to convert it."""
    if load_kwargs.get("use_safetensors") is False:
        raise ValueError("Deep-VRM loads safetensors weights only; use_safetensors=False is not supported.")
    load_kwargs["use_safetensors"] = True
    try:
        yield
    except OSError as error:
        folder = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
        pickles = [name for name in PICKLE_WEIGHTS if folder and os.path.isfile(os.path.join(folder, name))]
        if not pickles:
            raise
        raise OSError(
            f"{folder} holds only PyTorch pickle weights ({pickles[0]}), and Deep-VRM loads safetensors only: a "
            "pickle file can run arbitrary code when it is read. If you trust its origin, convert it once, e.g. "
            "`python -c \"import torch; from safetensors.torch import save_file; "
            "save_file(torch.load('pytorch_model.bin', weights_only=True), 'model.safetensors', metadata={'format': 'pt'})\"` "
            "in that folder (weights_only=True refuses code; a sharded checkpoint: convert each shard), then load it again."
        ) from error


def _allowed_missing(key: str) -> bool:
    # A gate is new when a mean/add checkpoint is loaded as gated; it starts at zero (the base model).
    return key.endswith("fusion.gate")


class DeepVRMLoadingMixin:
    """`from_pretrained` that refuses incomplete checkpoints, and `from_base_model`."""

    _deepvrm_role = None  # "model", "generation" or "classification": which class of a backbone this is

    @classmethod
    def _for_backbone(cls, backbone: str | None):
        """This class's counterpart for another backbone (itself when the backbone is its own or unknown)."""
        if backbone is None or cls._deepvrm_role is None or backbone == getattr(cls.config_class, "backbone", None):
            return cls
        return deepvrm_class(backbone, cls._deepvrm_role)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        config = kwargs.get("config")
        if isinstance(config, PretrainedConfig):
            target = cls._for_backbone(backbone_of(config.model_type))
        else:
            config_class = config_class_for_path(pretrained_model_name_or_path, kwargs)
            target = cls._for_backbone(config_class.backbone if config_class else None)
        if target is not cls:  # a folder of another backbone: its class of the same role loads it
            return target.from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        want_info = kwargs.pop("output_loading_info", False)
        with safetensors_only(pretrained_model_name_or_path, kwargs):
            model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs)
        missing = sorted(k for k in info["missing_keys"] if not _allowed_missing(k))
        with torch.no_grad():
            for key in info["missing_keys"]:
                if _allowed_missing(key):
                    # Its documented start, whatever memory the loader left there: a zero gate makes the
                    # model compute exactly what the mean/add checkpoint's base computes.
                    model.get_parameter(key).zero_()
        if missing:
            hint = ""
            if any(".visual_low_level." in k or k.startswith("visual_low_level") for k in missing):
                hint = (
                    " The checkpoint has no low-level encoder (`visual_low_level.*`): is it a plain "
                    f"{cls.config_class.backbone} model? "
                    "Build a Deep-VRM from it with `from_base_model(path)` instead."
                )
            shown = ", ".join(missing[:8]) + (f", ... ({len(missing)} in all)" if len(missing) > 8 else "")
            raise MissingWeightsError(
                f"{pretrained_model_name_or_path!s} is missing weights of {cls.__name__}: {shown}.{hint}"
            )
        if not model.config.has_prompt_ids:
            _fill_prompt_ids_from_tokenizer(model.config, pretrained_model_name_or_path, kwargs)
        return (model, info) if want_info else model

    @classmethod
    def from_base_model(cls, base, injection_layer: int | None = None, fusion: str = "mean", **config_overrides):
        """A Deep-VRM built from a stock model of any supported backbone (object, folder or Hub id):
        this class's counterpart for the base's backbone (e.g. `DeepVRMForConditionalGeneration`
        given a Qwen3-VL model returns a `DeepVRMQwen3VLForConditionalGeneration`).

        The language model and `visual` are the base's own tensors (no copy); `visual_low_level`
        is an exact clone of `visual`. With `fusion="gated"` the gate starts at zero, so the result
        computes exactly what the base computes. Without `injection_layer`, the paper's relative
        depth (16 of 28 layers).
        """
        source = None
        if isinstance(base, (str, os.PathLike)):
            source = base
            config_class = config_class_for_path(base)
            if config_class is None:
                raise ValueError(f"{base!s} holds no model of a supported backbone ({', '.join(BACKBONE_NAMES)}).")
            load_kwargs = {"dtype": "auto"}
            with safetensors_only(base, load_kwargs):
                base = deepvrm_class(config_class.backbone, "stock").from_pretrained(base, **load_kwargs)
        backbone = backbone_of(base.config.model_type)
        if backbone is None:
            raise ValueError(f"Deep-VRM supports {', '.join(BACKBONE_NAMES)} models, not {base.config.model_type!r}.")
        target = cls._for_backbone(backbone)
        if target is not cls:
            result = target.from_base_model(base, injection_layer=injection_layer, fusion=fusion, **config_overrides)
            if source is not None and not result.config.has_prompt_ids:
                _fill_prompt_ids_from_tokenizer(result.config, source, {})
            return result
        overrides = dict(config_overrides, fusion=fusion)
        if injection_layer is not None:
            overrides["injection_layer"] = injection_layer
        elif getattr(base.config, "injection_layer", None) is None:
            # The paper's relative depth (16 of 28) when the caller does not choose.
            overrides["injection_layer"] = default_injection_layer(base.config.text_config.num_hidden_layers)
        config = cls.config_class.from_base_config(base.config, **overrides)
        if config.prompt_prefix_ids is None and getattr(base.config, "prompt_prefix_ids", None) is not None:
            for name in ("prompt_prefix_ids", "prompt_suffix_ids", "answer_token_ids"):
                setattr(config, name, getattr(base.config, name))
        config._attn_implementation = base.config._attn_implementation

        with torch.device("meta"):
            model = cls(config)
        state = base.state_dict()
        visual = {k: v for k, v in state.items() if k.startswith("model.visual.")}
        state.update({"model.visual_low_level." + k[len("model.visual.") :]: v.clone() for k, v in visual.items()})
        result = model.load_state_dict(state, strict=False, assign=True)
        if result.unexpected_keys:
            raise MissingWeightsError(f"Base model has weights Deep-VRM does not know: {result.unexpected_keys[:8]}")
        # Non-persistent buffers (rotary frequencies) are not in state dicts: take the base's.
        for name, buffer in base.named_buffers():
            _set_tensor(model, name, buffer)
            if name.startswith("model.visual."):
                _set_tensor(model, "model.visual_low_level." + name[len("model.visual.") :], buffer.clone())
        for name, param in model.named_parameters():
            if param.device.type == "meta":
                if not _allowed_missing(name):
                    raise MissingWeightsError(f"Base model lacks {name}.")
                _set_tensor(model, name, torch.nn.Parameter(torch.zeros(param.shape, dtype=param.dtype)))
        model.tie_weights()
        model.to(next(base.parameters()).device)
        if source is not None and not config.has_prompt_ids:
            _fill_prompt_ids_from_tokenizer(config, source, {})
        return model.eval() if not base.training else model


BACKBONE_NAMES = ("qwen2_5_vl", "qwen3_vl", "qwen3_5")


def default_injection_layer(num_hidden_layers: int) -> int:
    """The paper's relative depth (16 of 28 decoder layers), for a decoder of another depth."""
    return min(num_hidden_layers - 1, max(1, round(num_hidden_layers * 16 / 28)))


def _set_tensor(root: torch.nn.Module, dotted: str, tensor: torch.Tensor) -> None:
    module_path, _, name = dotted.rpartition(".")
    module = root.get_submodule(module_path) if module_path else root
    if isinstance(tensor, torch.nn.Parameter):
        module._parameters[name] = tensor
    else:
        module._buffers[name] = tensor


def _fill_prompt_ids_from_tokenizer(config, path, load_kwargs: dict) -> None:
    """Official checkpoints carry no prompt ids in config.json; take them from their tokenizer."""
    from transformers import AutoTokenizer

    hub_kwargs = {k: load_kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in load_kwargs}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **hub_kwargs)
        config.update(prompt_ids_from_tokenizer(tokenizer, config.prompt, config.system_prompt, config.labels,
                                                chat_template=chat_template_for(config.backbone)))
    except Exception as error:  # no tokenizer there: classification will ask for one, generation still works
        logger.warning("No prompt ids for %s (could not use its tokenizer: %s).", path, error)


@dataclass
class DeepVRMImageFeatures(BaseModelOutputWithPooling):
    r"""
    low_level_pooler_output (`tuple[torch.Tensor]`): the low-level encoder's embeddings, one
        `[n_image_tokens_i, hidden]` tensor per image (as `pooler_output` for the semantic tower).
    """

    low_level_pooler_output: tuple[torch.Tensor, ...] | None = None


def mm_token_type_ids_from_input_ids(input_ids: torch.Tensor, config) -> torch.Tensor:
    """Modality of each token (0 text, 1 image, 2 video), as Qwen2.5-VL's processor returns it.

    transformers 5.x computes the 3-D (M-RoPE) positions only when these are passed; the official
    interface passes just `input_ids`, so we derive them from the placeholder token ids.
    """
    types = (input_ids == config.image_token_id).int()
    return types + 2 * (input_ids == config.video_token_id).int()


def kept_per_grid(store: dict, image_grid_thw: torch.Tensor, build, *key) -> dict:
    """`store`'s entry for this image grid (and `key`), built by `build()` the first time. Plans that
    depend only on the grid are built once per distinct grid (a fixed pixel budget gives one; at most
    64 are kept). Whether inference_mode is on is part of the key: tensors made under it cannot be
    saved for backward, so a later training forward must not be handed them."""
    full_key = (tuple(image_grid_thw.flatten().tolist()), image_grid_thw.device, torch.is_inference_mode_enabled(), *key)
    plan = store.get(full_key)
    if plan is None:
        plan = build()
        if len(store) >= 64:
            store.pop(next(iter(store)))
        store[full_key] = plan
    return plan


def detection_prompt_inputs(prefix_ids, suffix_ids, image_token_id: int, pad_id: int, image_grid_thw: torch.Tensor,
                            spatial_merge_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Input ids of the detection prompt for each image of a batch, `prefix + [image] * n + suffix`
    with n the image's token count, left-padded so every answer position is -1; and the attention
    mask, or None when no row is padded (sdpa then takes its causal fast path)."""
    counts = (image_grid_thw.prod(-1) // spatial_merge_size**2).tolist()
    prefix, suffix = list(prefix_ids), list(suffix_ids)
    lengths = [len(prefix) + n + len(suffix) for n in counts]
    longest = max(lengths)
    input_ids = torch.full((len(counts), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(counts), longest), dtype=torch.long)
    for row, (n, length) in enumerate(zip(counts, lengths)):
        input_ids[row, longest - length :] = torch.tensor(prefix + [image_token_id] * n + suffix)
        attention_mask[row, longest - length :] = 1
    device = image_grid_thw.device
    return input_ids.to(device), (None if min(lengths) == longest else attention_mask.to(device))


class DeepVRMPreTrainedMixin(DeepVRMLoadingMixin):
    """What every Deep-VRM class adds to its backbone's PreTrainedModel."""

    base_model_prefix = "model"

    def _init_weights(self, module):
        super()._init_weights(module)
        from transformers import initialization as init

        if isinstance(module, LoRADelta):
            # A zero B makes a fresh shared low-level encoder an exact copy of `visual`.
            init.kaiming_uniform_(module.lora_A, a=5**0.5)
            init.zeros_(module.lora_B)

    @torch.no_grad()
    def initialize_weights(self):
        from transformers import initialization as init

        # The fusion lives inside the text model, a PreTrainedModel of its own: transformers hands its
        # modules to that model's stock `_init_weights`, never to ours, so a gate that loading left
        # empty (a mean/add checkpoint loaded as gated) would keep whatever memory it got. A zero gate
        # makes the model compute exactly what its base computes. As for every other module, one
        # already initialised is skipped, and so is a gate that loading filled (`init` checks that).
        pending = [
            m for m in self.modules()
            if isinstance(m, ResidualFusion) and m.gate is not None and not getattr(m, "_is_hf_initialized", False)
        ]
        super().initialize_weights()
        for module in pending:
            init.zeros_(module.gate)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None, **kwargs):
        # The low-level embeddings reach the injection layer as keyword arguments; re-entrant
        # checkpointing passes no gradient through those, so the low-level tower would silently
        # stop learning. Non-re-entrant checkpointing (transformers' default) keeps them.
        # (`**kwargs`: the Trainer's `every_n_layers` / `offload`, via activation_checkpointing_enable.)
        checkpoint_kwargs = dict(gradient_checkpointing_kwargs or {})
        if checkpoint_kwargs.get("use_reentrant"):
            logger.warning("Deep-VRM needs non-re-entrant gradient checkpointing; using use_reentrant=False.")
        checkpoint_kwargs["use_reentrant"] = False
        super().gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpoint_kwargs, **kwargs)

    def share_vision_tower(self, rank: int | None = None):
        """Switch to the shared-tower form (see shared_tower.py); exact. Returns self."""
        self.base_model.to_shared_tower(rank)
        return self

    def unshare_vision_tower(self):
        """Switch to the separate-tower (official) form; exact. Returns self."""
        self.base_model.to_separate_tower()
        return self


class DeepVRMModelMixin:
    """Put before a backbone's `DeepVRM*PreTrainedModel` and its stock `*Model`: the backbone's model
    with the low-level tower beside `visual` and the injection layer in its decoder. A backbone names
    its three stock parts; everything else is here."""

    _deepvrm_role = "model"
    vision_tower_class = None  # the stock vision tower (`visual` and `visual_low_level`)
    text_model_class = None  # the stock text model (`language_model`)
    injection_layer_class = None  # the stock decoder layer with InjectionMixin in front (injection.py)
    answer_layer_class = None  # the stock decoder layer with AnswerPositionMixin in front (injection.py)
    # Whether the classification path may compute the prompt prefix once (its keys/values in a
    # DynamicCache): true where every decoder layer is attention (Qwen3.5's linear-attention layers
    # carry a recurrent state instead, which the stock layers do not start from a batch-expanded copy).
    supports_prefix_cache = True
    image_features_class = None  # the stock image-features output plus `low_level_pooler_output`

    def __init__(self, config):
        PreTrainedModel.__init__(self, config)
        self.visual = self.vision_tower_class._from_config(config.vision_config)
        # The low-level encoder: same architecture as `visual`, trained (LoRA) for generator artifacts;
        # a second tower (official layout) or `visual` plus LoRA deltas (shared_tower.py).
        if config.low_level_tower == "separate":
            self.visual_low_level = self.vision_tower_class._from_config(config.vision_config)
        else:
            self.visual_low_level_lora = build_lora_tree(self.visual, config.low_level_lora_rank)
            attach(self.visual, self.visual_low_level_lora)
        self.language_model = self.text_model_class._from_config(config.text_config)
        k = config.injection_layer
        self.language_model.layers[k] = self.injection_layer_class(config.text_config, k, config.fusion)
        last = self.language_model.layers[-1]
        if not isinstance(last, self.injection_layer_class):
            # The same stock layer (same parameters), which can also run at the answer position only.
            last.__class__ = self.answer_layer_class
        self.rope_deltas = None
        self._vision_plans: dict = {}  # per image grid: what both towers derive from it alone
        self._prefix_entry = None  # (key, per-layer keys/values) of the last prompt prefix computed
        self.prepare_vision_towers()
        self.post_init()
        self.copy_visual_to_low_level()

    def prepare_vision_towers(self) -> None:
        """A backbone's hook to adapt its towers in place once built (e.g. faster modules)."""

    @torch.no_grad()
    def copy_visual_to_low_level(self):
        """Make the low-level encoder an exact copy of the semantic vision tower (how Deep-VRM starts).

        A fresh model does this at construction; checkpoint loading overwrites both towers anyway.
        """
        if self.shares_vision_tower or self.visual.patch_embed.proj.weight.device.type == "meta":
            return
        self.visual_low_level.load_state_dict(self.visual.state_dict())

    @property
    def shares_vision_tower(self) -> bool:
        return self.config.low_level_tower == "shared"

    @property
    def vision_towers(self) -> list:
        return [self.visual] if self.shares_vision_tower else [self.visual, self.visual_low_level]

    def to_shared_tower(self, rank: int | None = None) -> None:
        if self.shares_vision_tower:
            return
        rank, factors = factorise_low_level_tower(self.visual, self.visual_low_level, rank)
        lora = build_lora_tree(self.visual, rank)
        dtype, device = self.visual.dtype, self.visual.device
        with torch.no_grad():
            for name, (a, b) in factors.items():
                delta = lora.get_submodule(name)
                delta.lora_A = nn.Parameter(a.to(device, dtype))
                delta.lora_B = nn.Parameter(b.to(device, dtype))
        del self.visual_low_level
        self.visual_low_level_lora = lora
        attach(self.visual, lora)
        self.config.low_level_tower, self.config.low_level_lora_rank = "shared", rank

    def to_separate_tower(self) -> None:
        if not self.shares_vision_tower:
            return
        self.visual_low_level = merged_low_level_tower(self.visual, self.visual_low_level_lora)
        detach(self.visual)
        del self.visual_low_level_lora
        self.config.low_level_tower, self.config.low_level_lora_rank = "separate", None

    def vision_plan(self, image_grid_thw: torch.Tensor) -> dict:
        """Precomputed keyword arguments both towers accept for an image grid (a backbone may cache
        what its towers derive from the grid alone); none by default."""
        return {}

    def get_low_level_image_features(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> torch.Tensor:
        """Low-level image embeddings `[n_image_tokens, hidden]` (the tower's merged output), in
        image-token order. Anything else the tower returns (Qwen3-VL's DeepStack features) is unused."""
        plan = self.vision_plan(image_grid_thw)
        if self.shares_vision_tower:
            with low_level_active(self.visual_low_level_lora):
                return self.visual(pixel_values.type(self.visual.dtype), grid_thw=image_grid_thw, **plan).pooler_output
        pixel_values = pixel_values.type(self.visual_low_level.dtype)
        return self.visual_low_level(pixel_values, grid_thw=image_grid_thw, **plan).pooler_output

    def get_image_features(self, pixel_values: torch.Tensor, image_grid_thw: torch.LongTensor | None = None, **kwargs):
        """Both towers' image embeddings: the backbone's own output for the semantic tower (`pooler_output`
        per image, and e.g. Qwen3-VL's `deepstack_features`), plus `low_level_pooler_output` (per image).
        `generate()` encodes images through this method before the prefill, so the low-level embeddings
        must travel with the semantic ones."""
        return_dict = kwargs.pop("return_dict", True)
        plan = {**self.vision_plan(image_grid_thw), **kwargs}
        semantic = super().get_image_features(pixel_values, image_grid_thw, return_dict=True, **plan)
        split_sizes = (image_grid_thw.prod(-1) // self.visual.spatial_merge_size**2).tolist()
        low_level = self.get_low_level_image_features(pixel_values, image_grid_thw)
        outputs = self.image_features_class(**semantic, low_level_pooler_output=torch.split(low_level, split_sizes))
        return outputs if return_dict else outputs.to_tuple()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        mm_token_type_ids: torch.IntTensor | None = None,
        mm_encoder_outputs: dict | None = None,
        low_level_image_embeds: torch.Tensor | None = None,
        **kwargs,
    ):
        r"""The backbone's forward plus the residual injection.

        low_level_image_embeds (`torch.Tensor` of shape `(n_image_tokens, hidden_size)`, *optional*):
            Low-level embeddings to inject instead of the low-level tower's (e.g. for ablations).
        """
        if mm_token_type_ids is None and input_ids is not None:
            mm_token_type_ids = mm_token_type_ids_from_input_ids(input_ids, self.config)
        if pixel_values is not None:
            mm_encoder_outputs = dict(mm_encoder_outputs or {})
            mm_encoder_outputs["image"] = self.get_image_features(pixel_values, image_grid_thw, return_dict=True)
        image_outputs = (mm_encoder_outputs or {}).get("image")
        if image_outputs is not None and low_level_image_embeds is None:
            low_level = getattr(image_outputs, "low_level_pooler_output", None)
            if low_level is None:
                raise ValueError(
                    "Precomputed image features without low-level embeddings: compute them with "
                    "the Deep-VRM model's get_image_features, or pass low_level_image_embeds."
                )
            low_level_image_embeds = torch.cat(low_level, dim=0)
        if low_level_image_embeds is not None:
            # Read only by the injection layer; see injection.py.
            kwargs["low_level_image_embeds"] = low_level_image_embeds.to(self.get_input_embeddings().weight.device)
            kwargs["image_token_mask"] = self._image_token_mask(input_ids, inputs_embeds, low_level_image_embeds)
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            image_grid_thw=image_grid_thw,
            mm_token_type_ids=mm_token_type_ids,
            mm_encoder_outputs=mm_encoder_outputs,
            **kwargs,
        )

    @torch.no_grad()
    def answer_position_states(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor,
                               prefix_length: int = 0, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The final-norm hidden state at the last position of each row, `[batch, hidden]`, for
        unpadded prompts whose first `prefix_length` tokens are the same image-free text in every row.
        The same numbers as `forward(...).last_hidden_state[:, -1]` (float round-off aside), with two
        exact savings:

        - the last decoder layer computes its query, attention output and MLP (and the final norm
          runs) at the last position only (`AnswerPositionMixin`);
        - causal attention: the prefix's hidden states and keys/values do not depend on the image, so
          they are computed once at batch 1 (`_prefix_keys_values`, kept while the language model's
          weights are unchanged) and the rest of each row runs behind them, its M-RoPE positions
          taken from the full prompt's.

        `position_ids`: the full prompt's M-RoPE positions `[3, batch, seq]` if the caller has them.
        """
        batch = input_ids.shape[0]
        positions = position_ids if position_ids is not None else self.prompt_position_ids(input_ids, image_grid_thw)
        start, cache = 0, None
        if prefix_length > 0 and self.supports_prefix_cache:
            start = prefix_length
            prefix = self._prefix_keys_values(input_ids[0, :start], positions[:, :1, :start])
            # Expanded views: the first cache update concatenates, so the kept tensors are never written.
            cache = DynamicCache(ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix])
        # Qwen3-VL adds DeepStack features after its first layers, at every image position: not the last
        # layer's output then cut to one position (no preset has that few layers, but a config may).
        deepstack = len(getattr(self.config.vision_config, "deepstack_visual_indexes", None) or [])
        layers = len(self.language_model.layers)
        outputs = self(
            input_ids=input_ids[:, start:], position_ids=positions[:, :, start:], cache=cache,
            pixel_values=pixel_values, image_grid_thw=image_grid_thw, use_cache=False,
            answer_position_layer=(layers - 1) if deepstack < layers else None,
        )
        return outputs.last_hidden_state[:, -1]

    def prompt_position_ids(self, input_ids: torch.Tensor, image_grid_thw: torch.Tensor) -> torch.Tensor:
        """The M-RoPE positions `[3, batch, seq]` the backbone gives unpadded prompts with these images."""
        types = mm_token_type_ids_from_input_ids(input_ids, self.config)
        return self.get_rope_index(input_ids, mm_token_type_ids=types, image_grid_thw=image_grid_thw)[0]

    def _weights_signature(self) -> tuple | None:
        """What the prompt prefix's keys/values depend on besides its ids: identity and in-place-write
        counter of every language-model tensor (an optimizer step, `load_state_dict`, `.to()` or an
        assignment changes it) and the state of any PEFT adapter layer in it (active adapters,
        disabled, merged, scaling: switching adapters changes no tensor). None, so that nothing is
        kept, where that cannot be told: inference tensors (no counter), parameters held elsewhere
        (ZeRO-3's empty placeholders) or hooks on the decoder's modules. Writes through `.data`
        bypass the counter: `model.eval()` (or `.train()`) drops what was kept."""
        tensors = (*self.language_model.parameters(), *self.language_model.buffers())
        try:
            signature = [(id(t), t.data_ptr(), t._version) for t in tensors]
        except RuntimeError:  # inference tensors (made under inference_mode) have no version counter
            return None
        if any(t.numel() == 0 or hasattr(t, "ds_id") for t in tensors):
            return None
        for module in self.language_model.modules():
            if module._forward_hooks or module._forward_pre_hooks:
                return None
            if hasattr(module, "active_adapters") and hasattr(module, "merged"):  # a PEFT tuner layer
                state = (tuple(module.active_adapters), getattr(module, "disable_adapters", False), module.merged,
                         repr(getattr(module, "scaling", None)))  # fmt: skip
                signature.append((id(module), state))
        return tuple(signature)

    def train(self, mode: bool = True):
        # Modes change around each evaluation of a training run: a fresh prefix then, whatever
        # updated the weights (an optimizer writing to ZeRO partitions changes no tensor seen here).
        self._prefix_entry = None
        return super().train(mode)

    def _prefix_keys_values(self, prefix_ids: torch.Tensor, prefix_positions: torch.Tensor) -> list:
        """Per decoder layer, the keys and values `[1, kv_heads, prefix, head_dim]` of the prompt prefix,
        computed by the stock text model and kept for the next call while the weights are unchanged."""
        signature = self._weights_signature()
        key = (tuple(prefix_ids.tolist()), prefix_ids.device, self.language_model.embed_tokens.weight.dtype, signature)
        if signature is not None and self._prefix_entry is not None and self._prefix_entry[0] == key:
            return self._prefix_entry[1]
        cache = DynamicCache()
        self.language_model(input_ids=prefix_ids[None], position_ids=prefix_positions, cache=cache, use_cache=True)
        prefix = [(layer.keys, layer.values) for layer in cache.layers]
        self._prefix_entry = (key, prefix) if signature is not None else None
        return prefix

    def _image_token_mask(self, input_ids, inputs_embeds, low_level_image_embeds) -> torch.Tensor:
        """[batch, seq] bool: the image-placeholder positions, as many as there are low-level embeddings."""
        if input_ids is not None:
            mask = input_ids == self.config.image_token_id
        else:
            mask = self.get_placeholder_mask(None, inputs_embeds)[0][..., 0]
        if int(mask.sum()) != low_level_image_embeds.shape[0]:
            raise ValueError(
                f"Image features and image tokens do not match, tokens: {int(mask.sum())}, "
                f"low-level features: {low_level_image_embeds.shape[0]}"
            )
        return mask.to(low_level_image_embeds.device)


class DeepVRMGenerationMixin:
    """Put before a backbone's `DeepVRM*PreTrainedModel` and its stock `*ForConditionalGeneration`: the
    paper's chat interface (`generate()` answers "real"/"fake", or longer text)."""

    _deepvrm_role = "generation"
    model_class = None  # the backbone's Deep-VRM model class

    def __init__(self, config):
        PreTrainedModel.__init__(self, config)
        self.model = self.model_class(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
        # generate() builds 3-D positions only from `mm_token_type_ids`; derive them for callers of the
        # official interface (input_ids + pixel_values + image_grid_thw) so both styles agree.
        input_ids = model_kwargs.get("input_ids", inputs_tensor)
        if model_kwargs.get("mm_token_type_ids") is None and input_ids is not None and input_ids.ndim == 2:
            model_kwargs["mm_token_type_ids"] = mm_token_type_ids_from_input_ids(input_ids, self.config)
        return super()._prepare_position_ids_for_generation(inputs_tensor, model_kwargs)

    def _expand_multimodal_outputs(self, input_ids, mm_encoder_output, expand_size=1, inputs_embeds=None):
        # Beam search / num_return_sequences repeat each sample's image features; repeat the
        # low-level ones the same way (the expansion depends only on the per-image token counts).
        image = mm_encoder_output.get("image")
        low_level = getattr(image, "low_level_pooler_output", None)
        mm_encoder_output = super()._expand_multimodal_outputs(input_ids, mm_encoder_output, expand_size, inputs_embeds)
        if low_level is not None and expand_size > 1:
            shadow = {"image": BaseModelOutputWithPooling(pooler_output=low_level)}
            shadow = super()._expand_multimodal_outputs(input_ids, shadow, expand_size, inputs_embeds)
            image.low_level_pooler_output = shadow["image"].pooler_output
        return mm_encoder_output


class DeepVRMClassificationMixin:
    """Put before a backbone's `DeepVRM*PreTrainedModel`: real/fake classification through the
    language-model head.

    `forward(pixel_values, image_grid_thw)` builds the paper's chat prompt itself (from the prompt
    ids in the config), runs one forward pass, and scores only the answer tokens at the answer
    position: `logits[:, i]` is the LM logit of label i's answer token, so `softmax(logits)` equals
    the chat model's first-token probabilities renormalised over the two answers.
    """

    _deepvrm_role = "classification"
    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    main_input_name = "pixel_values"
    model_class = None  # the backbone's Deep-VRM model class

    def __init__(self, config):
        PreTrainedModel.__init__(self, config)
        self.model = self.model_class(config)
        # The full LM head is kept so weights move unchanged between the classes; only the answer
        # tokens' rows are ever multiplied.
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.num_labels = len(config.id2label)
        self._prompt_plans: dict = {}  # per image grid and prompt: ids, mask, positions (see _prompt_plan)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def build_prompt_inputs(self, image_grid_thw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Left-padded chat-prompt ids (one image each) and their attention mask (None without padding)."""
        config = self.config
        if not config.has_prompt_ids:
            raise ValueError(
                "This model's config has no prompt token ids, so it cannot build its classification prompt. "
                "Attach a tokenizer once: `DeepVRMProcessor.from_pretrained(path).configure_model(model)` "
                "(or `model.config.update(prompt_ids_from_tokenizer(...))`), then save the model."
            )
        pad_id = getattr(config.text_config, "pad_token_id", None)
        if pad_id is None:
            eos = getattr(config.text_config, "eos_token_id", None)
            pad_id = (eos[0] if isinstance(eos, (list, tuple)) else eos) or 0
        return detection_prompt_inputs(
            config.prompt_prefix_ids, config.prompt_suffix_ids, config.image_token_id, pad_id,
            image_grid_thw, config.vision_config.spatial_merge_size,
        )

    def _prompt_plan(self, image_grid_thw: torch.Tensor) -> dict:
        """`build_prompt_inputs` (and, once the savings path needs them, the prompt's M-RoPE positions),
        kept per image grid: both depend only on the grid and the config's prompt ids, and building
        them is a Python loop per row (a fixed pixel budget gives one grid). Callers only read them."""
        config = self.config

        def build():
            input_ids, attention_mask = self.build_prompt_inputs(image_grid_thw)
            return {"input_ids": input_ids, "attention_mask": attention_mask}

        return kept_per_grid(
            self._prompt_plans, image_grid_thw, build, tuple(config.prompt_prefix_ids or ()),
            tuple(config.prompt_suffix_ids or ()), config.image_token_id, config.vision_config.spatial_merge_size,
            getattr(config.text_config, "pad_token_id", None), str(getattr(config.text_config, "eos_token_id", None)),
        )

    # Set False to always run the full forward (e.g. to time or check the savings against it).
    classification_savings = True

    def uses_classification_savings(self, attention_mask, output_hidden_states, kwargs) -> bool:
        """Whether this call takes `answer_position_states` (exact savings) rather than the full forward:
        inference only (no gradients, eval mode), no padding (every image of the batch has the same
        token count, as with a fixed pixel budget), and nothing asked for that needs every position
        of every layer (hidden states, attentions, injected embeddings of one's own, ...)."""
        return (self.classification_savings and attention_mask is None and not output_hidden_states and not kwargs
                and not self.training and not torch.is_grad_enabled())

    def forward(
        self,
        pixel_values: torch.Tensor,
        image_grid_thw: torch.LongTensor,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput:
        r"""
        pixel_values (`torch.Tensor` of shape `(n_patches, patch_dim)`): flattened patches of all images,
            as the backbone's image processor returns them (a leading batch dimension is also accepted).
        image_grid_thw (`torch.LongTensor` of shape `(batch_size, 3)`): patch grid of each image.
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*): label ids; gives a cross-entropy loss.
        """
        if pixel_values.ndim == 3:
            pixel_values = pixel_values.reshape(-1, pixel_values.shape[-1])
        plan = self._prompt_plan(image_grid_thw)
        input_ids, attention_mask = plan["input_ids"], plan["attention_mask"]
        if self.uses_classification_savings(attention_mask, output_hidden_states, kwargs):
            if plan.get("position_ids") is None:
                plan["position_ids"] = self.model.prompt_position_ids(input_ids, image_grid_thw)
            answer_states = self.model.answer_position_states(
                input_ids, pixel_values, image_grid_thw, prefix_length=len(self.config.prompt_prefix_ids),
                position_ids=plan["position_ids"],
            )
            outputs = ImageClassifierOutput()  # no per-layer outputs on this path (none were asked for)
        else:
            outputs = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                pixel_values=pixel_values,
                image_grid_thw=image_grid_thw,
                use_cache=False,
                output_hidden_states=output_hidden_states,
                **kwargs,
            )
            answer_states = outputs.last_hidden_state[:, -1]
        answer_rows = self.lm_head.weight[list(self.config.answer_token_ids)]
        logits = answer_states @ answer_rows.to(answer_states.dtype).T
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels.to(logits.device).long())
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


# ---------------------------------------------------------------------------------------- Qwen2.5-VL
class DeepVRMPreTrainedModel(DeepVRMPreTrainedMixin, Qwen2_5_VLPreTrainedModel):
    config: DeepVRMConfig
    config_class = DeepVRMConfig
    _no_split_modules = ["Qwen2_5_VLDecoderLayer", "DeepVRMInjectionDecoderLayer", "DeepVRMAnswerDecoderLayer",
                         "Qwen2_5_VLVisionBlock"]


class DeepVRMModel(DeepVRMModelMixin, DeepVRMPreTrainedModel, Qwen2_5_VLModel):
    """Qwen2.5-VL + `visual_low_level` + the injection layer. Its towers use the faster vision modules
    of fast_vision.py, and share what they derive from an image grid (`vision_plan`)."""

    vision_tower_class = Qwen2_5_VisionTransformerPretrainedModel
    text_model_class = Qwen2_5_VLTextModel
    injection_layer_class = DeepVRMInjectionDecoderLayer
    answer_layer_class = DeepVRMAnswerDecoderLayer
    image_features_class = DeepVRMImageFeatures

    def prepare_vision_towers(self) -> None:
        for tower in self.vision_towers:
            use_fast_vision_modules(tower)

    def vision_plan(self, image_grid_thw: torch.Tensor) -> dict:
        """What both towers derive from the image grid alone (rotary positions, window order,
        attention segments), computed once per distinct grid and passed to each tower as the
        precomputed kwargs transformers' vision forward accepts."""

        def build():
            vision = self.config.vision_config
            window_index, cu_window_seqlens = get_vision_window_index(
                image_grid_thw, vision.spatial_merge_size, vision.window_size, vision.patch_size
            )
            return {
                "position_ids": get_vision_position_ids(image_grid_thw, vision.spatial_merge_size),
                "cu_seqlens": get_vision_cu_seqlens(image_grid_thw),
                "window_index": window_index,
                "cu_window_seqlens": cu_window_seqlens,
            }

        plan = kept_per_grid(self._vision_plans, image_grid_thw, build)
        return dict(plan)


class DeepVRMForConditionalGeneration(DeepVRMGenerationMixin, DeepVRMPreTrainedModel, Qwen2_5_VLForConditionalGeneration):
    """The paper's chat interface: `generate()` answers "real"/"fake" (or longer text)."""

    model_class = DeepVRMModel


class DeepVRMForImageClassification(DeepVRMClassificationMixin, DeepVRMPreTrainedModel):
    """Real/fake classification through the language-model head (see `DeepVRMClassificationMixin`)."""

    model_class = DeepVRMModel


# ---------------------------------------------------------------------------------------- all backbones
def deepvrm_class(backbone: str, role: str):
    """The Deep-VRM class of a backbone (`qwen2_5_vl`, `qwen3_vl`, `qwen3_5`) for a role: `model`,
    `generation`, `classification`, or `stock` (the backbone's own transformers model a base is)."""
    if backbone == "qwen2_5_vl":
        classes = (DeepVRMModel, DeepVRMForConditionalGeneration, DeepVRMForImageClassification,
                   Qwen2_5_VLForConditionalGeneration)  # fmt: skip
    elif backbone == "qwen3_vl":
        from .modeling_deepvrm_qwen3_vl import CLASSES as classes
    elif backbone == "qwen3_5":
        from .modeling_deepvrm_qwen3_5 import CLASSES as classes
    else:
        raise ValueError(f"Unknown backbone {backbone!r}; Deep-VRM supports {', '.join(BACKBONE_NAMES)}.")
    roles = ("model", "generation", "classification", "stock")
    if role not in roles:
        raise ValueError(f"Unknown role {role!r}; choose from {roles}.")
    return dict(zip(roles, classes))[role]


def is_deepvrm_model(model) -> bool:
    """Whether `model` is a Deep-VRM model of any backbone (and any role)."""
    return isinstance(model, DeepVRMPreTrainedMixin)


# Official-layout checkpoints name weights `visual.*`, `model.layers.*`, ...: teach transformers' loader
# those names for these classes, on import (in the package and in a folder's remote-code copy alike).
register_weight_renaming()
# `save_pretrained` copies the model files into the saved folder (custom code for `trust_remote_code`).
DeepVRMModel.register_for_auto_class("AutoModel")
DeepVRMForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
DeepVRMForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "MissingWeightsError",
    "detection_prompt_inputs",
    "deepvrm_class",
    "is_deepvrm_model",
    "DeepVRMPreTrainedMixin",
    "DeepVRMModelMixin",
    "DeepVRMGenerationMixin",
    "DeepVRMClassificationMixin",
    "DeepVRMPreTrainedModel",
    "DeepVRMModel",
    "DeepVRMForConditionalGeneration",
    "DeepVRMForImageClassification",
]
