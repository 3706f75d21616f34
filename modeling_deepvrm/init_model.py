"""`deepvrm init`: a complete, randomly initialised model folder from a preset (no download)."""

from __future__ import annotations

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
