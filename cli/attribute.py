"""`deepvrm attribute`: the command's options. The work is `deepvrm.analysis.attribute.run`, imported
once the arguments parse, so `--help` and usage errors answer without loading torch."""

from __future__ import annotations

import argparse
import sys

from deepvrm.cli.options import add_model_arguments, add_threshold_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepvrm attribute",
        description="Per-image attribution of a Deep-VRM's decisions to its artifact (residual) and semantic paths.",
    )
    add_model_arguments(parser, model_help="a Deep-VRM model: folder or Hub id", required=True)
    parser.add_argument("--data", required=True, nargs="+", metavar="DATA",
                        help="datasets (JSON/JSONL in the official format or image folders, with generator subfolders); NAME=PATH names one")
    parser.add_argument("--report", default=None, help="folder for attribution.json/.md/.png, per-image rows and token maps")
    parser.add_argument("--max-images", type=int, default=None, help="at most N images per dataset (a seeded, class-balanced sample)")
    parser.add_argument("--token-maps", type=int, default=0, metavar="N",
                        help="render per-token maps for the first N fakes (one decoder pass per image token; needs --report)")
    add_threshold_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from deepvrm.analysis.attribute import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
