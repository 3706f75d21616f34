"""The two-stage recipe end to end: build the model, apply LoRA, feed the data, run the Trainer, save.

    from deepvrm.trainers.train import ModelArguments, DataArguments, RecipeArguments, train
    train(ModelArguments(stage=2, model="stage1"), DataArguments(train_data=["d2.json"]),
          RecipeArguments(**load_recipe("stage2")), TrainingArguments(output_dir="stage2", ...))

`deepvrm train` (trainers/cli.py) parses these dataclasses with `HfArgumentParser` on top of a recipe.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import asdict
from pathlib import Path

import torch

from .arguments import DataArguments, ModelArguments, RecipeArguments

logger = logging.getLogger(__name__)


def build_peft_model(model_args: ModelArguments, recipe: RecipeArguments, meta: bool = False):
    """The stage's model with the recipe's LoRA applied (a `peft.PeftModel`)."""
    from .lora import apply_lora
    from .models import load_stage1_model, load_stage2_model

    if model_args.stage == 1:
        if recipe.objective != "lm":
            raise ValueError("Stage 1 trains the stock chat model: objective must be 'lm'.")
        model = load_stage1_model(model_args.model, dtype=model_args.dtype, meta=meta, attn_implementation=model_args.attn_implementation)
    elif model_args.stage == 2:
        model = load_stage2_model(
            model_args.model,
            objective=recipe.objective,
            injection_layer=model_args.injection_layer,
            fusion=model_args.fusion,
            dtype=model_args.dtype,
            meta=meta,
            attn_implementation=model_args.attn_implementation,
        )
    else:
        raise ValueError(f"--stage must be 1 or 2, got {model_args.stage!r}.")
    if meta:
        with torch.device("meta"):
            peft_model = apply_lora(model, recipe.lora_targets, recipe.lora_r, recipe.lora_alpha, recipe.lora_dropout)
    else:
        peft_model = apply_lora(model, recipe.lora_targets, recipe.lora_r, recipe.lora_alpha, recipe.lora_dropout)
    # adapter_config.json (of checkpoints and --save-adapter-only folders) names the base by what
    # resolves from anywhere, not by the path as this command was given it.
    for config in peft_model.peft_config.values():
        config.base_model_name_or_path = portable_reference(model_args.model)
    # PEFT's default (`save_embedding_layers="auto"`) asks the Hub at every save whether the base has a
    # config.json (for a preset base, a repo named "tiny"): a network request during training that
    # decides nothing here, since no Deep-VRM recipe changes the embeddings or the vocabulary.
    peft_model.save_pretrained = functools.partial(peft_model.save_pretrained, save_embedding_layers=False)
    return peft_model


def portable_reference(name: str | None) -> str | None:
    """A model reference that resolves from any working directory: a local folder's absolute path;
    a preset name or Hub id as it is."""
    from .models import is_preset

    if not name or is_preset(name):
        return name
    local = Path(name).expanduser()
    return str(local.resolve()) if local.exists() else name


def dry_run(model_args: ModelArguments, recipe: RecipeArguments) -> int:
    from .models import is_preset

    peft_model = build_peft_model(model_args, recipe, meta=is_preset(model_args.model))
    peft_model.print_trainable_parameters()
    return 0


# ------------------------------------------------------------------------------------------ data
def _dataset_name(source: str, taken: set[str]) -> str:
    path = Path(source)
    name = path.stem if path.suffix else path.name
    name = "".join(c if c.isalnum() or c in "-." else "_" for c in name) or "eval"
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}_{n}", n + 1
    taken.add(unique)
    return unique


def build_datasets(data_args: DataArguments, objective: str, stage: int | None = None):
    """(train dataset, {name: eval dataset}) in the schema of `trainers.data`, checked (see
    `trainers.checks`): unreadable images are named once and left out, samples without a label stop
    a classification run, one class only stops it too, and what each source holds is logged."""
    from collections import Counter

    import datasets

    from .checks import check_classes, check_source
    from .data import load_dataset_source

    train = None
    if data_args.train_data:
        parts, remaining = [], data_args.max_train_samples
        for source in data_args.train_data:
            if remaining is not None and remaining <= 0:
                break
            part = load_dataset_source(source, data_args.image_column, data_args.label_column, image_root=data_args.image_root)
            if remaining is not None:
                part = part.select(range(min(remaining, len(part))))
                remaining -= len(part)
            part = check_source(source, part, objective, role="training")
            _check_training_samples(part, objective)
            parts.append(part)
        train = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
        check_classes(Counter(train["label"]), objective, stage)
    evals: dict = {}
    taken: set[str] = set()
    for source in data_args.eval_data:
        dataset = load_dataset_source(source, data_args.image_column, data_args.label_column, image_root=data_args.image_root)
        labelled = dataset.filter(lambda label: label is not None, input_columns="label")
        if len(labelled) < len(dataset):
            logger.warning("%s: %d of %d samples have no label and are not evaluated.", source, len(dataset) - len(labelled), len(dataset))
        if len(labelled) == 0:
            raise ValueError(f"{source}: no labelled samples to evaluate.")
        labelled = check_source(source, labelled, objective, role="evaluation")
        name = _dataset_name(source, taken)
        subsets = sorted({s for s in labelled["subset"] if s is not None})
        if data_args.eval_by_subset and subsets:
            for subset in subsets:
                part = labelled.filter(lambda s, subset=subset: s == subset, input_columns="subset")
                evals[_dataset_name(f"{name}_{subset.replace('/', '_')}", taken)] = _cap(part, data_args.max_eval_samples)
            rest = labelled.filter(lambda s: s is None, input_columns="subset")
            if len(rest):
                evals[name] = _cap(rest, data_args.max_eval_samples)
        else:
            evals[name] = _cap(labelled, data_args.max_eval_samples)
    return train, evals


def _cap(dataset, n):
    return dataset if n is None else dataset.select(range(min(n, len(dataset))))


def _check_training_samples(dataset, objective: str) -> None:
    labels, answers = dataset["label"], dataset["answer"]
    for i, (label, answer) in enumerate(zip(labels, answers)):
        if label is None and (objective == "classification" or not answer):
            image = dataset[i]["image"]["path"] or f"sample {i}"
            need = "a label" if objective == "classification" else "an answer or a label"
            raise ValueError(f"{image}: this training sample has no {need} (from {dataset[i]['dataset']}).")


# ------------------------------------------------------------------------------------------ metrics
def compute_metrics(eval_pred) -> dict:
    from .metrics import compute_metrics as metrics

    return metrics(eval_pred)


# ------------------------------------------------------------------------------------------ train
def _resume_point(training_args):
    from transformers.trainer_utils import get_last_checkpoint

    resume = training_args.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("no", "false", "none", "off"):
        return None
    if isinstance(resume, str) and resume.lower() in ("true", "yes", "last"):
        resume = None
    if resume:
        return resume
    if training_args.output_dir and os.path.isdir(training_args.output_dir):
        last = get_last_checkpoint(training_args.output_dir)
        if last is not None:
            logger.info("Resuming from %s (the last checkpoint in the output folder).", last)
        return last
    return None


def finished_run(training_args) -> dict | None:
    """The recorded training metrics when `output_dir` holds a run that already reached the steps
    (or epochs) asked for, else None. Rerunning it would resume at its end, train zero steps and
    overwrite its records with that; `--resume-from-checkpoint no` (start over) or an explicit
    checkpoint goes ahead."""
    import json

    output_dir = Path(training_args.output_dir or ".")
    results, state_file = output_dir / "train_results.json", output_dir / "trainer_state.json"
    if not (results.is_file() and state_file.is_file()):
        return None
    resume = training_args.resume_from_checkpoint
    if resume and not (isinstance(resume, str) and resume.lower() in ("true", "yes", "last")):
        return None  # "no" (start over) or a checkpoint named on purpose
    try:
        state, metrics = json.loads(state_file.read_text()), json.loads(results.read_text())
    except (OSError, ValueError):
        return None
    step, epoch = state.get("global_step") or 0, state.get("epoch") or 0.0
    if training_args.max_steps and training_args.max_steps > 0:
        done = step >= training_args.max_steps
    else:
        done = epoch >= training_args.num_train_epochs - 1e-6
    if not done:
        return None
    logger.warning(
        "%s holds a finished run (%d steps, %.3g epochs; train_results.json): nothing to train, its records are kept. "
        "To start over, pass --resume-from-checkpoint no (it is then replaced) or choose another --output-dir; "
        "to train on, raise --max-steps or --num-train-epochs.",
        output_dir, step, epoch,
    )
    return metrics


def fit_global_batch(recipe: RecipeArguments, training_args, n_samples: int) -> None:
    """A recipe's global batch larger than the training data would make every optimizer step a
    pass (or several) over the data, cut short at the epoch's end: the global batch then follows the
    data (gradient accumulation derived from the data's size instead), and says so."""
    per_step = training_args.per_device_train_batch_size * max(1, training_args.world_size)
    accumulation = training_args.gradient_accumulation_steps
    if per_step * accumulation <= n_samples:
        return
    derived = getattr(recipe, "derived_accumulation", None) == accumulation and recipe.global_batch_size
    if derived:
        steps = max(1, n_samples // per_step)
        training_args.gradient_accumulation_steps = steps
        logger.warning(
            "The global batch of %d is more than the %d training samples: using %d (%d per step x %d accumulation), "
            "so that an optimizer step is at most one pass over the data (--global-batch-size sets it).",
            recipe.global_batch_size, n_samples, per_step * steps, per_step, steps,
        )
    elif accumulation > 1:
        logger.warning(
            "A global batch of %d (%d per step x %d accumulation) is more than the %d training samples: every "
            "optimizer step is one whole pass over the data, cut short at its end.",
            per_step * accumulation, per_step, accumulation, n_samples,
        )


def fit_dataloader(training_args) -> None:
    """No more data-loading workers than CPU cores, and pinned memory only with an accelerator
    (both would only warn, every run or every step)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if training_args.dataloader_num_workers > cores:
        logger.info("Data loading: %d workers (one per CPU core) instead of %d.", cores, training_args.dataloader_num_workers)
        training_args.dataloader_num_workers = cores
    if training_args.dataloader_pin_memory and not _has_accelerator():
        training_args.dataloader_pin_memory = False


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def train(model_args: ModelArguments, data_args: DataArguments, recipe: RecipeArguments, training_args, callbacks=None) -> dict:
    """Run one stage; returns the training metrics (and the final evaluation's, if any).

    `callbacks`: extra `transformers.TrainerCallback`s (e.g. to stop early).
    """
    from transformers import set_seed

    from .collator import DeepVRMCollator
    from .models import load_processor
    from .trainer import DeepVRMTrainer

    if recipe.dry_run:
        dry_run(model_args, recipe)
        return {}
    if not data_args.train_data:
        raise ValueError("--train-data is required (JSON/JSONL files or image folders).")
    finished = finished_run(training_args)
    if finished is not None:
        return finished
    # All data is read and checked before the model loads (seconds, not a loaded model, to find a typo).
    train_dataset, eval_datasets = build_datasets(data_args, recipe.objective, model_args.stage)
    fit_global_batch(recipe, training_args, len(train_dataset))
    fit_dataloader(training_args)
    set_seed(training_args.seed)  # a preset's random weights are then the same in every run (and resume)
    peft_model = build_peft_model(model_args, recipe)
    peft_model.print_trainable_parameters()
    base_config = peft_model.get_base_model().config
    processor = load_processor(model_args.model, base_config)
    labels = [base_config.id2label[i] for i in sorted(base_config.id2label)] if len(base_config.id2label or {}) == 2 else ["real", "fake"]
    if labels == ["LABEL_0", "LABEL_1"]:
        labels = ["real", "fake"]
    answer_token_ids = [processor.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in labels]

    collator = DeepVRMCollator(processor, objective=recipe.objective, labels=tuple(labels))
    eval_collator = DeepVRMCollator(processor, objective=recipe.objective, labels=tuple(labels), eval_mode=True)
    if not eval_datasets:
        from transformers.trainer_utils import IntervalStrategy

        training_args.eval_strategy = IntervalStrategy.NO
    trainer = DeepVRMTrainer(
        model=peft_model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_datasets or None,
        data_collator=collator,
        eval_data_collator=eval_collator,
        processing_class=processor,
        compute_metrics=compute_metrics if eval_datasets else None,
        merger_learning_rate=recipe.merger_learning_rate,
        answer_token_ids=answer_token_ids,
        callbacks=callbacks,
    )
    result = trainer.train(resume_from_checkpoint=_resume_point(training_args))
    metrics = dict(result.metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()  # trainer_state.json: the log history
    if eval_datasets:
        eval_metrics = _final_evaluation(trainer, eval_datasets)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    info = {
        "stage": model_args.stage,
        "base_model": portable_reference(model_args.model),
        "objective": recipe.objective,
        "injection_layer": getattr(base_config, "injection_layer", None),
        "fusion": getattr(base_config, "fusion", None),
        "seed": training_args.seed,
        "recipe": asdict(recipe),
        "train_data": data_args.train_data,
        "eval_data": data_args.eval_data,
    }
    save_final_model(trainer, processor, recipe.save_adapter_only, info)
    if collator.skipped:
        skipped = list(dict.fromkeys(collator.skipped))  # each image once, however many epochs met it
        logger.warning("%d training images could not be decoded and were skipped, e.g. %s", len(skipped), skipped[0])
    return metrics


def _final_evaluation(trainer, eval_datasets: dict) -> dict:
    """The metrics of the final weights: from the evaluation the schedule just ran at the last step,
    else a new one."""
    step = trainer.state.global_step
    logged = {}
    for entry in trainer.state.log_history:
        if entry.get("step") == step:
            logged.update({k: v for k, v in entry.items() if k.startswith("eval_")})
    if all(f"eval_{name}_accuracy" in logged for name in eval_datasets):
        return {**logged, "epoch": trainer.state.epoch}
    return trainer.evaluate()


def save_final_model(trainer, processor, adapter_only: bool, info: dict) -> None:
    """The output folder: the merged model (a complete folder `from_pretrained` and the pipeline
    load) or, with `adapter_only`, the LoRA adapter plus `deepvrm_training.json` to rebuild its base
    and a README.md saying how to load it."""
    from .models import load_adapter_folder, write_training_info

    output_dir = trainer.args.output_dir
    sharded = trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled
    if adapter_only or sharded:
        # The Trainer gathers sharded (FSDP / ZeRO-3) adapter weights itself.
        target = output_dir if adapter_only else os.path.join(output_dir, "adapter")
        if trainer.is_fsdp_enabled:
            # Sharded checkpoints (the config's, for resume) are not a model; gather this one whole.
            trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        trainer.save_model(target)
        if trainer.args.should_save:
            write_training_info(target, **info)
            _write_adapter_card(target, info)
        if adapter_only:
            return
    trainer.accelerator.wait_for_everyone()
    if not trainer.args.should_save:
        return
    if sharded:
        with _outside_zero3():  # build the full model on this process, not a ZeRO-3-partitioned one
            merged = load_adapter_folder(os.path.join(output_dir, "adapter"))
    else:
        merged = trainer.model.merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    write_training_info(output_dir, **info)
    logger.info("Saved the merged model to %s", output_dir)


def _write_adapter_card(folder: str, info: dict) -> None:
    """README.md of an adapter folder: how to load it (in place of PEFT's empty template)."""
    from .adapter_card import render_adapter_card
    from .models import model_kind

    try:
        card = render_adapter_card(folder, info, model_kind(info["base_model"]))
    except Exception as error:  # noqa: BLE001  (a card must not fail a finished run)
        logger.warning("No adapter card for %s: %s", folder, error)
        return
    Path(folder, "README.md").write_text(card, encoding="utf-8")


class _outside_zero3:
    """While active, transformers builds models whole even when a ZeRO-3 run registered its config."""

    def __enter__(self):
        from transformers.integrations import deepspeed as ds

        self._ref = ds._hf_deepspeed_config_weak_ref
        ds.unset_hf_deepspeed_config()

    def __exit__(self, *exc):
        from transformers.integrations import deepspeed as ds

        ds._hf_deepspeed_config_weak_ref = self._ref
        return False


__all__ = ["ModelArguments", "DataArguments", "RecipeArguments", "build_peft_model", "build_datasets", "train", "dry_run", "portable_reference"]
