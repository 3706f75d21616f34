"""`deepvrm train`: one stage of the paper's recipe with the HF Trainer.

    deepvrm train --stage {1,2} --model PRESET_OR_PATH --train-data PATH... [--eval-data PATH...]
                  --output-dir DIR [--recipe NAME_OR_YAML] [recipe keys] [TrainingArguments flags]
    deepvrm train --stage 2 --model qwen2.5-vl-7b --dry-run

Options come from three places, later ones winning: the dataclass defaults, the recipe (default
`stage<N>`, see configuration/recipes/), the command line. Every option has a dash and an
underscore spelling (`--train-data`, `--train_data`). `--help` lists Deep-VRM's own options at once;
`--help-all` adds every `transformers.TrainingArguments` option (which takes seconds: that import
loads torch).
"""

from __future__ import annotations

import argparse
import logging
import sys

logger = logging.getLogger("deepvrm.trainers")


def _parser(training_arguments: bool = True):
    """The command's parser; without `training_arguments`, only Deep-VRM's own options (for --help)."""
    from transformers import HfArgumentParser

    from .arguments import DataArguments, ModelArguments, RecipeArguments

    dataclasses = [ModelArguments, DataArguments, RecipeArguments]
    epilog = None
    if training_arguments:
        from transformers import TrainingArguments

        dataclasses.append(TrainingArguments)
    else:
        epilog = ("Every transformers.TrainingArguments option is accepted too (--output-dir, --learning-rate, "
                  "--num-train-epochs, --per-device-train-batch-size, --bf16, ...): `deepvrm train --help-all` lists them.")  # fmt: skip
    return HfArgumentParser(dataclasses, prog="deepvrm train", description=__doc__, epilog=epilog,
                            formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip


def _given(argv: list[str]) -> set[str]:
    """Option names (underscore spelling) given on the command line."""
    names = set()
    for arg in argv:
        if arg.startswith("--"):
            name = arg[2:].split("=", 1)[0].replace("-", "_")
            names.add(name[3:] if name.startswith("no_") else name)
    return names


# TrainingArguments' deprecated names and the ones that replace them (transformers 5): the old
# spellings keep working here, without the FutureWarning, and a recipe's value of one cannot
# silently override the command line's value of the other.
RENAMED = {"gradient_checkpointing": "activation_checkpointing", "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs"}


def _renamed(argv: list[str]) -> list[str]:
    out = []
    for arg in argv:
        if arg.startswith("--"):
            name, sep, value = arg[2:].partition("=")
            new = RENAMED.get(name.replace("-", "_"))
            if new is not None:
                arg = "--" + new + sep + value
        out.append(arg)
    return out


def parse_args(argv: list[str]):
    """(model, data, recipe, training) arguments: dataclass defaults < recipe < command line."""
    # Deep-VRM's own options first, without TrainingArguments (whose import loads torch): a bad value
    # there is reported at once. Only an unknown option waits for the full parser.
    _parser(training_arguments=False).parse_known_args(_renamed(list(argv)))
    import torch

    from .recipes import load_recipe

    argv = _renamed(list(argv))
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe")
    pre.add_argument("--stage", type=int)
    known, _ = pre.parse_known_args(argv)
    parser = _parser()
    recipe_name = known.recipe or (f"stage{known.stage}" if known.stage in (1, 2) else None)
    given = _given(argv)
    recipe = load_recipe(recipe_name) if recipe_name else {}
    for old, new in RENAMED.items():
        if old in recipe:
            value = recipe.pop(old)
            recipe.setdefault(new, value)
    if recipe:
        options = {action.dest for action in parser._actions}
        unknown = sorted(set(recipe) - options)
        if unknown:
            raise ValueError(f"Recipe {recipe_name}: unknown keys {unknown} (not deepvrm train options nor TrainingArguments fields).")
        if known.stage is not None and recipe.get("stage") not in (None, known.stage):
            raise ValueError(f"Recipe {recipe_name} is for stage {recipe['stage']}, but --stage {known.stage} was given.")
        if recipe.get("bf16") and "bf16" not in given and not torch.cuda.is_available():
            if "dry_run" not in given:
                logger.warning("No GPU: training in float32 (the recipe's bf16 needs a GPU; --bf16 forces it).")
            recipe["bf16"] = False
        parser.set_defaults(**recipe)
    model_args, data_args, recipe_args, training_args = parser.parse_args_into_dataclasses(argv)
    recipe_args.recipe = recipe_name
    if model_args.stage is None:
        parser.error("--stage is required (1 or 2), directly or through --recipe.")
    if model_args.model is None:
        parser.error("--model is required (a preset name, a model folder or a Hub id).")
    if not data_args.eval_data and "eval_strategy" not in given:
        from transformers.trainer_utils import IntervalStrategy

        training_args.eval_strategy = IntervalStrategy.NO  # the recipe's schedule needs --eval-data
        training_args.do_eval = False
    if training_args.activation_checkpointing and not training_args.activation_checkpointing_kwargs:
        # Non-reentrant checkpointing works with frozen inputs (LoRA) without enable_input_require_grads.
        training_args.activation_checkpointing_kwargs = training_args.gradient_checkpointing_kwargs = {"use_reentrant": False}
    if recipe_args.global_batch_size and "gradient_accumulation_steps" not in given:
        per_step = training_args.per_device_train_batch_size * max(1, training_args.world_size)
        steps = max(1, round(recipe_args.global_batch_size / per_step))
        if steps * per_step != recipe_args.global_batch_size:
            logger.warning(
                "Global batch %d is not a multiple of %d (per-device batch x devices): using %d.",
                recipe_args.global_batch_size, per_step, steps * per_step,
            )
        training_args.gradient_accumulation_steps = steps
        # train() lets a derived accumulation follow the data when the data is smaller than the batch.
        recipe_args.derived_accumulation = steps
    return model_args, data_args, recipe_args, training_args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv or "--help-all" in argv:
        _parser(training_arguments="--help-all" in argv).print_help()
        return 0
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        model_args, data_args, recipe_args, training_args = parse_args(argv)
        from .train import train

        train(model_args, data_args, recipe_args, training_args)
    except ValueError as error:
        print(f"deepvrm train: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
