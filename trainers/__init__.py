"""How Deep-VRM learns: the paper's two-stage recipe through transformers.Trainer and PEFT LoRA.

    deepvrm train --stage {1,2} --model PRESET_OR_PATH --train-data PATH... --output-dir DIR

Modules (imported on use, so `import deepvrm.trainers` stays light):

    data        read_samples (official JSON/JSONL, image folders), `datasets` sources, lazy image loading
    collator    DeepVRMCollator: chat batches with the loss on answer tokens only (or classification)
    checks      the data checks `deepvrm train` runs before it loads a model
    lora        LoRA targets by model part (language_model, language_model_from_injection, visual_low_level)
    models      the model each stage starts from (presets, Qwen2.5-VL / Deep-VRM folders, adapters)
    recipes     YAML recipes in deepvrm/configuration/recipes (stage1, stage2)
    trainer     DeepVRMTrainer: merger learning rate, answer-token evaluation
    train       the dataclass arguments and `train()`; cli: `deepvrm train`
    metrics     accuracy / real / fake accuracy, AP, ROC-AUC, best-threshold accuracy of P(fake), defined
                by the evaluate metric module ai_image_detection/ (loaded with evaluate.load)
    checkerboard  a CPU learning check (python -m deepvrm.trainers.checkerboard)

`DeepVRMCollator` (the `data_collator` for `transformers.Trainer`, README "Training") and
`DeepVRMTrainer` are importable from here too: `from deepvrm.trainers import DeepVRMCollator`.
"""

_PUBLIC = {"DeepVRMCollator": "collator", "DeepVRMTrainer": "trainer"}


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_PUBLIC)
