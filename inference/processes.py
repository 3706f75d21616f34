"""Scoring across processes: `accelerate launch --num_processes N -m deepvrm.cli evaluate|detect ...`
(or `torchrun --nproc_per_node N -m deepvrm.cli ...`) starts N copies of the command. Each loads
the model on its own device (`cuda:LOCAL_RANK`), scores its share of the images, and the main
process merges the results and writes every output; the others print nothing but errors.

    processes = Processes.start(device="auto")  # one process unless launched as several (WORLD_SIZE > 1)
    processes.device("auto")     the device this process scores on (its own GPU under a launcher)
    processes.share(items)       this process's share: items[rank::N], so every process gets
                                 images from every part of the list (a benchmark lists its
                                 generators one after another; their images differ in size)
    processes.gather(rows)       every process's lists concatenated, in process order, on every process
    processes.broadcast(value)   the main process's value on every process
    processes.exit_status(code)  wait for the main process to finish; its code there, 0 elsewhere

The process group is accelerate's (`PartialState`; gloo on CPUs, NCCL on GPUs), started only when
a launcher asked for several processes, so a plain run imports and starts nothing of it. Note that
`accelerate launch --cpu` runs one process whatever --num_processes says (its CPU launcher spreads
processes with mpirun only); several CPU processes come from `accelerate launch --multi_gpu
--num_processes N` on a machine (or with CUDA_VISIBLE_DEVICES="") without GPUs, or from torchrun.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence

# Processes wait for each other only when they merge their scores, after scoring their shares:
# a share that takes hours longer than another must not time the waiting ones out.
MERGE_TIMEOUT = datetime.timedelta(days=7)
_WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_processes() -> int:
    """How many processes a launcher (accelerate launch, torchrun, mpirun) started; 1 for a plain run."""
    for name in _WORLD_SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Processes:
    """This run's processes: one, or those a launcher started (see the module docstring)."""

    def __init__(self, state=None):
        self.state = state  # accelerate's PartialState when distributed, else None

    @classmethod
    def start(cls, device: str | None = "auto") -> Processes:
        """One process, or join the launcher's process group. `--device cpu`, `accelerate launch
        --cpu` or a machine without a GPU make it a CPU group (gloo)."""
        if launched_processes() <= 1:
            return cls()
        import torch
        from accelerate import PartialState

        accelerator = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
        cpu = device == "cpu" or _flag("ACCELERATE_USE_CPU") or not accelerator
        return cls(PartialState(cpu=cpu, timeout=MERGE_TIMEOUT))

    @property
    def distributed(self) -> bool:
        return self.state is not None and self.state.num_processes > 1

    @property
    def count(self) -> int:
        return self.state.num_processes if self.distributed else 1

    @property
    def index(self) -> int:
        return self.state.process_index if self.distributed else 0

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def device(self, requested: str | None = "auto") -> str | None:
        """The device to score on: under a launcher, `auto` (and a bare `cuda`) is this process's
        own device; a named one (`cpu`, `cuda:1`) stays as asked. A plain run under `accelerate
        launch --cpu` scores on the CPU."""
        if self.distributed:
            if requested in (None, "auto") or (requested == "cuda" and self.state.device.type == "cuda"):
                return str(self.state.device)
            return requested
        if requested in (None, "auto") and _flag("ACCELERATE_USE_CPU"):
            return "cpu"
        return requested

    def share(self, items: Sequence) -> list:
        """This process's share of `items`: every N-th, starting at its index."""
        return list(items[self.index :: self.count])

    def gather(self, rows: list) -> list:
        """Every process's `rows`, concatenated in process order, on every process."""
        if not self.distributed:
            return list(rows)
        from accelerate.utils import gather_object

        return gather_object(list(rows))

    def broadcast(self, value):
        """The main process's `value`, on every process (the others' are ignored)."""
        if not self.distributed:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    def wait(self) -> None:
        """Until every process gets here."""
        if self.distributed:
            self.state.wait_for_everyone()

    def exit_status(self, status: int) -> int:
        """The exit status of this process once the main one has written everything: the main
        process's own; the others' 0, since a launcher stops every process as soon as one exits
        with another status (it would stop the main one mid-write), and reports the main one's."""
        self.wait()
        return status if self.is_main else 0

    def describe(self) -> str:
        device = self.state.device if self.distributed else None
        return f"{self.count} processes ({device.type})" if device is not None else "1 process"


def unshare(gathered: list[tuple[int, object]], n: int) -> list:
    """The values of `gather`ed `(index, value)` pairs back in index order (a list of length `n`)."""
    ordered = [None] * n
    for index, value in gathered:
        ordered[index] = value
    return ordered


__all__ = ["MERGE_TIMEOUT", "Processes", "launched_processes", "unshare"]
