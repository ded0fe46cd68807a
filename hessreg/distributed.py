"""Data parallelism with torchrun: the process group from torchrun's environment, one device per rank.

``torchrun --nproc_per_node N experiments/sweep.py …`` starts N processes with ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE`` set; :func:`init_from_env` joins them (NCCL on CUDA, gloo on CPU) and puts each rank on
``cuda:LOCAL_RANK``. Inside a run every rank takes its share of each global batch and gradients are averaged
(``hessreg.train``); a sweep lets only rank 0 decide what to run, write records and draw progress bars.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_env() -> tuple[int, int]:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (once); returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return rank_and_world()


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def broadcast(obj):
    """Rank 0's ``obj`` on every rank (itself when not distributed)."""
    if rank_and_world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def finish() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
