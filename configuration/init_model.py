"""`deepvrm init`: a complete, randomly initialised model folder from a preset (no download)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from deepvrm.inference.devices import DTYPE_NAMES, torch_dtype

from .presets import preset_config, preset_names

# torch and the model files are imported by the functions that use them: `deepvrm init --help` and
# its argument errors answer without them.
if TYPE_CHECKING:
    import torch

    from deepvrm import DeepVRMConfig, DeepVRMProcessor


def build_processor(config: DeepVRMConfig, tokenizer=None) -> DeepVRMProcessor:
    """The processor matching a config of any backbone (its pixel budget, patch size, normalisation
    and chat template); the presets with an offline tokenizer need none given."""
    from deepvrm.processing_deepvrm import DeepVRMImageProcessor, DeepVRMProcessor, chat_template_for

    backbone = getattr(config, "backbone", "qwen2_5_vl")
    if tokenizer is None:
        from deepvrm.configuration.tokenizer import build_tiny_tokenizer

        if config.text_config.vocab_size > 4096:
            raise ValueError(f"This config needs its own tokenizer (its {backbone} checkpoint's); pass `tokenizer=`.")
        tokenizer = build_tiny_tokenizer(backbone)
    return DeepVRMProcessor(
        image_processor=DeepVRMImageProcessor.from_config(config),
        tokenizer=tokenizer,
        chat_template=chat_template_for(backbone),
        prompt=config.prompt,
        system_prompt=config.system_prompt,
    )


PATCH_EMBEDDINGS = ("random", "dct")


def dct_patch_filters(out_channels: int, in_channels: int, temporal: int, patch: int, seed: int = 0) -> torch.Tensor:
    """Conv3d weights (out, in, temporal, patch, patch) whose filters are 2-D DCT basis functions.

    Why: with white-noise filters, a random patch embedding's responses are dominated by the low
    frequencies that carry most of a natural image's energy, so fine high-frequency traces
    (blur, resampling, upsampling grids) are nearly invisible to a randomly initialised tower and
    barely learnable from a few hundred images. Pretrained vision towers have learned such filters;
    a model trained from scratch can start from them. The frequencies (u, v) are spread evenly over
    the spectrum from DC to the highest, each with a seeded colour direction (luminance or one of the
    two opponent colours, so colour stays visible too); every temporal slice holds the same filter
    (divided by `temporal`). Scaled later to the initializer's standard deviation.
    """
    import torch

    k = torch.arange(patch, dtype=torch.float64)
    basis = torch.cos(math.pi * (k[None, :] + 0.5) * k[:, None] / patch) * math.sqrt(2 / patch)  # (u, x)
    basis[0] /= math.sqrt(2)
    frequencies = sorted(((u, v) for u in range(patch) for v in range(patch)), key=lambda f: (f[0] ** 2 + f[1] ** 2, f))
    picks = [frequencies[round(i * (len(frequencies) - 1) / max(1, out_channels - 1))] for i in range(out_channels)]
    colours = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [1.0, 1.0, -2.0]], dtype=torch.float64)[:, :in_channels]
    colours = colours / colours.norm(dim=1, keepdim=True)
    generator = torch.Generator().manual_seed(seed)
    weight = torch.empty(out_channels, in_channels, temporal, patch, patch, dtype=torch.float64)
    for i, (u, v) in enumerate(picks):
        colour = colours[0] if i % 2 == 0 else colours[1 + int(torch.randint(2, (1,), generator=generator))]
        sign = 1.0 if torch.rand((), generator=generator) < 0.5 else -1.0
        spatial = torch.outer(basis[u], basis[v])
        weight[i] = sign * colour[:, None, None, None] * spatial[None, None] / temporal
    return weight


def init_patch_embedding_(model, kind: str, std: float, seed: int = 0) -> None:
    """Re-initialise every vision tower's patch embedding in place (`kind`: random keeps it)."""
    if kind not in PATCH_EMBEDDINGS:
        raise ValueError(f"patch_embedding must be one of {PATCH_EMBEDDINGS}, got {kind!r}.")
    if kind == "random":
        return
    import torch

    for tower in model.model.vision_towers:
        proj = tower.patch_embed.proj
        weight = dct_patch_filters(*proj.weight.shape[:3], proj.weight.shape[-1], seed=seed)
        weight = weight * (std / weight.std())
        with torch.no_grad():
            proj.weight.copy_(weight.to(proj.weight.dtype))


def init_model_folder(
    preset: str, output_dir: str | Path, seed: int = 0, dtype: str = "float32", patch_embedding: str = "random",
    **config_overrides,
) -> Path:
    """Write config, safetensors weights, image processor, tokenizer and processor to `output_dir`.

    `patch_embedding="dct"` starts the vision towers' patch embeddings from 2-D DCT filters (see
    `dct_patch_filters`) instead of white noise: for models trained from scratch on pixel traces.
    """
    import torch

    from deepvrm.modeling_deepvrm import deepvrm_class

    output_dir = Path(output_dir)
    config = preset_config(preset, **config_overrides)
    torch.manual_seed(seed)
    model = deepvrm_class(config.backbone, "generation")(config)
    init_patch_embedding_(model, patch_embedding, config.vision_config.initializer_range, seed=seed)
    model = model.to(torch_dtype(dtype))
    processor = build_processor(config)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deepvrm init", description=__doc__)
    parser.add_argument("--preset", required=True, choices=preset_names())
    parser.add_argument("--output", required=True, help="folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=DTYPE_NAMES)
    parser.add_argument("--injection-layer", type=int, default=None)
    parser.add_argument("--fusion", choices=["mean", "add", "gated"], default=None)
    parser.add_argument("--patch-embedding", choices=PATCH_EMBEDDINGS, default="random",
                        help="initial patch-embedding filters: random (the preset's initializer) or dct (2-D DCT "
                             "basis over all frequencies; for training from scratch on pixel-level traces)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in {"injection_layer": args.injection_layer, "fusion": args.fusion}.items() if v is not None}
    if args.preset.startswith("qwen"):
        parser.error(f"{args.preset} is the shape of a released checkpoint: it needs that checkpoint's tokenizer and "
                     "weights; build it from the checkpoint with DeepVRMForConditionalGeneration.from_base_model(...) instead.")
    path = init_model_folder(args.preset, args.output, seed=args.seed, dtype=args.dtype,
                             patch_embedding=args.patch_embedding, **overrides)  # fmt: skip
    print(f"Wrote a random {args.preset} Deep-VRM model to {path}")
    return 0
