"""What `deepvrm probe` and `deepvrm attribute` share: loading a model (Deep-VRM of any backbone, or
a plain Qwen2.5-VL, Qwen3-VL or Qwen3.5, told apart by `deepvrm.inference.sources.resolve_model`)
behind one small interface,
reading the datasets, opening images with per-file errors, and writing JSON and plots. Their
options, tables and batch retries are the other commands' (`deepvrm.cli.options`,
`deepvrm.cli.tables`, `deepvrm.inference.batches`).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepvrm.configuration_deepvrm import DEFAULT_LABELS, DEFAULT_PIXELS, DEFAULT_PROMPT
from deepvrm.modeling_deepvrm import detection_prompt_inputs, mm_token_type_ids_from_input_ids
from deepvrm.cli.options import UsageError, check_model_arguments
from deepvrm.inference.devices import resolve_device, resolve_dtype
from deepvrm.inference.errors import ModelLoadError, one_line
from deepvrm.inference.sources import resolve_model


# ----------------------------------------------------------------------------------------- models
@dataclass
class AnalysisModel:
    """A loaded backbone and what the analyses need to drive it.

    `model` is a Deep-VRM model of any backbone (kind "deepvrm") or a stock backbone model (kind
    "qwen2_5_vl", "qwen3_vl" or "qwen3_5"); all are run on the paper's chat prompt (in the backbone's
    chat template), left-padded so that the last prompt token is at -1.
    """

    model: torch.nn.Module
    kind: str
    config: object  # top-level config (image_token_id, text_config, ...)
    image_processor: object
    prefix_ids: list[int]
    suffix_ids: list[int]
    pad_id: int
    answer_rows: torch.Tensor | None  # [2, hidden]: LM-head rows of the real and fake answers
    source: str

    @property
    def num_layers(self) -> int:
        return self.config.text_config.num_hidden_layers

    @property
    def injection_layer(self) -> int | None:
        return self.config.injection_layer if self.kind == "deepvrm" else None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def image_token_id(self) -> int:
        return self.config.image_token_id

    def prompt_inputs(self, image_grid_thw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Left-padded prompt ids (one image each) and the attention mask (None without padding),
        built as `DeepVRMForImageClassification` builds them (also for plain Qwen2.5-VL models)."""
        input_ids, attention_mask = detection_prompt_inputs(
            self.prefix_ids, self.suffix_ids, self.image_token_id, self.pad_id,
            image_grid_thw, self.config.vision_config.spatial_merge_size,
        )
        return input_ids.to(self.device), None if attention_mask is None else attention_mask.to(self.device)

    def forward(self, image_grid_thw, pixel_values=None, **kwargs):
        """One prefill pass over the detection prompt; returns the model output and the input ids."""
        image_grid_thw = image_grid_thw.to(self.device)
        input_ids, attention_mask = self.prompt_inputs(image_grid_thw)
        if pixel_values is not None:
            pixel_values = pixel_values.to(self.device, self.dtype)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            image_grid_thw=image_grid_thw,
            # stock Qwen2.5-VL computes its 3-D (M-RoPE) positions only when given these
            mm_token_type_ids=mm_token_type_ids_from_input_ids(input_ids, self.config),
            use_cache=False,
            **kwargs,
        )
        return outputs, input_ids

    def fake_logodds(self, last_states: torch.Tensor) -> torch.Tensor:
        """logit(fake) - logit(real) from final (normed) hidden states at the answer position."""
        if self.answer_rows is None:
            raise ValueError(f"{self.source}: no answer token ids, so the model's real/fake logits are unknown.")
        logits = last_states.float() @ self.answer_rows.float().T
        return logits[:, 1] - logits[:, 0]


