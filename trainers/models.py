"""Building the model each stage starts from, and its processor.

`--model` may be

- a preset name (`tiny`, `small`, `tiny-qwen3-vl`, `tiny-qwen3.5`: random weights, for tests and demos;
  `qwen2.5-vl-3b/7b`, `qwen3-vl-2b/4b/8b`, `qwen3.5-0.8b/2b/4b/9b`: the shape only, built on the meta
  device, for `--dry-run`);
- a plain Qwen2.5-VL, Qwen3-VL or Qwen3.5 folder or Hub id (e.g. `Qwen/Qwen2.5-VL-7B-Instruct`,
  `Qwen/Qwen3-VL-2B-Instruct`, or a stage-1 output);
- a Deep-VRM folder of any backbone (ours, or the official release's layout);
- an adapter folder written by `deepvrm train --save-adapter-only` (its base is rebuilt and the
  adapter merged).

Stage 1 trains the stock base (`Qwen2_5_VLForConditionalGeneration`, `Qwen3VLForConditionalGeneration`
or `Qwen3_5ForConditionalGeneration`; a Deep-VRM folder gives up its low-level tower). Stage 2 trains Deep-VRM built from it: `from_base_model` copies `visual` into
`visual_low_level`; a Deep-VRM folder is used as it is.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from deepvrm import DeepVRMConfig
from deepvrm.configuration import preset_config, preset_names
from deepvrm.inference.devices import torch_dtype
from deepvrm.inference.errors import ModelLoadError
from deepvrm.inference.sources import resolve_model

logger = logging.getLogger(__name__)

TRAINING_INFO = "deepvrm_training.json"  # what an adapter-only folder needs to be rebuilt
# Deep-VRM fields a stock Qwen2.5-VL config keeps as extra attributes, so that stage 2 finds them
# (pixel budget, prompt and answer ids); the others (injection layer, fusion, ...) describe the
# architecture and are dropped.
_CARRIED = ("min_pixels", "max_pixels", "prompt", "system_prompt", "answer_token_ids", "prompt_prefix_ids", "prompt_suffix_ids")


def is_preset(name: str) -> bool:
    return name in preset_names() and not Path(name).exists()


def stock_class(config):
    """The backbone's own transformers class (`*ForConditionalGeneration`) of a config."""
    from deepvrm import deepvrm_class
    from deepvrm.configuration_deepvrm import backbone_of

    return deepvrm_class(backbone_of(config.model_type), "stock")


def stock_config(config: DeepVRMConfig):
    """The plain config of the backbone of a Deep-VRM config (the stage-1 model's)."""
    config_class = stock_class(config).config_class
    stock_fields = set(config_class().to_dict())
    drop = {"auto_map", "model_type", "architectures"} | (set(type(config)().to_dict()) - stock_fields - set(_CARRIED))
    return config_class(**{k: v for k, v in config.to_dict().items() if k not in drop})


def model_kind(path: str) -> str:
    """"preset", "adapter", "deepvrm" (ours of any backbone, or the official release's layout) or the
    base's backbone, "qwen2_5_vl", "qwen3_vl" or "qwen3_5" (a plain base), told apart by
    `deepvrm.inference.sources.resolve_model`; `ValueError` saying why for anything else (a missing
    folder, a folder that is no model, another model type)."""
    if is_preset(path):
        return "preset"
    try:
        source = resolve_model(path, adapters=True)
    except ModelLoadError as error:
        if not Path(path).expanduser().exists():
            raise ModelLoadError(f"{error}; nor a preset ({', '.join(preset_names())})") from None
        raise
    if source.kind == "adapter":
        return "adapter"
    # The official layout (a qwen2_5_vl config with visual_low_level.* weights) is a Deep-VRM:
    # stage 2 keeps its trained low-level tower, stage 1 takes its base.
    return "deepvrm" if source.is_deepvrm else source.kind


def load_stage1_model(path: str, dtype="auto", meta: bool = False, attn_implementation: str | None = None):
    """The stock model of the backbone that stage 1 trains."""
    from transformers import AutoConfig

    kind = model_kind(path)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if kind == "preset":
        config = stock_config(preset_config(path))
        return _preset_model(stock_class(config), config, path, dtype, meta, attn_implementation)
    if kind == "adapter":
        return load_adapter_folder(path, dtype=dtype)
    if kind == "deepvrm":
        # Its base: everything but the low-level tower (and the gate of gated fusion).
        from transformers.utils import logging as hf_logging

        config = stock_config(DeepVRMConfig.from_pretrained(path))
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # its visual_low_level.* weights are unused here, as intended
        try:
            model, info = stock_class(config).from_pretrained(
                path, config=config, dtype=torch_dtype(dtype), output_loading_info=True, **kwargs
            )
        finally:
            hf_logging.set_verbosity(verbosity)
        if info["missing_keys"]:
            from deepvrm import MissingWeightsError

            raise MissingWeightsError(f"{path} is missing weights of the base model: {sorted(info['missing_keys'])[:8]}")
        return model
    return stock_class(AutoConfig.from_pretrained(path)).from_pretrained(path, dtype=torch_dtype(dtype), **kwargs)


