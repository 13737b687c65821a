"""Data-parallel training across processes (``torchrun --nproc-per-node N negminer train ...`` or
``accelerate launch``): which process this is, and the few things the processes must agree on.

Every process trains on its share of each step's batches; the in-batch candidates are gathered across processes
(so a query meets every document of the global batch). Mining, evaluation, metrics, events and the final model
happen on rank 0; the negatives table is sent from rank 0 to every rank, so all train on the same negatives.
The process group is gloo on CPU and NCCL on CUDA, started from torchrun's environment (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``...).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from negminer._data import RetrievalData
from negminer._errors import ConfigError, DataError

__all__ = ["Dist", "agree_on_data", "check_devices", "check_hardware", "current_process", "launch", "on_cpu"]


@dataclass(frozen=True)
class Dist:
    """This process's place: ``rank`` of ``world`` processes (world 1: not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def start(self, cpu: bool) -> None:
        """Join the process group (once; accelerate and transformers use the one started here): gloo when training
        on the CPU (``cpu``, see :func:`on_cpu`), NCCL on this process's GPU otherwise."""
        if not self.active:
            return
        import torch
        import torch.distributed as dist

        if dist.is_initialized():
            return
        if not cpu:
            torch.cuda.set_device(self.local_rank)
        dist.init_process_group(backend="gloo" if cpu else "nccl")

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.active:
            return value
        import torch.distributed as dist

        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.active:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out


def current_process() -> Dist:
    """This process's place from torchrun's (or accelerate's) environment variables."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", str(rank)) or 0)
    return Dist(rank, world, local)


def data_digest(data: RetrievalData) -> str:
    """A short digest of the training data (queries, positives, corpus ids): equal on ranks that read the same."""
    h = hashlib.sha256()
    for q, pos in zip(data.queries, data.positives):
        h.update(q.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
        h.update(",".join(map(str, pos)).encode())
        h.update(b"\1")
    h.update(str(len(data.corpus_ids)).encode())
    return h.hexdigest()[:16]


def agree_on_data(data: RetrievalData | None, problem: str | None, *, cpu: bool = True) -> None:
    """Under torchrun, make every rank fail together, naming the rank, when the training data is missing or
    different on one of them (without this the others would wait for it until the process group times out)."""
    here = current_process()
    if not here.active:
        if problem:
            raise DataError(problem)
        return
    here.start(cpu)
    answers = here.gather((problem, data_digest(data) if data is not None else None))
    for rank, (err, _) in enumerate(answers):
        if err:
            raise DataError(f"rank {rank} of {here.world}: {err}")
    digests = {d for _, d in answers}
    if len(digests) > 1:
        ranks = ", ".join(f"rank {r}: {d}" for r, (_, d) in enumerate(answers))
        raise DataError(f"the ranks read different training data ({ranks}); give every rank the same files")


def check_devices(devices: int, param: str = "devices") -> None:
    """Refuse more training processes than this machine has GPUs (on a machine without GPUs: CPU cores, each
    process a gloo worker)."""
    if devices <= 1:
        return
    import torch

    gpus = torch.cuda.device_count()
    have, what = (gpus, "GPU(s)") if gpus else (os.cpu_count() or 1, "CPU cores and no GPU")
    if devices > have:
        raise ConfigError(f"{devices} processes asked for; this machine has {have} {what}", param=param)


def on_cpu(device: str) -> bool:
    """Whether training with ``device`` (auto, cpu, cuda, cuda:N) runs on the CPU here."""
    import torch

    return device == "cpu" or not torch.cuda.is_available()


def check_hardware(bf16: bool, fp16: bool, device: str = "auto") -> None:
    """Refuse a mixed precision this machine cannot train in, naming the option."""
    import torch

    cpu = on_cpu(device)
    if fp16 and cpu:
        raise ConfigError("float16 training needs a CUDA GPU; on CPU use bf16", param="fp16")
    if bf16 and not cpu and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{torch.cuda.get_device_name()} has no bfloat16; use fp16", param="bf16")


def launch(devices: int, entrypoint: Any, *args: Any, run_id: str = "negminer") -> None:
    """Run ``entrypoint(*args)`` in ``devices`` processes on this machine, as torchrun would (``RANK``,
    ``WORLD_SIZE``, a free local port for the rendezvous); raises when a process fails."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=devices,
        run_id=run_id,
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        monitor_interval=0.5,
    )
    elastic_launch(config, entrypoint)(*args)
