"""DistributedDataParallel by hand: join torchrun's process group, reduce, keep replicas in step."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from shared.config import TrainConfig
from shared.runtime import TrainingError, resolve_device


@dataclass(frozen=True)
class World:
    """This process's place in the job; a single process is rank 0 of 1."""

    device: torch.device
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# Lightning: Trainer(strategy="ddp", devices=..., num_nodes=...) launches and joins the processes
def init_distributed(cfg: TrainConfig) -> World:
    """Join the process group torchrun describes in the environment, or run alone."""
    device = resolve_device(cfg)
    if "RANK" not in os.environ:  # not started by torchrun
        if cfg.strategy == "ddp" or cfg.devices > 1 or cfg.num_nodes > 1:
            raise TrainingError(
                f"--devices {cfg.devices} --num-nodes {cfg.num_nodes} --strategy {cfg.strategy}: "
                f"the plain side does not spawn processes; start one per device with torchrun, "
                f"e.g. "
                f"`torchrun --nproc_per_node {cfg.devices} -m plain_pytorch.train <flags>` "
                f"(multi-node: add --nnodes, --node_rank, "
                f"--master_addr, --master_port)")
        return World(device)
    rank, local_rank, size = (int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(device, rank, size)


def wait_for_all(world: World) -> None:
    """Every rank waits here for the others (rank 0 tests alone) before any leaves the group."""
    if world.size > 1:
        dist.barrier()


def close_distributed() -> None:
    """Leave the process group with nothing of it left for the interpreter's shutdown to destroy.

    Once in CI a non-main rank died at the end of a run with SIGABRT ("terminate called without an
    active exception"), the way gloo work objects that are still alive at interpreter shutdown are
    known to make it die; collecting garbage first frees any that a reference cycle kept, while the
    interpreter still runs.
    """
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


# Lightning: the DDP strategy wraps the LightningModule
def wrap_model(model: nn.Module, cfg: TrainConfig, world: World) -> nn.Module:
    """DDP (gradients averaged across ranks) and/or torch.compile around the model (itself kept)."""
    net = model
    if dist.is_initialized():
        device_ids = [world.device.index] if world.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=device_ids)
    return torch.compile(net, mode=cfg.compile_mode) if cfg.compile else net


# Lightning: self.log(..., sync_dist=True)
def all_reduce_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Sum over ranks, in place; the identical result on every rank."""
    if world.size > 1:
        dist.all_reduce(tensor)
    return tensor


# Lightning: the DDP strategy (DistributedDataParallel broadcasts rank 0's buffers)
def broadcast_buffers(model: nn.Module, world: World) -> None:
    """Rank 0's BatchNorm running statistics to every rank (DDP averages gradients, not buffers)."""
    if world.size > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

