"""The options of `deepvrm train` that are Deep-VRM's own (the rest are `transformers.TrainingArguments`),
as dataclasses for `HfArgumentParser`. Plain Python: `deepvrm train --help` lists them without
importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deepvrm.defaults_deepvrm import FUSIONS
from deepvrm.inference.devices import DTYPE_CHOICES


@dataclass
class ModelArguments:
    model: str | None = field(
        default=None,
        metadata={"help": "Preset name (tiny, small; qwen2.5-vl-3b/7b for --dry-run), Qwen2.5-VL or Deep-VRM "
                  "folder or Hub id, or a --save-adapter-only folder. Stage 1: the base model; stage 2: stage 1's output."},
    )
    stage: int | None = field(default=None, metadata={"help": "1 (semantic alignment) or 2 (artifact-aware refinement).", "choices": [1, 2]})
    dtype: str = field(default="auto", metadata={"help": "Weights' dtype: auto (the checkpoint's), float32, bfloat16, float16.", "choices": list(DTYPE_CHOICES)})
    injection_layer: int | None = field(default=None, metadata={"help": "Stage 2: the decoder layer receiving the low-level residual (default: the model's)."})
    fusion: str | None = field(default=None, metadata={"help": "Stage 2: mean (paper), add or gated (default: the model's).", "choices": list(FUSIONS)})
    attn_implementation: str | None = field(default=None, metadata={"help": "e.g. sdpa, flash_attention_2, eager."})


@dataclass
class DataArguments:
    train_data: list[str] = field(
        default_factory=list,
        metadata={"help": "JSON/JSONL files (official format), image folders (real/ fake/), or datasets save_to_disk folders."},
    )
    eval_data: list[str] = field(default_factory=list, metadata={"help": "Evaluation sets, each evaluated (and reported) on its own."})
    image_column: str = field(default="image", metadata={"help": "Image column of `datasets` folders."})
    label_column: str = field(default="label", metadata={"help": "Label column of `datasets` folders."})
    image_root: str | None = field(
        default=None,
        metadata={"help": "Folder that relative image paths of JSON/CSV data are also looked up in (after the data file's "
                  "folder and the working directory)."},
    )
    eval_by_subset: bool = field(default=True, metadata={"help": "Report nested generator folders (DIR/<generator>/{real,fake}) separately."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training samples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N samples of each evaluation set."})


@dataclass
class RecipeArguments:
    recipe: str | None = field(default=None, metadata={"help": "Recipe name (stage1, stage2) or YAML path; default: stage<N>."})
    objective: str = field(default="lm", metadata={"help": "lm: loss on the answer tokens (paper); classification: CE over the two answer tokens (stage 2).", "choices": ["lm", "classification"]})
    lora_targets: list[str] = field(default_factory=lambda: ["language_model"], metadata={"help": "language_model, language_model_from_injection, visual_low_level, visual."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (scale alpha/r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    merger_learning_rate: float | None = field(default=None, metadata={"help": "Learning rate of trainable merger parameters (default: learning_rate)."})
    global_batch_size: int | None = field(default=None, metadata={"help": "Derive gradient accumulation so that per-device batch x devices x accumulation = this (0/None: off)."})
    save_adapter_only: bool = field(default=False, metadata={"help": "Save the LoRA adapter (and the training config) instead of the merged model."})
    dry_run: bool = field(default=False, metadata={"help": "Build the model (meta device for presets), apply LoRA, print the trainable parameters, exit."})
