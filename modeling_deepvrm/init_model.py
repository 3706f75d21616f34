"""`deepvrm init`: a complete, randomly initialised model folder from a preset (no download)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .configuration import DeepVRMConfig
from .modeling import DeepVRMForConditionalGeneration
from .processing import DeepVRMImageProcessor, DeepVRMProcessor


def build_processor(config: DeepVRMConfig, tokenizer=None) -> DeepVRMProcessor:
    """The processor matching a config; the presets with an offline tokenizer need none given."""
    if tokenizer is None:
        from .tokenization import build_tiny_tokenizer

        if config.text_config.vocab_size > 4096:
            raise ValueError("This config needs its own tokenizer (e.g. Qwen2.5-VL's); pass `tokenizer=`.")
        tokenizer = build_tiny_tokenizer()
    return DeepVRMProcessor(
        image_processor=DeepVRMImageProcessor.from_config(config),
        tokenizer=tokenizer,
        prompt=config.prompt,
        system_prompt=config.system_prompt,
    )


def init_model_folder(
    preset: str, output_dir: str | Path, seed: int = 0, dtype: str = "float32", **config_overrides
) -> Path:
    """Write config, safetensors weights, image processor, tokenizer and processor to `output_dir`."""
    output_dir = Path(output_dir)
    config = DeepVRMConfig.from_preset(preset, **config_overrides)
    torch.manual_seed(seed)
    model = DeepVRMForConditionalGeneration(config).to(getattr(torch, dtype))
    processor = build_processor(config)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> int:
    from .configuration.presets import preset_names

    parser = argparse.ArgumentParser(prog="deepvrm init", description=__doc__)
    parser.add_argument("--preset", required=True, choices=preset_names())
    parser.add_argument("--output", required=True, help="folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--injection-layer", type=int, default=None)
    parser.add_argument("--fusion", choices=["mean", "add", "gated"], default=None)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in {"injection_layer": args.injection_layer, "fusion": args.fusion}.items() if v is not None}
    if args.preset.startswith("qwen"):
        parser.error(f"{args.preset} needs Qwen2.5-VL's tokenizer and ~{'35' if '7b' in args.preset else '17'} GB; "
                     "build it from a real checkpoint with DeepVRMForConditionalGeneration.from_base_model(...) instead.")
    path = init_model_folder(args.preset, args.output, seed=args.seed, dtype=args.dtype, **overrides)
    print(f"Wrote a random {args.preset} Deep-VRM model to {path}")
    return 0
