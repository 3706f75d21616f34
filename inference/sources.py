"""What a `--model` argument names: a folder here or a Hub id, and which kind of checkpoint it holds.
One resolver for every tool that loads a model (detect, evaluate, probe, attribute, train, convert).

    is_hub_id("Kaiqing/Deep-VRM-Qwen-25-VL-7B")  -> True: the form of a Hub id, and no such path here
    resolve_model(name)                           -> ModelSource(name, local, kind), or ModelLoadError
    default_model()                               -> the shipped demo model's folder, announced on stderr

Kinds (`ModelSource.kind`):

    "deepvrm"      a deepvrm folder or repo of any backbone (config `model_type: deepvrm`,
                   `deepvrm_qwen3_vl` or `deepvrm_qwen3_5`)
    "official"     the official release's layout: `model_type: qwen2_5_vl` plus `visual_low_level.*`
                   weights (e.g. Kaiqing/Deep-VRM-Qwen-25-VL-7B); our classes load it as Deep-VRM
                   (a stock Qwen3-VL / Qwen3.5 config beside low-level weights reads the same way)
    "qwen2_5_vl"   a plain Qwen2.5-VL (no low-level tower): a base to build Deep-VRM from
    "qwen3_vl"     a plain Qwen3-VL, likewise
    "qwen3_5"      a plain Qwen3.5, likewise
    "adapter"      a PEFT adapter folder (`adapter_config.json`, no `config.json`), as
                   `deepvrm train --save-adapter-only` writes; only where `adapters=True`

`ModelSource.backbone` names the backbone of the first five (`qwen2_5_vl`, `qwen3_vl`, `qwen3_5`).
A plain checkpoint whose weight names cannot be listed (no safetensors index or header to read)
keeps its base kind with `weights_listed=False`: whether it is official is known only on loading.

A name that is not a path on this machine is tried on the Hub only when it has a Hub id's form
(`owner/name`); `--model tiny2` (a mistyped folder) is reported as a missing folder, not as a
network failure, and a missing `owner/name` folder's Hub error says it was tried as a Hub id.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from deepvrm.inference.errors import ModelLoadError

OFFICIAL_MODEL = "Kaiqing/Deep-VRM-Qwen-25-VL-7B"
# The demo model lives in the repository (examples/demo-model, beside the package folders); an
# editable install (`pip install -e .`, `make install`) finds it there, a wheel does not carry it.
DEFAULT_MODEL = str(Path(__file__).resolve().parent.parent / "examples" / "demo-model")
LOW_LEVEL_PREFIX = "visual_low_level."  # the official layout's low-level tower (our Qwen2.5-VL folders save it so too)
BASE_KINDS = ("qwen2_5_vl", "qwen3_vl", "qwen3_5")  # plain checkpoints of the supported backbones
KINDS = ("deepvrm", "official", *BASE_KINDS, "adapter")
DEEPVRM_MODEL_TYPES = {"deepvrm": "qwen2_5_vl", "deepvrm_qwen3_vl": "qwen3_vl", "deepvrm_qwen3_5": "qwen3_5"}


@dataclass(frozen=True)
class ModelSource:
    """A resolved model argument: `name` (a folder, `~` expanded, or a Hub id), `local` (a folder
    here), `kind` (see the module docstring), whether its weight names could be read, and its backbone."""

    name: str
    local: bool
    kind: str
    weights_listed: bool = True
    backbone: str | None = None

    @property
    def is_deepvrm(self) -> bool | None:
        """True for Deep-VRM checkpoints (ours and the official layout), False for plain bases and
        adapters, None when only loading can tell (a qwen2_5_vl whose weights could not be listed)."""
        if self.kind in BASE_KINDS and not self.weights_listed:
            return None
        return self.kind in ("deepvrm", "official")


def is_hub_id(name) -> bool:
    """`name` has the form of a Hub repo id (`owner/name`, by huggingface_hub's own validation) and
    is not a path on this machine. A bare `name` is not taken for one: every checkpoint this package
    loads lives under an owner, and a bare word is far more often a mistyped folder."""
    if not isinstance(name, str) or name.count("/") != 1 or os.path.lexists(os.path.expanduser(name)):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def missing_folder_message(name: str) -> str:
    """Why `name` names nothing: no such folder, and (for a name without a path's marks) what a Hub id looks like."""
    message = f"no such model folder: {name}"
    if not name.startswith((".", "/", "~")) and not os.path.isabs(name) and "\\" not in name:
        message += f" (a name of the form owner/name, such as {OFFICIAL_MODEL}, that is no folder here would be tried as a Hub id)"
    return message


def resolve_model(name: str | os.PathLike, adapters: bool = False) -> ModelSource:
    """The `ModelSource` that `name` (a folder or a Hub id) names; `ModelLoadError` saying why when
    it names none, or a kind no tool loads (see the module docstring)."""
    name = os.path.expanduser(os.fspath(name))
    local = os.path.exists(name)
    if not local and not is_hub_id(name):
        raise ModelLoadError(missing_folder_message(name))
    if local:
        if not os.path.isdir(name):
            raise ModelLoadError(f"{name} is a file; a model is a folder (config.json and weights) or a Hub id.")
        has_config = os.path.isfile(os.path.join(name, "config.json"))
        if not has_config and os.path.isfile(os.path.join(name, "adapter_config.json")):
            if adapters:
                return ModelSource(name, True, "adapter")
            raise ModelLoadError(
                f"{name} holds a LoRA adapter (adapter_config.json) and no config.json, not a complete model: "
                "load it with its base (`deepvrm train` without --save-adapter-only writes a complete folder)."
            )
        if not has_config:
            raise ModelLoadError(f"{name} is a folder but holds no config.json: not a model folder.")
    config_dict = _config_dict(name, local)
    model_type = config_dict.get("model_type")
    if model_type in DEEPVRM_MODEL_TYPES:
        return ModelSource(name, local, "deepvrm", backbone=DEEPVRM_MODEL_TYPES[model_type])
    if model_type not in BASE_KINDS:
        raise ModelLoadError(f"{name}: model_type {model_type!r}; expected a Deep-VRM checkpoint or a plain "
                             "Qwen2.5-VL, Qwen3-VL or Qwen3.5 one.")  # fmt: skip
    names = weight_names(name, local)
    if names is None:
        return ModelSource(name, local, model_type, weights_listed=False, backbone=model_type)
    official = any(n.startswith((LOW_LEVEL_PREFIX, "model." + LOW_LEVEL_PREFIX)) for n in names)
    return ModelSource(name, local, "official" if official else model_type, backbone=model_type)


def hub_error(name: str, error: BaseException) -> ModelLoadError:
    """A failure to fetch `name` from the Hub, saying that it was tried there because no folder has that name."""
    text = " ".join(str(error).split())
    return ModelLoadError(f"cannot load the model {name!r}: there is no folder {name} here, so it was tried as a Hub id: {text}")


def _config_dict(name: str, local: bool) -> dict:
    from transformers import PretrainedConfig

    try:
        config_dict, _ = PretrainedConfig.get_config_dict(name)
    except Exception as error:
        if not local:
            raise hub_error(name, error) from error
        raise ModelLoadError(f"cannot read the config of {name}: {' '.join(str(error).split())}") from error
    return config_dict


def weight_names(name: str, local: bool | None = None) -> set[str] | None:
    """Tensor names of a checkpoint (a folder or a Hub id), read from safetensors indexes and headers
    only; None when there are none to read."""
    local = os.path.isdir(name) if local is None else local
    try:
        if local:
            names: set[str] = set()
            indexes = glob.glob(os.path.join(glob.escape(name), "*.safetensors.index.json"))
            if indexes:
                for index in indexes:
                    with open(index, encoding="utf-8") as file:
                        names.update(json.load(file).get("weight_map", {}))
                return names or None
            from safetensors import safe_open

            for path in glob.glob(os.path.join(glob.escape(name), "*.safetensors")):
                with safe_open(path, framework="pt") as file:
                    names.update(file.keys())
            return names or None
        from huggingface_hub import get_safetensors_metadata

        return set(get_safetensors_metadata(name).weight_map) or None
    except Exception:
        return None


# ---------------------------------------------------------------------------------------- the default model
def default_model(announce: bool = True) -> str:
    """The folder of the demo model that `deepvrm detect` and `evaluate` (and `Detector`) use when
    given no model, with a plain notice on stderr of what it is (and is not); `ModelLoadError`
    saying where it is expected and how to get it when this installation lacks it."""
    if not os.path.isfile(os.path.join(DEFAULT_MODEL, "config.json")):
        raise ModelLoadError(
            f"no model given and the demo model is not installed: it is expected in {DEFAULT_MODEL}. It ships "
            "in the deepvrm repository's examples/demo-model, not in a wheel: clone the repository and install it "
            "from there (`pip install -e .`), or pass --model with a deepvrm folder or a Hub id "
            f"(for real detection: --model {OFFICIAL_MODEL})."
        )
    if announce:
        print(demo_model_notice(), file=sys.stderr, flush=True)
    return DEFAULT_MODEL


def demo_model_notice() -> str:
    size = _parameter_count(DEFAULT_MODEL)
    what = f"a {size / 1e6:.1f} M-parameter Deep-VRM" if size else "a small Deep-VRM"
    return (
        f"Note: no model given, so this uses the demo model ({DEFAULT_MODEL}): {what} trained offline on a CPU "
        "to show the package working. It is not a real-world detector: on real photographs and generator outputs "
        f"from sources it never saw it scores at chance. For real detection use the official checkpoint: "
        f"--model {OFFICIAL_MODEL} (from Python, Detector.from_pretrained({OFFICIAL_MODEL!r}); a GPU with about 18 GB)."
    )


def _parameter_count(folder: str) -> int | None:
    """Parameters in a folder's safetensors files, from their headers (nothing is loaded)."""
    try:
        from safetensors import safe_open

        total = 0
        for path in glob.glob(os.path.join(glob.escape(folder), "*.safetensors")):
            with safe_open(path, framework="pt") as file:
                for key in file.keys():
                    count = 1
                    for dim in file.get_slice(key).get_shape():
                        count *= dim
                    total += count
        return total or None
    except Exception:
        return None


__all__ = [
    "DEFAULT_MODEL",
    "BASE_KINDS",
    "KINDS",
    "ModelLoadError",
    "ModelSource",
    "OFFICIAL_MODEL",
    "default_model",
    "demo_model_notice",
    "hub_error",
    "is_hub_id",
    "resolve_model",
    "weight_names",
]