def load_analysis_model(
    model_id: str,
    device: torch.device,
    dtype: torch.dtype,
    require_deepvrm: bool = False,
    pixels: int | None = None,
) -> AnalysisModel:
    """A Deep-VRM (our folders, official-layout folders, Hub ids) or a plain checkpoint of a backbone.

    `pixels` overrides the image budget (default: the Deep-VRM config's, or the paper's 512x512).
    """
    from deepvrm.modeling_deepvrm import MissingWeightsError
    from deepvrm.modeling_deepvrm import DeepVRMForImageClassification
    from deepvrm.processing_deepvrm import DeepVRMImageProcessor

    from deepvrm.inference.sources import BASE_KINDS

    BACKBONE_NAMES = {"qwen2_5_vl": "Qwen2.5-VL", "qwen3_vl": "Qwen3-VL", "qwen3_5": "Qwen3.5"}

    source = resolve_model(model_id)  # what the name is: a folder or a Hub id, Deep-VRM or a plain base
    model_id = source.name
    base_kind = source.backbone or "qwen2_5_vl"
    kind = base_kind if source.is_deepvrm is False else "deepvrm"
    if kind == "deepvrm":
        try:
            classifier = DeepVRMForImageClassification.from_pretrained(model_id, dtype=dtype)
        except MissingWeightsError as error:
            if source.is_deepvrm or require_deepvrm:
                raise ModelLoadError(str(error)) from error
            kind = base_kind  # its weights could not be listed beforehand: no low-level tower after all
        except Exception as error:
            raise ModelLoadError(f"cannot load {model_id!r}: {one_line(error)}") from error
    if kind in BASE_KINDS and require_deepvrm:
        raise ModelLoadError(
            f"{model_id} is a plain {BACKBONE_NAMES[kind]} checkpoint (no low-level encoder `visual_low_level.*`): "
            "attribution needs a Deep-VRM model."
        )
    if kind == "deepvrm":
        config = classifier.config
        if not config.has_prompt_ids:
            raise ModelLoadError(f"{model_id}: the model has no prompt token ids and no usable tokenizer.")
        model = classifier.model
        rows = classifier.lm_head.weight[list(config.answer_token_ids)].detach()
        prefix, suffix = list(config.prompt_prefix_ids), list(config.prompt_suffix_ids)
        budget = pixels or config.max_pixels
        del classifier
    else:
        from transformers import AutoTokenizer

        from deepvrm.configuration_deepvrm import CONFIG_CLASSES
        from deepvrm.modeling_deepvrm import deepvrm_class
        from deepvrm.processing_deepvrm import chat_template_for, prompt_ids_from_tokenizer

        try:
            full = deepvrm_class(kind, "stock").from_pretrained(model_id, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(model_id)
        except Exception as error:
            raise ModelLoadError(f"cannot load {model_id!r}: {one_line(error)}") from error
        config = full.config
        # The detection prompt as the backbone's Deep-VRM would ask it (Qwen3's: no default system turn).
        system_prompt, template = CONFIG_CLASSES[kind].system_prompt, chat_template_for(kind)
        ids = prompt_ids_from_tokenizer(tokenizer, DEFAULT_PROMPT, system_prompt, (), chat_template=template)
        prefix, suffix = ids["prompt_prefix_ids"], ids["prompt_suffix_ids"]
        try:
            answers = prompt_ids_from_tokenizer(tokenizer, DEFAULT_PROMPT, system_prompt, DEFAULT_LABELS, chat_template=template)
            rows = full.lm_head.weight[answers["answer_token_ids"]].detach()
        except ValueError:
            rows = None
        model = full.model
        budget = pixels or DEFAULT_PIXELS
        del full
    from deepvrm.processing_deepvrm import IMAGE_NORMALISATION

    vision = config.vision_config
    mean, std = IMAGE_NORMALISATION[base_kind]
    image_processor = DeepVRMImageProcessor(
        size={"shortest_edge": budget, "longest_edge": budget},
        patch_size=vision.patch_size,
        temporal_patch_size=vision.temporal_patch_size,
        merge_size=vision.spatial_merge_size,
        image_mean=list(mean),
        image_std=list(std),
    )
    pad_id = getattr(config.text_config, "pad_token_id", None)
    pad_id = pad_id if pad_id is not None else (getattr(config.text_config, "eos_token_id", None) or 0)
    if isinstance(pad_id, (list, tuple)):
        pad_id = pad_id[0]
    model.to(device).eval()
    return AnalysisModel(
        model=model,
        kind=kind,
        config=config,
        image_processor=image_processor,
        prefix_ids=prefix,
        suffix_ids=suffix,
        pad_id=int(pad_id),
        answer_rows=None if rows is None else rows.to(device),
        source=model_id,
    )


def datasets_and_model(args, need_labels: bool, **model_kwargs) -> tuple[list, AnalysisModel]:
    """The datasets (`--data`, `--max-images`, `--seed`) and the model (`--model`, `--device`,
    `--dtype`) of a probe/attribute command line; `UsageError` saying what is wrong with them."""
    problem = check_model_arguments(args)
    if problem:
        raise UsageError(problem)
    try:
        datasets = read_datasets(args.data, args.max_images, need_labels=need_labels, seed=args.seed)
        device = resolve_device(args.device)
        return datasets, load_analysis_model(args.model, device, resolve_dtype(args.dtype, device), **model_kwargs)
    except ValueError as error:  # unreadable data, a bad device or dtype, a ModelLoadError
        raise UsageError(str(error)) from None


# ----------------------------------------------------------------------------------------- data
@dataclass
class Dataset:
    name: str
    path: str
    samples: list  # deepvrm.trainers.data.Sample
    skipped_unlabelled: int = 0
    total: int = 0


def parse_data_argument(value: str) -> tuple[str, str]:
    """`NAME=PATH` or `PATH` (named after the file or folder)."""
    if "=" in value and not os.path.exists(value):
        name, path = value.split("=", 1)
        return name, path
    path = Path(value.rstrip("/\\"))
    return (path.stem if path.is_file() else path.name) or str(value), value


def read_datasets(values: list[str], max_images: int | None = None, need_labels: bool = True, seed: int = 0) -> list[Dataset]:
    """One `Dataset` per `--data` value. With `max_images`, a seeded sample that keeps the classes
    as balanced as the data allow."""
    from deepvrm.trainers.data import read_samples

    datasets, seen = [], {}
    for value in values:
        name, path = parse_data_argument(value)
        if name in seen:
            seen[name] += 1
            name = f"{name}-{seen[name]}"
        seen.setdefault(name, 1)
        samples = read_samples(path)
        total = len(samples)
        labelled = [s for s in samples if s.label is not None]
        skipped = total - len(labelled) if need_labels else 0
        if need_labels:
            samples = labelled
        if max_images is not None and len(samples) > max_images:
            samples = balanced_subset(samples, max_images, seed)
        datasets.append(Dataset(name=name, path=str(path), samples=samples, skipped_unlabelled=skipped, total=total))
    return datasets


def balanced_subset(samples: list, n: int, seed: int = 0) -> list:
    """`n` samples drawn with a fixed seed, alternating classes while both last (input order kept)."""
    rng = random.Random(seed)
    by_label: dict = {}
    for index, sample in enumerate(samples):
        by_label.setdefault(sample.label, []).append(index)
    for indices in by_label.values():
        rng.shuffle(indices)
    chosen, queues = [], [list(v) for _, v in sorted(by_label.items(), key=lambda kv: str(kv[0]))]
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop())
    return [samples[i] for i in sorted(chosen)]


