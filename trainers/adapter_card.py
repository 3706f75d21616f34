"""The README.md of a `deepvrm train --save-adapter-only` folder: what the adapter is and how to load it.

PEFT's own `save_pretrained` leaves its empty model-card template there; this replaces it with a
card whose code runs as written: the base model is named by what resolves from any working
directory (an absolute folder path or a Hub id, as `adapter_config.json` records it), and the base
is rebuilt the way training built it (a Deep-VRM checkpoint loaded with the run's injection layer
and fusion; a Qwen2.5-VL model turned into Deep-VRM with `from_base_model`).

Publishing an adapter (`deepvrm push --adapter-only`) writes a Hub card of its own (hub_upload/).
"""

from __future__ import annotations

import os
from pathlib import Path

from deepvrm.inference.sources import BASE_KINDS, is_hub_id

# The stock class and the name of each backbone a plain base is (`trainers.models.model_kind`).
STOCK = {"qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2.5-VL"),
         "qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3-VL"),
         "qwen3_5": ("Qwen3_5ForConditionalGeneration", "Qwen3.5")}  # fmt: skip


def _peft_snippet(info: dict, base_kind: str, adapter: str) -> str | None:
    """Python building the base and applying the adapter with PEFT, or None where only deepvrm can
    rebuild the base (a preset's random weights, an adapter on an adapter)."""
    base = info["base_model"]
    if info["stage"] == 1:
        if base_kind not in BASE_KINDS:
            return None
        stock = STOCK[base_kind][0]
        imports = f"from transformers import {stock}"
        build = f"base = {stock}.from_pretrained({base!r})"
    else:
        cls = "DeepVRMForImageClassification" if info.get("objective") == "classification" else "DeepVRMForConditionalGeneration"
        imports = f"from deepvrm import {cls}"
        arguments = f"{base!r}, injection_layer={info.get('injection_layer')!r}, fusion={info.get('fusion')!r}"
        if base_kind == "deepvrm":
            build = f"base = {cls}.from_pretrained({arguments})"
        elif base_kind in BASE_KINDS:
            build = f"base = {cls}.from_base_model({arguments})  # visual_low_level starts as a copy of visual"
        else:
            return None
    return (
        "from peft import PeftModel\n"
        f"{imports}\n\n"
        f"{build}\n"
        f"model = PeftModel.from_pretrained(base, {adapter!r}).merge_and_unload()\n"
    )


def render_adapter_card(folder: str | os.PathLike, info: dict, base_kind: str) -> str:
    """The card of the adapter in `folder`. `info`: the run's `deepvrm_training.json` record;
    `base_kind`: "preset", "adapter", "deepvrm" or a plain base's backbone ("qwen2_5_vl", "qwen3_vl",
    "qwen3_5"; `trainers.models.model_kind`)."""
    adapter = str(Path(folder).expanduser().resolve())
    base = info["base_model"]
    recipe = info.get("recipe") or {}
    stage = info["stage"]
    metadata = ["library_name: peft"]
    if is_hub_id(base):
        metadata.append(f"base_model: {base}")
    metadata.append("tags:\n- deepvrm\n- lora\n- ai-generated-image-detection")

    what = {
        "preset": f"the `{base}` preset (random weights, drawn again from the run's seed {info.get('seed')})",
        "adapter": f"the model of the adapter folder `{base}` (rebuilt and merged first)",
        "deepvrm": f"the Deep-VRM checkpoint `{base}`",
        **{kind: f"the {name} model `{base}`" + (", turned into Deep-VRM (`visual_low_level` a copy of `visual`)" if stage == 2 else "")
           for kind, (_, name) in STOCK.items()},
    }[base_kind]
    lines = [
        "---", *metadata, "---", "",
        f"# Deep-VRM stage-{stage} LoRA adapter", "",
        f"A LoRA adapter written by `deepvrm train --save-adapter-only`, for {what}.", "",
    ]
    details = [f"- objective: `{info.get('objective', 'lm')}`"]
    if stage == 2:
        details.append(f"- injection layer {info.get('injection_layer')}, fusion `{info.get('fusion')}`"
                       + (" (the per-channel gate is trained in full and saved with the adapter)" if info.get("fusion") == "gated" else ""))
    if recipe:
        details.append(f"- LoRA r={recipe.get('lora_r')}, alpha={recipe.get('lora_alpha')} on {', '.join(recipe.get('lora_targets', []))}")
    lines += [*details, "", "## Loading it", "",
              "With deepvrm, which rebuilds the base as training did (from `deepvrm_training.json`) and merges the adapter:", "",
              "```python", "from deepvrm.trainers.models import load_adapter_folder", "",
              f"model = load_adapter_folder({adapter!r})", "```", ""]
    peft = _peft_snippet(info, base_kind, adapter)
    if peft is not None:
        lines += ["With PEFT, building the base yourself:", "", "```python", peft.rstrip("\n"), "```", ""]
    lines += [
        f"The processor is saved here too: `DeepVRMProcessor.from_pretrained({adapter!r})` (`from deepvrm import DeepVRMProcessor`).",
        "A complete model folder (for `from_pretrained`, `pipeline(\"image-classification\")`, `deepvrm detect`): "
        "`model.save_pretrained(out)` and `processor.save_pretrained(out)`. "
        f"To train on from it: `deepvrm train --model {adapter} ...`.",
        "",
    ]
    return "\n".join(lines)


__all__ = ["render_adapter_card"]
