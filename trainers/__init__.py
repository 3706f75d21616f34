"""How Deep-VRM learns: the paper's two-stage recipe through transformers.Trainer and PEFT LoRA.

    deepvrm train --stage {1,2} --model PRESET_OR_PATH --train-data PATH... --output-dir DIR

Modules (imported on use, so `import deepvrm.trainers` stays light):

    data        read_samples (official JSON/JSONL, image folders), `datasets` sources, lazy image loading
    collator    DeepVRMCollator: chat batches with the loss on answer tokens only (or classification)
    lora        LoRA targets by model part (language_model, language_model_from_injection, visual_low_level)
    models      the model each stage starts from (presets, Qwen2.5-VL / Deep-VRM folders, adapters)
    recipes     YAML recipes in deepvrm/configuration/recipes (stage1, stage2)
    trainer     DeepVRMTrainer: merger learning rate, answer-token evaluation
    train       the dataclass arguments and `train()`; cli: `deepvrm train`
    metrics     accuracy / real / fake accuracy, AP and ROC-AUC of P(fake)
    checkerboard  a CPU learning check (python -m deepvrm.trainers.checkerboard)
"""