# ----------------------------------------------------------------------------------------- images
def open_rgb(path: str):
    """The image as upright RGB, or raises `ValueError` with a one-line reason naming the file."""
    try:
        from deepvrm.inference.images import ImageError, fit_aspect_ratio, open_image
    except ImportError:  # pragma: no cover - image_io ships with the package
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.load()
                return image.convert("RGB")
        except Exception as error:
            raise ValueError(f"{path}: cannot read the image ({type(error).__name__}: {error})") from None
    try:
        return fit_aspect_ratio(open_image(path))
    except ImageError as error:
        raise ValueError(str(error)) from None


@dataclass
class Prepared:
    index: int
    pixel_values: torch.Tensor | None = None
    grid: torch.Tensor | None = None
    image: object = None  # the RGB picture (kept only when asked)
    error: str | None = None


def prepare(am: AnalysisModel, index: int, path: str, keep_image: bool = False) -> Prepared:
    try:
        image = open_rgb(path)
    except ValueError as error:
        return Prepared(index, error=str(error))
    try:
        inputs = am.image_processor(images=[image], return_tensors="pt")
    except Exception as error:
        return Prepared(index, error=f"{path}: cannot preprocess it ({type(error).__name__}: {error})")
    return Prepared(index, inputs["pixel_values"], inputs["image_grid_thw"], image if keep_image else None)


def concat(prepared: list[Prepared]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([p.pixel_values for p in prepared]), torch.cat([p.grid for p in prepared])


# ----------------------------------------------------------------------------------------- output
def pyplot():
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


NO_MATPLOTLIB = "matplotlib is not installed, so no PNG was drawn (pip install matplotlib)."


def json_ready(value):
    """NaN and infinities become null; numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(json_ready(data), indent=2) + "\n")


def fmt(mean: float, std: float | None = None, digits: int = 3) -> str:
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if std is None or not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f}±{std:.{digits}f}"


__all__ = [
    "AnalysisModel",
    "Dataset",
    "ModelLoadError",
    "load_analysis_model",
    "read_datasets",
    "prepare",
]
