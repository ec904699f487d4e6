"""One training on several processes, GPUs or machines, with PyTorch's own engine: torchrun + DDP.

    torchrun --nproc_per_node 2 -m textgen_core train lyrics.txt --out runs/lyrics ...

torchrun starts the processes and sets RANK, WORLD_SIZE and LOCAL_RANK; ``Distributed.from_env()``
joins them into one process group (NCCL on GPUs, gloo on CPUs). How the work is shared:
- ``--batch-size`` is the global batch. Every rank draws the same global batch of window offsets
  from the run's one random stream and trains on its own slice of it, so N ranks see exactly the
  batches one process would, and a checkpoint written with N ranks resumes with any other N.
- DistributedDataParallel averages the gradients; the loss reported is the mean over ranks.
- Rank 0 alone evaluates, decides (best weights, early stopping), writes the folder, the history and
  the card, and prints; it tells the others what it decided.
- Every step the ranks agree on whether to stop (a budget, Ctrl-C or SIGTERM on any rank), so they
  all stop at the same step.
- A rank that fails (out of memory, killed) ends the run on every rank: the others' next collective
  fails at once, and a rank that can still say why leaves a note in the output folder that rank 0
  reports, with the same advice as a single-process run.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from .errors import ConfigError, TextgenError
from .files import MAX_CONFIG_BYTES, read_json, write_json

TIMEOUT_ENV = "TEXTGEN_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800.0   # a collective may wait this long, e.g. for rank 0's evaluation
FAILURE_NOTE = ".textgen-rank-failure.json"


class FailedElsewhere(TextgenError):
    """Rank 0 could not prepare the run; it says why (the other ranks stop without repeating it)."""


@dataclass
class Distributed:
    """Where this process stands in a (possibly one-process) training."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: Optional[str] = None
    broken: bool = False          # a collective failed: no further collective is attempted

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "auto") -> Distributed:
        """This process's place, from torchrun's environment; joins the process group when there
        are several processes (once per process)."""
        world = launched_world_size()
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_available():
            raise ConfigError("this PyTorch has no torch.distributed: train in one process (without torchrun)")
        rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            if use_cuda:
                torch.cuda.set_device(local_rank)
            timeout = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
            dist.init_process_group(backend, timeout=dt.timedelta(seconds=timeout))
        return cls(rank, world, local_rank, backend)

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: its own GPU (LOCAL_RANK) when training on GPUs."""
        return torch.device("cuda", self.local_rank) if self.active and device.type == "cuda" else device

    def split_batch(self, batch: int) -> int:
        """This rank's share of the global batch."""
        if batch % self.world:
            raise ConfigError(f"batch size {batch} cannot be split evenly over {self.world} processes; use a "
                              f"multiple of {self.world}")
        return batch // self.world

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module the training step runs: DDP over ``model`` when there are several ranks."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    # --- collectives (no-ops for one process) -----------------------------------------------------
    def mean_(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` averaged over the ranks, in place."""
        if self.active and not self.broken:
            import torch.distributed as dist
            dist.all_reduce(value)
            value /= self.world
        return value

    def agree_max(self, code: int, device: torch.device) -> int:
        """The largest of every rank's ``code`` (the ranks agree on a decision)."""
        if not self.active or self.broken:
            return code
        import torch.distributed as dist
        value = torch.tensor([code], dtype=torch.int64, device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return int(value.item())

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object of this project's own making)."""
        if not self.active or self.broken:
            return value
        import torch.distributed as dist
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist
            if dist.is_initialized():
                try:
                    dist.destroy_process_group()
                except Exception:  # a group whose peers are gone may fail to close: the process ends anyway
                    pass


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective failing because another rank is gone or failed."""
    text = str(exc).lower()
    return any(words in text for words in ("connection closed", "connection reset", "broken pipe", "gloo",
                                           "nccl", "timed out", "socket", "peer"))


def note_failure(folder: Optional[Path], rank: int, message: str) -> None:
    """Leave why this rank failed where rank 0 looks (best effort: the folder may be unwritable)."""
    if folder is None:
        return
    try:
        write_json(Path(folder) / FAILURE_NOTE, {"rank": rank, "message": message})
    except Exception:
        pass


def take_failure_note(folder: Optional[Path]) -> Optional[dict]:
    """The note a failed rank left (removed once read)."""
    if folder is None:
        return None
    path = Path(folder) / FAILURE_NOTE
    try:
        note = read_json(path, MAX_CONFIG_BYTES)
    except Exception:
        return None
    path.unlink(missing_ok=True)
    return note


def launched_world_size() -> int:
    """How many processes torchrun started for this training (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)
