"""The package installs as one `deepvrm` namespace: no generic top-level modules in site-packages."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setuptools():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_is_under_deepvrm_and_maps_to_a_repo_folder():
    config = _setuptools()
    assert all(p == "deepvrm" or p.startswith("deepvrm.") for p in config["packages"])
    assert config["package-dir"]["deepvrm"] == "modeling_deepvrm"
    for name, folder in config["package-dir"].items():
        assert (ROOT / folder / "__init__.py").is_file(), (name, folder)


def test_every_subpackage_folder_is_listed_so_it_ships():
    config = _setuptools()
    listed = set(config["packages"])
    for folder, package in [(v, k) for k, v in config["package-dir"].items()]:
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            name = ".".join([package, *relative.parts]) if relative.parts else package
            if "__pycache__" not in name and not any(part.startswith(".") for part in relative.parts):
                assert name in listed, f"{name} is not in [tool.setuptools].packages"


def test_installed_deepvrm_command_runs(capsys):
    """The `deepvrm` console script, as installed from pyproject.toml, loads and lists its commands."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="deepvrm")
    assert script.load()(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("detect", "evaluate", "train"))
