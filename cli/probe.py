"""`deepvrm probe`: the command's options. The work is `deepvrm.analysis.probe.run`, imported once
the arguments parse, so `--help` and usage errors answer without loading torch."""

from __future__ import annotations

import argparse
import sys

from deepvrm.analysis import REPRESENTATIONS
from deepvrm.cli.options import add_model_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepvrm probe",
        description="Layer-wise linear probes of real-vs-fake information in a Deep-VRM or Qwen2.5-VL model.",
        epilog="Depth i = the hidden state after i decoder layers. See `python -c 'import deepvrm.analysis.probe as p; help(p)'`.",
    )
    add_model_arguments(parser, model_help="Deep-VRM or plain Qwen2.5-VL: folder or Hub id", required=True)
    parser.add_argument("--data", required=True, nargs="+", metavar="DATA",
                        help="one or more labelled datasets (JSON/JSONL in the official format or image folders "
                             "with real/ and fake/), each drawn as its own curve; NAME=PATH names one. "
                             "Give the semantic set (the paper's D1) first: its curve gives the suggestion.")
    parser.add_argument("--max-images", type=int, default=None, help="at most N images per dataset (a seeded, class-balanced sample)")
    parser.add_argument("--report", default=None, help="folder for probe.json, probe.md and probe.png")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression (default 1.0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=0.01, help="accuracy gain that still counts as rising (default 0.01)")
    parser.add_argument("--suggest-from", choices=list(REPRESENTATIONS), default="image",
                        help="representation whose curve gives the suggested injection layer (default: image tokens)")
    parser.add_argument("--semantic", default=None, metavar="NAME", help="dataset whose curve gives the suggestion (default: the first)")
    parser.add_argument("--pixels", type=int, default=None, help="image pixel budget (default: the model's; 512*512 for plain Qwen2.5-VL)")
    parser.add_argument("--features-dir", default=None,
                        help="where the pooled features are streamed (default: a temporary folder, removed afterwards)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from deepvrm.analysis.probe import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
