"""The `deepvrm` command. Each subcommand lives in its own module exposing `main(argv) -> int`;
this file only dispatches, so commands load their heavy imports only when run."""

from __future__ import annotations

import importlib
import importlib.util
import sys

COMMANDS = {
    "detect": ("deepvrm.cli.detect", "Score images as real or fake (the main job)."),
    "evaluate": ("deepvrm.cli.evaluate", "Accuracy, AP and ROC-AUC of a model on labelled data."),
    "train": ("deepvrm.trainers.cli", "Train stage 1 or 2 of the paper's recipe with the HF Trainer."),
    "init": ("deepvrm.configuration.init_model", "Write a randomly initialised model folder from a preset."),
    "convert": ("deepvrm.cli.convert", "Convert an official-layout Deep-VRM checkpoint to a native deepvrm folder."),
    "push": ("deepvrm.hub_upload.cli", "Export a model folder for the Hub (weights, model code, processor, card) and upload it."),
    "probe": ("deepvrm.cli.probe", "Layer-wise linear probes of real-vs-fake information."),
    "attribute": ("deepvrm.cli.attribute", "Per-image attribution to the semantic and artifact paths."),
}


def _usage() -> str:
    lines = ["usage: deepvrm COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items() if _available(name)]
    lines += ["", "Run `deepvrm COMMAND --help` for a command's options."]
    return "\n".join(lines)


def _available(name: str) -> bool:
    try:
        return importlib.util.find_spec(COMMANDS[name][0]) is not None
    except ModuleNotFoundError:  # its parent package is not part of this install
        return False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS or not _available(name):
        print(f"deepvrm: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
