"""The model card (`README.md`) of an export: huggingface_hub's `ModelCard.from_template` with the
package's template (`model_card_template.md`, Jinja) and `ModelCardData` for the Hub metadata.

Every statement about the model comes from its own records or is left out: the config (shape,
injection, pixel budget, labels), the weights' headers (parameter count, dtypes), the `deepvrm
evaluate` metrics found beside the model or given (the `model-index` and the results table; null
values are left out), the training record (`deepvrm_training.json`, `trainer_state.json`, the adapter
config). Nothing in the card changes between two exports of the same folder.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from deepvrm.inference.sources import is_hub_id

PAPER = "Deep Residual Injection for Full-Spectrum Forensic Signal Perception in MLLMs (Deep-VRM, ICML 2026)"
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "real_accuracy": "Accuracy on real images",
    "fake_accuracy": "Accuracy on generated images",
    "average_precision": "Average precision (fake = positive)",
    "roc_auc": "ROC-AUC",
    # The oracle figure some papers report: accuracy at the threshold best for this very data.
    "best_accuracy": "Accuracy at the best threshold for this data (oracle)",
}
TAGS = ["deepvrm", "ai-generated-image-detection", "image-forensics", "deepfake-detection", "custom_code"]
BACKBONE_NAMES = {"qwen2_5_vl": "Qwen2.5-VL", "qwen3_vl": "Qwen3-VL", "qwen3_5": "Qwen3.5"}


def _backbone(info) -> str:
    """The stock model_type of the export's backbone (Qwen2.5-VL when the card knows no config)."""
    return getattr(info.config, "backbone", None) or (info.training or {}).get("backbone") or "qwen2_5_vl"


def _license(info) -> dict:
    if info.license:
        return {"license": info.license}
    if info.config is not None and _backbone(info) == "qwen2_5_vl" and info.config.text_config.hidden_size == 2048:
        # Qwen2.5-VL-3B ships under the Qwen research license, not Apache-2.0.
        return {"license": "other", "license_name": "qwen-research",
                "license_link": "https://huggingface.co/Qwen/Qwen2.5-VL-3B-Instruct/blob/main/LICENSE"}  # fmt: skip
    return {"license": "apache-2.0"}


def _rows(metrics: dict) -> list[tuple[str, dict]]:
    return [(name, m) for name, m in (metrics or {}).items() if isinstance(m, dict) and "accuracy" in m]


def card_data(info):
    from huggingface_hub import EvalResult, ModelCardData

    results = [
        EvalResult(task_type="image-classification", task_name="AI-generated image detection",
                   dataset_type=re.sub(r"[^\w.-]+", "-", name.partition("/")[0]).strip("-").lower() or "dataset",
                   dataset_name=name.partition("/")[0], dataset_config=name.partition("/")[2] or None,
                   metric_type=key, metric_name=label, metric_value=round(float(m[key]), 6))  # fmt: skip
        for name, m in _rows(info.metrics)
        for key, label in METRIC_NAMES.items()
        if isinstance(m.get(key), (int, float)) and not isinstance(m.get(key), bool)
    ]
    tags = TAGS[:4] + [_backbone(info)] + TAGS[4:] + (["lora", "peft"] if info.kind == "adapter" else [])
    datasets = [d for d in info.datasets if is_hub_id(d)]
    return ModelCardData(
        library_name="peft" if info.kind == "adapter" else "transformers",
        pipeline_tag="image-classification",
        base_model=info.base_model,
        base_model_relation=("adapter" if info.kind == "adapter" else "finetune") if info.base_model else None,
        tags=tags + [t for t in info.tags if t not in tags],
        datasets=datasets or None,
        # model-index needs a name; without results ModelCardData would write a stray `model_name` key
        model_name=(info.repo_id.split("/")[-1] if info.repo_id else "deepvrm") if results else None,
        eval_results=results or None,
        **_license(info),
    )


def metrics_table(metrics: dict) -> str:
    """The results as `deepvrm evaluate` writes them in its report (one table renderer)."""
    from deepvrm.cli.evaluate import metrics_markdown_table

    rows = _rows(metrics)
    for perturbation, per_dataset in (metrics.get("perturbations") or {}).items():
        rows += [(f"{name} [{perturbation}]", m) for name, m in _rows(per_dataset if isinstance(per_dataset, dict) else {})]
    return metrics_markdown_table(rows)


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


def _run_summary(state: dict | None) -> str | None:
    if not (state or {}).get("global_step"):
        return None
    text = f"{state['global_step']:,} optimizer steps"
    if state.get("epoch") is not None:
        text += f" ({float(state['epoch']):.2f} epochs)"
    if state.get("train_batch_size"):
        text += f", batch size {state['train_batch_size']} per device"
    losses = [e["loss"] for e in state.get("log_history", []) if isinstance(e.get("loss"), (int, float))]
    return text + (f", last logged training loss {losses[-1]:.4f}" if losses else "")


def render_card(info) -> str:
    """The card of an export (`deepvrm.hub_upload.export.Export`: the facts and their sources)."""
    from huggingface_hub import ModelCard

    config, training = info.config, info.training
    adapter = info.adapter_config or {}
    targets = adapter.get("target_modules")
    template = resources.files("deepvrm.hub_upload").joinpath("model_card_template.md").read_text(encoding="utf-8")
    card = ModelCard.from_template(
        card_data(info),
        template_str=template,
        title=info.repo_id.split("/")[-1] if info.repo_id else "Deep-VRM",
        repo=info.repo_id or "OWNER/NAME",
        adapter=info.kind == "adapter",
        paper=PAPER,
        config=config,
        backbone=BACKBONE_NAMES[_backbone(info)],
        injection_layer=getattr(config, "injection_layer", None) or training.get("injection_layer"),
        fusion=getattr(config, "fusion", None) or training.get("fusion") or "mean",
        parameters=f"{info.parameters:,}" if info.parameters else None,
        dtypes=", ".join(info.dtypes),
        base_kind=info.base_kind,
        processor_repo=(info.repo_id or "OWNER/NAME") if info.has_processor else info.base_model,
        metrics_table=metrics_table(info.metrics) if info.metrics else None,
        metrics_source=info.metrics_source,
        training=sorted(public_training_record(training, info.base_model).items()) if training else [],
        run=_run_summary(info.trainer_state),
        lora=adapter and {"r": adapter.get("r"), "alpha": adapter.get("lora_alpha"), "dropout": adapter.get("lora_dropout"),
                          "targets": targets if isinstance(targets, str) else ", ".join(sorted(targets or []))},  # fmt: skip
    )
    return re.sub(r"\n{3,}", "\n\n", str(card)).rstrip("\n") + "\n"
