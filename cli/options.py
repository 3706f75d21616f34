"""The options of the commands that load a model (detect, evaluate, probe, attribute), defined once:

    add_model_arguments(parser)     --model, --device, --dtype, --batch-size   (all four)
    add_threshold_argument(parser)  --threshold                                (detect, evaluate, attribute)
    add_scoring_arguments(parser)   --threshold, --max-pixels, --workers, --no-progress, --compile[-mode]  (detect, evaluate)
    check_model_arguments(args)     the usage error in those options, if any
    load_detector(args)             the `Detector` they describe (detect, evaluate)
"""

from __future__ import annotations

import argparse
import contextlib
import io

from deepvrm.inference.devices import COMPILE_MODES, DTYPE_CHOICES
from deepvrm.inference.images import DEFAULT_MAX_PIXELS


class UsageError(Exception):
    """Exit status 2 with this message."""


def add_model_arguments(parser: argparse.ArgumentParser, model_help: str | None = None, required: bool = False,
                        batch_size: int = 8) -> None:  # fmt: skip
    """--model (required, or defaulting to the shipped demo model), --device, --dtype, --batch-size."""
    if model_help is None:
        model_help = "deepvrm folder, official-layout Deep-VRM folder or Hub id (default: the shipped demo model)"
    parser.add_argument("--model", required=required, default=None, help=model_help)
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"images per forward pass (default {batch_size})")
    parser.add_argument("--device", default="auto", help="auto (default: CUDA, then MPS, then CPU; under accelerate launch each process's own GPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES,
                        help="auto (default): bfloat16 (float16 where unsupported) on GPU, float32 on CPU")  # fmt: skip


def add_threshold_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=float, default=0.5, help="P(fake) at or above which an image is called fake (default 0.5)")


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """What `Detector` takes besides the model: the threshold, the pixel limit, the preparing threads."""
    add_threshold_argument(parser)
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse images with more pixels than this, before decoding them (default {DEFAULT_MAX_PIXELS:,})")  # fmt: skip
    parser.add_argument("--workers", type=int, default=None,
                        help="threads opening and preprocessing images ahead of the model (default: one per core, up to 4; 0: none)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the vision towers' blocks and the decoder's norms and MLPs (inductor; off by "
                             "default). Scores are unchanged within round-off; the first batches wait for the compilation. "
                             "It does not pay on a CPU (benchmarks/bench_compile.py).")  # fmt: skip
    parser.add_argument("--compile-mode", default=None, choices=COMPILE_MODES,
                        help="the torch.compile mode of --compile (default: default); implies --compile")


def check_model_arguments(args) -> str | None:
    """The usage error in the shared options (those the command has), if any."""
    if args.batch_size < 1:
        return f"--batch-size must be at least 1, got {args.batch_size}"
    threshold = getattr(args, "threshold", None)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        return f"--threshold must lie in [0, 1], got {threshold}"
    if getattr(args, "max_pixels", 1) < 1:
        return f"--max-pixels must be positive, got {args.max_pixels}"
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 0:
        return f"--workers must be 0 or more, got {workers}"
    return None


def load_detector(args, processes=None):
    """A `Detector` for the shared options, or `UsageError`. Without --model: the shipped demo model,
    announced on stderr as a demonstration, not a real-world detector (`sources.default_model`).
    With `processes` (`deepvrm.inference.processes.Processes`), --device auto is this process's own
    device, and only the main process says what it loads."""
    from PIL import Image

    from deepvrm.inference.detector import Detector

    if Image.MAX_IMAGE_PIXELS is not None and args.max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = args.max_pixels  # Pillow's own guard would refuse first otherwise
    _quiet_transformers()
    device = processes.device(args.device) if processes is not None else args.device
    quiet = contextlib.redirect_stderr(io.StringIO()) if processes is not None and not processes.is_main else contextlib.nullcontext()
    try:
        with quiet:  # the other processes' notes (which model, the demo model's warning) would repeat the main one's
            return Detector.from_pretrained(
                args.model, device=device, dtype=args.dtype, batch_size=args.batch_size,
                threshold=args.threshold, max_pixels=args.max_pixels, workers=args.workers,
                compile=compile_request(args),
            )  # fmt: skip
    except ValueError as error:  # a bad device or dtype, or a ModelLoadError
        raise UsageError(str(error)) from None


def compile_request(args):
    """`Detector`'s `compile=` for --compile / --compile-mode: False, True or the mode's name."""
    mode = getattr(args, "compile_mode", None)
    return mode if mode is not None else bool(getattr(args, "compile", False))


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its "Loading weights" bar would mix with ours
    except Exception:
        pass


__all__ = [
    "UsageError",
    "add_model_arguments",
    "add_scoring_arguments",
    "add_threshold_argument",
    "check_model_arguments",
    "compile_request",
    "load_detector",
]
