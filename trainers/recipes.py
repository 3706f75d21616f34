"""Training recipes: flat YAML files in `deepvrm/configuration/recipes/` (or any path).

A recipe sets defaults for `deepvrm train`'s options and `transformers.TrainingArguments` fields;
the command line overrides any of them. `stage1` and `stage2` are the paper's (each file's comments
say where its values come from).
"""

from __future__ import annotations

from pathlib import Path

import yaml

RECIPES_DIR = Path(__file__).resolve().parent.parent / "configuration" / "recipes"


def _recipes_dir() -> Path:
    try:  # the installed package data (same folder in an editable install)
        from importlib.resources import files

        path = Path(str(files("deepvrm.configuration") / "recipes"))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return RECIPES_DIR


def recipe_names() -> list[str]:
    return sorted(p.stem for p in _recipes_dir().glob("*.yaml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """The file of a recipe given by name (`stage2`) or path."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    named = _recipes_dir() / f"{name_or_path}.yaml"
    if named.exists():
        return named
    raise ValueError(f"Unknown recipe {str(name_or_path)!r}: not a YAML file, nor one of {recipe_names()}.")


def load_recipe(name_or_path: str | Path) -> dict:
    """A recipe's keys and values (a flat mapping)."""
    path = recipe_path(name_or_path)
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error}).") from error
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a recipe is a mapping of option names to values, got {type(recipe).__name__}.")
    return {str(k).replace("-", "_"): v for k, v in recipe.items()}


__all__ = ["recipe_names", "recipe_path", "load_recipe", "RECIPES_DIR"]
