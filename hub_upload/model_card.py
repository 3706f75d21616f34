"""The model card (`README.md`) of an export: Hub metadata, usage, evaluation, intended use, limits, training.

The YAML header is built with huggingface_hub's `ModelCardData`/`EvalResult`, so the `model-index`
follows the Hub's schema. Its results are those of the last `deepvrm evaluate` run on the model
(`{"<dataset>": {"accuracy", "real_accuracy", "fake_accuracy", "average_precision", "roc_auc",
"n_real", "n_fake", ...}, "<dataset>/<generator>": {...}, "perturbations": {...}}`); values that a
dataset cannot define (null) are left out. The card text holds nothing that changes between two
exports of the same folder, so exports are byte-for-byte reproducible.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PAPER = (
    "Deep Residual Injection for Full-Spectrum Forensic Signal Perception in MLLMs (Deep-VRM, ICML 2026)"
)
OFFICIAL_RELEASE = "Kaiqing/Deep-VRM-Qwen-25-VL-7B"
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "real_accuracy": "Accuracy on real images",
    "fake_accuracy": "Accuracy on generated images",
    "average_precision": "Average precision (fake = positive)",
    "roc_auc": "ROC-AUC",
}
TABLE_COLUMNS = (("n_real", "real"), ("n_fake", "fake"), ("accuracy", "acc"), ("real_accuracy", "real acc"),
                 ("fake_accuracy", "fake acc"), ("average_precision", "AP"), ("roc_auc", "ROC-AUC"))  # fmt: skip
TAGS = ["deepvrm", "ai-generated-image-detection", "image-forensics", "deepfake-detection", "qwen2_5_vl", "custom_code"]


@dataclass
class CardInfo:
    repo_id: str | None
    kind: str  # "full" or "adapter"
    training: dict = field(default_factory=dict)
    license: str | None = None
    datasets: list[str] = field(default_factory=list)
    config: object | None = None
    adapter_config: dict | None = None
    base_model: str | None = None
    base_kind: str = "qwen2_5_vl"
    metrics: dict | None = None
    metrics_path: Path | None = None
    summary: dict = field(default_factory=dict)
    trainer_state: dict | None = None
    tags: list[str] = field(default_factory=list)

    @property
    def repo(self) -> str:
        return self.repo_id or "OWNER/NAME"


def _hub_ids(values) -> list[str]:
    pattern = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
    return [v for v in values if isinstance(v, str) and pattern.match(v) and not Path(v).expanduser().exists()]


def _license(info: CardInfo) -> dict:
    if info.license:
        return {"license": info.license}
    config = info.config
    if config is not None and getattr(config.text_config, "hidden_size", None) == 2048:
        # Qwen2.5-VL-3B ships under the Qwen research license, not Apache-2.0.
        return {
            "license": "other",
            "license_name": "qwen-research",
            "license_link": "https://huggingface.co/Qwen/Qwen2.5-VL-3B-Instruct/blob/main/LICENSE",
        }
    return {"license": "apache-2.0"}


def _eval_results(info: CardInfo) -> list:
    from huggingface_hub import EvalResult

    results = []
    for name, metrics in (info.metrics or {}).items():
        if not isinstance(metrics, dict) or "accuracy" not in metrics:
            continue  # e.g. "perturbations": shown in the table only
        dataset, _, subset = name.partition("/")
        for key, label in METRIC_NAMES.items():
            value = metrics.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            results.append(
                EvalResult(
                    task_type="image-classification",
                    task_name="AI-generated image detection",
                    dataset_type=_dataset_type(dataset),
                    dataset_name=dataset,
                    dataset_config=subset or None,
                    metric_type=key,
                    metric_name=label,
                    metric_value=round(float(value), 6),
                )
            )
    return results


def _dataset_type(name: str) -> str:
    slug = re.sub(r"[^\w.-]+", "-", name.strip()).strip("-").lower()
    return slug or "dataset"


def metadata_yaml(info: CardInfo) -> str:
    from huggingface_hub import ModelCardData

    tags = list(TAGS) + (["lora", "peft"] if info.kind == "adapter" else [])
    tags += [t for t in info.tags if t not in tags]
    eval_results = _eval_results(info)
    data = ModelCardData(
        library_name="peft" if info.kind == "adapter" else "transformers",
        pipeline_tag="image-classification",
        base_model=info.base_model,
        base_model_relation=("adapter" if info.kind == "adapter" else "finetune") if info.base_model else None,
        tags=tags,
        datasets=_hub_ids(info.datasets) or None,
        # model-index needs a name; without results ModelCardData would write a stray `model_name` key
        model_name=(info.repo_id.split("/")[-1] if info.repo_id else "deepvrm") if eval_results else None,
        eval_results=eval_results or None,
        **_license(info),
    )
    return data.to_yaml()


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def metrics_table(metrics: dict) -> list[str]:
    rows = [(name, m) for name, m in metrics.items() if isinstance(m, dict) and "accuracy" in m]
    for perturbation, per_dataset in (metrics.get("perturbations") or {}).items():
        if isinstance(per_dataset, dict):
            rows += [(f"{name} [{perturbation}]", m) for name, m in per_dataset.items() if isinstance(m, dict)]
    lines = ["| data | " + " | ".join(h for _, h in TABLE_COLUMNS) + " |", "|---|" + "---:|" * len(TABLE_COLUMNS)]
    for name, m in rows:
        lines.append(f"| {name.replace('|', '/')} | " + " | ".join(_fmt(m.get(k)) for k, _ in TABLE_COLUMNS) + " |")
    return lines


def _model_facts(info: CardInfo) -> list[str]:
    config = info.config
    facts = []
    if config is not None:
        text, vision = config.text_config, config.vision_config
        facts += [
            f"- Backbone: Qwen2.5-VL shape, {text.num_hidden_layers} decoder layers of width {text.hidden_size}, "
            f"vision towers of depth {vision.depth}.",
            f"- Residual injection before decoder layer {config.injection_layer} ({config.fusion} fusion of the "
            "low-level encoder's image embeddings at image-token positions).",
            f"- Images are resized to a fixed budget of {config.min_pixels:,} pixels"
            + (f" (about {int(config.min_pixels ** 0.5)}x{int(config.min_pixels ** 0.5)})." if config.min_pixels == config.max_pixels else f" to {config.max_pixels:,} pixels."),
            f"- Labels: {', '.join(config.labels)}; the detection prompt: \"{config.prompt}\"",
        ]
    elif info.training.get("injection_layer") is not None:
        facts.append(
            f"- Residual injection before decoder layer {info.training['injection_layer']} "
            f"({info.training.get('fusion') or 'mean'} fusion)."
        )
    params = info.summary.get("parameters")
    if params:
        what = "adapter parameters" if info.kind == "adapter" else "parameters"
        facts.append(f"- {params:,} {what} stored as {', '.join(info.summary.get('dtypes', []))}.")
    return facts


def _usage_full(info: CardInfo) -> list[str]:
    repo = info.repo
    return [
        "The repository carries its own modeling code, so `trust_remote_code=True` is all you need "
        "(transformers >= 5.24, torch, pillow); with the `deepvrm` package installed the same calls work without it.",
        "",
        "### As an image classifier",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'detector = pipeline("image-classification", model="{repo}", trust_remote_code=True)',
        'detector("photo.jpg")',
        "# [{'label': 'fake', 'score': 0.97}, {'label': 'real', 'score': 0.03}]",
        "```",
        "",
        "### The chat interface (as in the paper)",
        "",
        "```python",
        "import torch",
        "from PIL import Image",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "",
        f'model = AutoModelForImageTextToText.from_pretrained("{repo}", trust_remote_code=True, dtype="auto")',
        f'processor = AutoProcessor.from_pretrained("{repo}", trust_remote_code=True)',
        "",
        'inputs = processor.detection_inputs(Image.open("photo.jpg"))  # the detection prompt + the image',
        "with torch.no_grad():",
        "    generated = model.generate(**inputs, max_new_tokens=8, do_sample=False)",
        'print(processor.decode_answers(generated, inputs["input_ids"].shape[1]))  # [\'fake\']',
        "",
        "# P(fake): the first answer token's probability, renormalised over the two answers",
        "with torch.no_grad():",
        '    logits = model(**inputs).logits[:, -1, model.config.answer_token_ids]',
        "print(logits.softmax(-1)[:, 1])",
        "```",
        "",
        "Free-form chat works as with Qwen2.5-VL: `processor.apply_chat_template(messages, add_generation_prompt=True)` "
        'with an `{"type": "image"}` item (or the official data format\'s `<image>` placeholder) in the user turn.',
    ]


def _usage_adapter(info: CardInfo) -> list[str]:
    repo, base = info.repo, info.base_model
    config = info.config
    injection = getattr(config, "injection_layer", None) or info.training.get("injection_layer")
    fusion = getattr(config, "fusion", None) or info.training.get("fusion") or "mean"
    if info.base_kind == "deepvrm":
        build = [
            f'model = DeepVRM.from_pretrained("{base}", dtype="auto")  # the Deep-VRM checkpoint the adapter was trained on',
        ]
        base_text = f"the Deep-VRM checkpoint [{base}](https://huggingface.co/{base})"
    else:
        args = f'"{base}"' + (f", injection_layer={injection}" if injection is not None else "") + f', fusion="{fusion}"'
        build = [
            "# Deep-VRM built from the base as in training: the low-level encoder starts as a copy of the vision tower",
            f"model = DeepVRM.from_base_model({args})",
        ]
        base_text = f"a Deep-VRM built from [{base}](https://huggingface.co/{base})"
    processor_source = repo if info.summary.get("has_processor") else base
    return [
        f"This repository holds only the LoRA adapter of a stage-2 Deep-VRM run; it applies to {base_text}. "
        "The repository's remote code builds that model without the `deepvrm` package (transformers >= 5.24, "
        "torch, peft, pillow).",
        "",
        "```python",
        "import torch",
        "from PIL import Image",
        "from peft import PeftModel",
        "from transformers import AutoProcessor",
        "from transformers.dynamic_module_utils import get_class_from_dynamic_module",
        "",
        f'DeepVRM = get_class_from_dynamic_module("modeling_deepvrm.DeepVRMForConditionalGeneration", "{repo}")',
        *build,
        f'model = PeftModel.from_pretrained(model, "{repo}").merge_and_unload().eval()',
        f'processor = AutoProcessor.from_pretrained("{processor_source}", trust_remote_code=True)',
        "",
        'inputs = processor.detection_inputs(Image.open("photo.jpg"))',
        "with torch.no_grad():",
        "    generated = model.generate(**inputs, max_new_tokens=8, do_sample=False)",
        "    logits = model(**inputs).logits[:, -1, model.config.answer_token_ids]",
        'print(processor.decode_answers(generated, inputs["input_ids"].shape[1]), logits.softmax(-1)[:, 1])  # answer, P(fake)',
        "```",
        "",
        "`model.save_pretrained(DIR)` then gives a full model; `deepvrm push DIR --repo-id ...` publishes it with "
        "the image-classification pipeline.",
    ]


def _short(value):
    """Settings as they may appear on a public page: local paths shortened to their last component."""
    if isinstance(value, str) and (value.startswith(("/", "~", "./", "../")) or os.sep in value and Path(value).exists()):
        return Path(value).name or value
    if isinstance(value, list):
        return [_short(v) for v in value]
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    return value


def public_training_record(training: dict, base_model: str | None) -> dict:
    """`deepvrm_training.json` as published: the base named by its Hub id, no local paths."""
    record = {k: _short(v) for k, v in training.items()}
    if base_model:
        record["base_model"] = base_model
    return record


def _training(info: CardInfo) -> list[str]:
    lines = []
    training = public_training_record(info.training, info.base_model) if info.training else {}
    if training:
        stage = training.get("stage")
        lines.append(f"Trained with `deepvrm train`{f' (stage {stage})' if stage else ''}. Recorded settings:")
        lines.append("")
        for key in sorted(training):
            value = training[key]
            if isinstance(value, dict):
                lines.append(f"- `{key}`:")
                lines += [f"  - `{k}`: {v}" for k, v in sorted(value.items())]
            else:
                lines.append(f"- `{key}`: {value}")
        lines.append("")
    state = info.trainer_state or {}
    if state.get("global_step"):
        losses = [entry["loss"] for entry in state.get("log_history", []) if isinstance(entry.get("loss"), (int, float))]
        text = f"{state['global_step']:,} optimizer steps"
        if state.get("epoch") is not None:
            text += f" ({float(state['epoch']):.2f} epochs)"
        if state.get("train_batch_size"):
            text += f", batch size {state['train_batch_size']} per device"
        if losses:
            text += f", last logged training loss {losses[-1]:.4f}"
        lines += [f"Run (trainer_state.json): {text}.", ""]
    adapter = info.adapter_config
    if adapter:
        targets = adapter.get("target_modules")
        target_text = targets if isinstance(targets, str) else ", ".join(sorted(targets or []))
        lines.append(
            f"LoRA: r={adapter.get('r')}, alpha={adapter.get('lora_alpha')}, dropout={adapter.get('lora_dropout')}, "
            f"targets: `{target_text}`."
        )
        lines.append("")
    lines += [
        "How Deep-VRM is trained (the paper's recipe; this model's own record, when there is one, is above): stage 1 (semantic alignment) trains LoRA (r=128, alpha=256) on every linear layer of the "
        "language model of the stock Qwen2.5-VL on real ImageNet images and GenImage SD1.4 fakes with short analyses; "
        "stage 2 (artifact-aware refinement) starts from the merged stage-1 model, copies the vision tower into the "
        "low-level encoder and trains LoRA (r=64, alpha=128) on the decoder layers from the injection layer on and on "
        "the low-level encoder, on real COCO images and their reconstructions through the Stable Diffusion 2.1 VAE. "
        "AdamW, lr 1e-4, cosine schedule, 2 epochs, bf16, loss on the answer tokens only.",
    ]
    if not training and not adapter and not state:
        lines += ["", "No training record (`deepvrm_training.json`) was found beside this model: what it was trained on "
                  "is not stated here."]  # fmt: skip
    return lines


def render_card(info: CardInfo) -> str:
    title = info.repo_id.split("/")[-1] if info.repo_id else "Deep-VRM"
    adapter = info.kind == "adapter"
    lines = ["---", metadata_yaml(info).rstrip("\n"), "---", "", f"# {title}", ""]
    lines += [
        ("LoRA adapter of a " if adapter else "")
        + "Deep-VRM AI-generated-image detector: a Qwen2.5-VL multimodal LLM with a second, low-level vision encoder "
        "whose image embeddings are injected as a residual into the middle of the decoder, so the early layers keep "
        "their semantics while the later ones fuse them with generator artifacts. It answers \"real\" or \"fake\" "
        f"for an image. Method: {PAPER}; official release: [{OFFICIAL_RELEASE}](https://huggingface.co/{OFFICIAL_RELEASE}).",
        "",
    ]
    if info.base_model:
        lines += [f"Base model: [{info.base_model}](https://huggingface.co/{info.base_model}).", ""]
    facts = _model_facts(info)
    if facts:
        lines += ["## Model", "", *facts, ""]
    lines += ["## Usage", "", *(_usage_adapter(info) if adapter else _usage_full(info)), ""]
    if info.metrics:
        source = ("the evaluation at the end of `deepvrm train`" if info.metrics_path and info.metrics_path.name == "eval_results.json"
                  else "`deepvrm evaluate` on this model")  # fmt: skip
        lines += ["## Evaluation", "", f"Results of {source} "
                  "(accuracy at the model's threshold; AP and ROC-AUC of P(fake), fake = positive class):", "",
                  *metrics_table(info.metrics), ""]  # fmt: skip
    lines += [
        "## Intended use",
        "",
        "Screening images for signs of AI generation (text-to-image diffusion and GAN generators, VAE "
        "reconstructions), as one signal among others: content moderation triage, dataset hygiene, forensic research. "
        "Not a proof of authenticity, and not for decisions about people without human review.",
        "",
        "## Limitations",
        "",
        "- Generators unseen in training (new model families, new samplers, fine-tuned or distilled models) can "
        "evade it; expect lower accuracy on them than on the generators it was trained and evaluated on.",
        "- Heavy recompression (JPEG quality below ~75), resizing, screenshots, blur, noise and re-photographing "
        "weaken the pixel-level traces the low-level encoder relies on; edited or partly generated images "
        "(inpainting, composites) are out of scope.",
        "- Every image is resized to a fixed pixel budget, so very large images lose fine detail.",
        "- Scores are not calibrated probabilities across domains; pick a threshold on data like yours. The chat "
        "interface inherits the base model's biases and can answer confidently when wrong.",
        "- Adversarial attacks against the detector were not studied.",
        "",
        "## Training",
        "",
        *_training(info),
        "",
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
