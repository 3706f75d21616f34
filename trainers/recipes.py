"""Training recipes: flat YAML files shipped in `deepvrm.configuration` (`configuration/recipes/`), or any path.

A recipe sets defaults for `deepvrm train`'s options and `transformers.TrainingArguments` fields;
the command line overrides any of them. `stage1` and `stage2` are the paper's (each file's comments
say where its values come from).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from deepvrm.configuration import shipped_files


def recipe_names() -> list[str]:
    """The shipped recipes (package data of `deepvrm.configuration`, read with importlib.resources)."""
    return list(shipped_files("recipes"))


def load_recipe(name_or_path: str | Path) -> dict:
    """A recipe's keys and values (a flat mapping), from a YAML file's path or a shipped recipe's name."""
    path = Path(name_or_path).expanduser()
    shipped = shipped_files("recipes")
    if path.suffix in (".yaml", ".yml") and path.exists():
        where, text = str(path), path.read_text(encoding="utf-8")
    elif str(name_or_path) in shipped:
        where, text = f"recipe {name_or_path}", shipped[str(name_or_path)].read_text(encoding="utf-8")
    else:
        raise ValueError(f"Unknown recipe {str(name_or_path)!r}: not a YAML file, nor one of {list(shipped)}.")
    try:
        recipe = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{where}: not valid YAML ({error}).") from error
    if not isinstance(recipe, dict):
        raise ValueError(f"{where}: a recipe is a mapping of option names to values, got {type(recipe).__name__}.")
    return {str(k).replace("-", "_"): v for k, v in recipe.items()}


__all__ = ["recipe_names", "load_recipe"]
