"""Where and in what precision a model runs: the dtype names every command accepts and their
resolution to torch objects.

    DTYPE_NAMES                ("float32", "bfloat16", "float16")
    DTYPE_CHOICES              ("auto", *DTYPE_NAMES)  (command-line choices)
    COMPILE_MODES              torch.compile's modes (`--compile MODE`, `Detector(compile=MODE)`)
    resolve_device("auto")     -> torch.device (CUDA, then MPS, then CPU)
    resolve_dtype("auto", dev) -> torch.dtype  (bfloat16/float16 on GPUs, float32 on CPU)
    torch_dtype(name)          -> torch.dtype, or "auto" (the checkpoint's own, for from_pretrained)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Names only: the commands build their options from these before anything imports torch (help and
# argument errors answer at once); torch is imported by the functions that resolve them.
DTYPE_NAMES = ("float32", "bfloat16", "float16")
DTYPE_CHOICES = ("auto", *DTYPE_NAMES)
# torch.compile's modes, the values of `--compile MODE` and of `Detector(compile=...)` besides on/off.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def resolve_device(device: str | None = "auto") -> torch.device:
    """`auto`: CUDA when available, then MPS, then the CPU. Raises `ValueError` for a device this
    machine does not have."""
    import torch

    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r} ({error})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here (torch {torch.__version__}).")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asked for, but MPS is not available here.")
    return resolved


def resolve_dtype(dtype: str | None = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """`auto`: bfloat16 on GPUs that support it (float16 on older ones and on MPS), float32 on CPU."""
    import torch

    device = torch.device(device)
    if dtype in (None, "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    return torch_dtype(dtype)


def torch_dtype(dtype: str | torch.dtype | None):
    """The torch dtype named `dtype` (a torch dtype passes through); `auto`/None stay "auto", which
    `from_pretrained` reads as the checkpoint's own dtype. Raises `ValueError` for another name."""
    import torch

    if dtype in (None, "auto"):
        return "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_CHOICES)}.")
    return getattr(torch, dtype)


__all__ = ["COMPILE_MODES", "DTYPE_NAMES", "DTYPE_CHOICES", "resolve_device", "resolve_dtype", "torch_dtype"]
