"""`deepvrm convert SRC DST`: an official-layout Deep-VRM checkpoint (or any folder/Hub id our
classes load) rewritten as a native `deepvrm` folder: config with `model_type: deepvrm`, the
injection settings written out, prompt ids, processor files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepvrm.defaults_deepvrm import FUSIONS
from deepvrm.inference.devices import DTYPE_CHOICES


def convert(src: str, dst: str | Path, injection_layer: int | None = None, fusion: str | None = None,
            dtype: str = "auto") -> Path:
    from transformers import AutoTokenizer

    from deepvrm.configuration.init_model import build_processor
    from deepvrm.inference.sources import resolve_model
    from deepvrm.modeling_deepvrm import DeepVRMForConditionalGeneration

    src = resolve_model(src).name  # a missing folder or a bad Hub id: ModelLoadError saying so
    overrides = {k: v for k, v in {"injection_layer": injection_layer, "fusion": fusion}.items() if v is not None}
    model = DeepVRMForConditionalGeneration.from_pretrained(src, dtype=dtype, **overrides)
    try:
        tokenizer = AutoTokenizer.from_pretrained(src)
    except Exception:  # noqa: BLE001 - a weights-only folder: the tiny presets' tokenizer may fit
        tokenizer = None
    processor = build_processor(model.config, tokenizer)
    if not model.config.has_prompt_ids:
        processor.configure_model(model)
    dst = Path(dst)
    model.save_pretrained(dst)
    processor.save_pretrained(dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deepvrm convert", description=__doc__)
    parser.add_argument("src", help="official-layout folder or Hub id (e.g. Kaiqing/Deep-VRM-Qwen-25-VL-7B)")
    parser.add_argument("dst", help="folder to write")
    parser.add_argument("--injection-layer", type=int, default=None, help="default: 16, as the official code")
    parser.add_argument("--fusion", choices=FUSIONS, default=None, help="default: mean, as the official code")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES)
    args = parser.parse_args(argv)
    try:
        path = convert(args.src, args.dst, args.injection_layer, args.fusion, args.dtype)
    except (OSError, ValueError) as error:
        print(f"deepvrm convert: {error}", file=sys.stderr)
        return 2
    print(f"Wrote a native deepvrm model to {path}")
    return 0