def load_stage2_model(
    path: str,
    objective: str = "lm",
    injection_layer: int | None = None,
    fusion: str | None = None,
    dtype="auto",
    meta: bool = False,
    attn_implementation: str | None = None,
):
    """The Deep-VRM model stage 2 trains (the backbone's `*ForConditionalGeneration`, or
    `*ForImageClassification` for the classification objective)."""
    from deepvrm import DeepVRMForConditionalGeneration, DeepVRMForImageClassification, deepvrm_class, is_deepvrm_model

    cls = DeepVRMForImageClassification if objective == "classification" else DeepVRMForConditionalGeneration
    overrides = {k: v for k, v in {"injection_layer": injection_layer, "fusion": fusion}.items() if v is not None}
    kind = model_kind(path)
    if kind == "preset":
        config = preset_config(path, **overrides)
        role = "classification" if objective == "classification" else "generation"
        return _preset_model(deepvrm_class(config.backbone, role), config, path, dtype, meta, attn_implementation)
    if kind == "deepvrm":
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        if overrides:
            kwargs["config"] = DeepVRMConfig.from_pretrained(path, **overrides)
        model = cls.from_pretrained(path, dtype=torch_dtype(dtype), **kwargs)
        if model.model.shares_vision_tower:
            model.model.to_separate_tower()  # exact; the recipe's LoRA targets the separate tower
        return model
    # A plain base (stage 1's output, a Hub base or a stage-1 adapter): build Deep-VRM from it.
    base = load_adapter_folder(path, dtype=dtype) if kind == "adapter" else load_stage1_model(
        path, dtype=dtype, attn_implementation=attn_implementation
    )
    if not is_deepvrm_model(base):
        model = cls.from_base_model(base, injection_layer=injection_layer, fusion=fusion or "mean")
        if not model.config.has_prompt_ids and kind != "adapter":
            _fill_prompt_ids(model.config, path)
        return model
    return base


def _fill_prompt_ids(config, path):
    try:
        processor = load_processor(path, config)
        processor.configure_model(config)
    except Exception as error:  # noqa: BLE001
        logger.warning("No prompt ids for %s: %s", path, error)


def _preset_model(cls, config, name: str, dtype, meta: bool, attn_implementation: str | None):
    """A preset's model (either stage's class) with random weights, or its shape on the meta device."""
    if attn_implementation:
        config._attn_implementation = attn_implementation
    if meta:
        with torch.device("meta"):
            return cls(config)
    _refuse_random_large(name)
    return cls(config).to(_float_dtype(dtype))


def _float_dtype(dtype):
    dtype = torch_dtype(dtype)
    return torch.float32 if dtype == "auto" else dtype


PRESET_CHECKPOINTS = {
    "qwen2.5-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct", "qwen2.5-vl-7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "qwen3-vl-2b": "Qwen/Qwen3-VL-2B-Instruct", "qwen3-vl-4b": "Qwen/Qwen3-VL-4B-Instruct",
    "qwen3-vl-8b": "Qwen/Qwen3-VL-8B-Instruct", "qwen3.5-0.8b": "Qwen/Qwen3.5-0.8B", "qwen3.5-2b": "Qwen/Qwen3.5-2B",
    "qwen3.5-4b": "Qwen/Qwen3.5-4B", "qwen3.5-9b": "Qwen/Qwen3.5-9B",
}  # fmt: skip


def _refuse_random_large(name: str):
    if name.startswith("qwen"):
        raise ValueError(
            f"The {name} preset is a shape without weights: train from its checkpoint instead "
            f"(e.g. --model {PRESET_CHECKPOINTS.get(name, 'Qwen/Qwen2.5-VL-7B-Instruct')}), or use --dry-run."
        )


def load_processor(path: str, config=None):
    """The processor for a model: its folder's DeepVRM processor when it has one, else Deep-VRM's
    processor (the config's fixed pixel budget) around the folder's tokenizer."""
    from deepvrm import DeepVRMProcessor
    from deepvrm.configuration.init_model import build_processor

    if is_preset(path):
        return build_processor(preset_config(path))
    local = Path(path).expanduser()
    processor_config = local / "processor_config.json"
    if processor_config.exists() and json.loads(processor_config.read_text()).get("processor_class") == "DeepVRMProcessor":
        return DeepVRMProcessor.from_pretrained(path)
    if (local / TRAINING_INFO).exists():
        base = json.loads((local / TRAINING_INFO).read_text())["base_model"]
        return load_processor(base, config)
    from transformers import AutoTokenizer

    if config is None:
        config = DeepVRMConfig.from_pretrained(path)
    elif not hasattr(config, "injection_layer"):
        from deepvrm.configuration_deepvrm import CONFIG_CLASSES, backbone_of

        config = CONFIG_CLASSES[backbone_of(config.model_type)].from_base_config(config)
    return build_processor(config, tokenizer=AutoTokenizer.from_pretrained(path))


def load_adapter_folder(path: str, dtype="auto"):
    """The merged model of a `--save-adapter-only` folder (its base rebuilt as in training)."""
    from peft import PeftModel

    info_file = Path(path) / TRAINING_INFO
    if not info_file.exists():
        raise ValueError(f"{path}: an adapter folder without {TRAINING_INFO}; was it written by `deepvrm train`?")
    info = json.loads(info_file.read_text())
    if is_preset(info["base_model"]):
        from transformers import set_seed

        set_seed(info.get("seed", 42))  # a preset's random weights, as training drew them
    if info["stage"] == 1:
        base = load_stage1_model(info["base_model"], dtype=dtype)
    else:
        base = load_stage2_model(
            info["base_model"],
            objective=info.get("objective", "lm"),
            injection_layer=info.get("injection_layer"),
            fusion=info.get("fusion"),
            dtype=dtype,
        )
    return PeftModel.from_pretrained(base, path).merge_and_unload()


def write_training_info(output_dir: str | os.PathLike, **info) -> None:
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    Path(output_dir, TRAINING_INFO).write_text(json.dumps(info, indent=2, default=str) + "\n")


__all__ = [
    "is_preset",
    "model_kind",
    "stock_config",
    "load_stage1_model",
    "load_stage2_model",
    "load_processor",
    "load_adapter_folder",
]
