"""Running a model over many items, batch by batch, so that one item that breaks its batch fails alone.

    batches(items, size)      -> consecutive lists of at most `size` items
    run_or_split(items, run)  -> [(group, run(group), None), ...] in input order: `run(items)` once,
                                 and where that raises, `run([item])` for each item on its own;
                                 an item that fails alone comes back as ([item], None, the error)

Used by `Detector` (detect, evaluate) and by `deepvrm probe` / `attribute`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence


def batches(items: Sequence, size: int) -> Iterator[list]:
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}.")
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def run_or_split(items: list, run: Callable[[list], object]) -> list[tuple[list, object, BaseException | None]]:
    """See the module docstring. A failed batch (often out of memory) frees the accelerator's cached
    memory before its items are retried one by one."""
    if not items:
        return []
    try:
        return [(items, run(items), None)]
    except Exception as error:  # noqa: BLE001 - whatever breaks a batch is retried per item
        if len(items) == 1:
            return [(items, None, error)]
    _free_cached_memory()
    return [outcome for item in items for outcome in run_or_split([item], run)]


def _free_cached_memory() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


__all__ = ["batches", "run_or_split"]
