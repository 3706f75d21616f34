"""Loading Deep-VRM weights: our folders, the official release's, and plain Qwen2.5-VL bases.

- Key names on disk. transformers 4.5x (which the official code runs on) writes Qwen2.5-VL weights
  under legacy names: `visual.*`, `visual_low_level.*`, `model.layers.*`, `model.embed_tokens.*`,
  `model.norm.*`, `lm_head.*`. transformers 5.x renames these for its own Qwen2.5-VL classes through
  its conversion mapping; `register_weight_renaming()` registers the same rules for our classes
  (the `^visual` rule also covers `visual_low_level`). New-style names load unchanged.
- Missing weights fail loudly: a Deep-VRM never runs with a randomly initialised tower.
- `from_base_model` builds a Deep-VRM from a Qwen2.5-VL model whose low-level encoder is an exact
  copy of the vision tower, without holding two copies of the language model.
"""

from __future__ import annotations

import logging
import os

import torch
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming

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


def _allowed_missing(key: str) -> bool:
    # A gate is new when a mean/add checkpoint is loaded as gated; it starts at zero (the base model).
    return key.endswith("fusion.gate")


class DeepVRMLoadingMixin:
    """`from_pretrained` that refuses incomplete checkpoints, and `from_base_model`."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs)
        missing = sorted(k for k in info["missing_keys"] if not _allowed_missing(k))
        if missing:
            hint = ""
            if any(".visual_low_level." in k or k.startswith("visual_low_level") for k in missing):
                hint = (
                    " The checkpoint has no low-level encoder (`visual_low_level.*`): is it a plain Qwen2.5-VL model? "
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
        """A Deep-VRM built from a Qwen2.5-VL model (object, folder or Hub id).

        The language model and `visual` are the base's own tensors (no copy); `visual_low_level`
        is an exact clone of `visual`. With `fusion="gated"` the gate starts at zero, so the result
        computes exactly what the base computes.
        """
        from transformers import Qwen2_5_VLForConditionalGeneration

        from .configuration import DeepVRMConfig

        source = None
        if isinstance(base, (str, os.PathLike)):
            source = base
            base = Qwen2_5_VLForConditionalGeneration.from_pretrained(base, dtype="auto")
        overrides = dict(config_overrides, fusion=fusion)
        if injection_layer is not None:
            overrides["injection_layer"] = injection_layer
        elif getattr(base.config, "injection_layer", None) is None:
            # The paper's relative depth (16 of 28) when the caller does not choose.
            overrides["injection_layer"] = max(1, round(base.config.text_config.num_hidden_layers * 16 / 28))
        config = DeepVRMConfig.from_qwen2_5_vl_config(base.config, **overrides)
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

    from .tokenization import prompt_ids_from_tokenizer

    hub_kwargs = {k: load_kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in load_kwargs}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **hub_kwargs)
        config.update(prompt_ids_from_tokenizer(tokenizer, config.prompt, config.system_prompt, config.labels))
    except Exception as error:  # no tokenizer there: classification will ask for one, generation still works
        logger.warning("No prompt ids for %s (could not use its tokenizer: %s).", path, error)
