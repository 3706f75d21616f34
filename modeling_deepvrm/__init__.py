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
`trust_remote_code`. The one exception is the `deepvrm` command itself (its console script, or `python
-m deepvrm.cli`): there the classes and the registration wait until first
used, since the config classes import torch (about 2 s, more on a cold disk) and `deepvrm --help`
and argument errors should answer at once. `register_auto_classes()` registers explicitly; it is
idempotent.
"""

import importlib
import os
import sys

__version__ = "0.1.0"

# Public name -> the model file defining it (imported on first use in the command, at once otherwise).
_EXPORTS = {
    "DeepVRMConfig": "configuration_deepvrm",
    "DeepVRMQwen3VLConfig": "configuration_deepvrm",
    "DeepVRMQwen3_5Config": "configuration_deepvrm",
    "DeepVRMModel": "modeling_deepvrm",
    "DeepVRMPreTrainedModel": "modeling_deepvrm",
    "DeepVRMForConditionalGeneration": "modeling_deepvrm",
    "DeepVRMForImageClassification": "modeling_deepvrm",
    "MissingWeightsError": "modeling_deepvrm",
    "deepvrm_class": "modeling_deepvrm",
    "is_deepvrm_model": "modeling_deepvrm",
    "DeepVRMQwen3VLModel": "modeling_deepvrm_qwen3_vl",
    "DeepVRMQwen3VLForConditionalGeneration": "modeling_deepvrm_qwen3_vl",
    "DeepVRMQwen3VLForImageClassification": "modeling_deepvrm_qwen3_vl",
    "DeepVRMQwen3_5Model": "modeling_deepvrm_qwen3_5",
    "DeepVRMQwen3_5ForConditionalGeneration": "modeling_deepvrm_qwen3_5",
    "DeepVRMQwen3_5ForImageClassification": "modeling_deepvrm_qwen3_5",
    "DeepVRMImageProcessor": "processing_deepvrm",
    "DeepVRMProcessor": "processing_deepvrm",
}

__all__ = [*_EXPORTS, "register_auto_classes"]

_registered = False


def register_auto_classes() -> None:
    """Route `AutoConfig`, `AutoModel`, `AutoModelForImageClassification`,
    `AutoModelForImageTextToText`, `AutoImageProcessor` and `AutoProcessor` to each backbone's
    Deep-VRM classes (by the `model_type` of its config). Done once; later calls return at once."""
    global _registered
    if _registered:
        return
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForImageClassification,
        AutoModelForImageTextToText,
        AutoProcessor,
    )

    from .configuration_deepvrm import CONFIG_CLASSES
    from .modeling_deepvrm import deepvrm_class
    from .processing_deepvrm import DeepVRMImageProcessor, DeepVRMProcessor

    for backbone, config_class in CONFIG_CLASSES.items():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, deepvrm_class(backbone, "model"), exist_ok=True)
        AutoModelForImageClassification.register(config_class, deepvrm_class(backbone, "classification"), exist_ok=True)
        AutoModelForImageTextToText.register(config_class, deepvrm_class(backbone, "generation"), exist_ok=True)
        AutoImageProcessor.register(config_class, image_processor_classes={"pil": DeepVRMImageProcessor}, exist_ok=True)
        AutoProcessor.register(config_class, DeepVRMProcessor, exist_ok=True)
    _registered = True


def _load(name: str):
    register_auto_classes()  # whoever reaches for a class may next reach for an Auto class
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __getattr__(name: str):
    if name in _EXPORTS:
        return _load(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})


def _started_as_command() -> bool:
    """Whether this process is the `deepvrm` command: its console script (`deepvrm`, also under
    `accelerate launch`) or `python -m deepvrm.cli` (how launchers start it)."""
    argv = getattr(sys, "orig_argv", sys.argv)  # orig_argv keeps "-m NAME", which sys.argv has lost here
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-X", "-W", "--check-hash-based-pycs"):  # interpreter options that take a value
            next(args, None)
        elif arg == "-m":
            return next(args, None) == "deepvrm.cli"
        elif arg == "-c" or not arg.startswith("-"):  # code or the script: the interpreter's options end
            return arg != "-c" and os.path.basename(arg) in ("deepvrm", "deepvrm.exe", "deepvrm-script.py")
    return False

if not _started_as_command():
    for _name in _EXPORTS:
        _load(_name)
    del _name
