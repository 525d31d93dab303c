"""Data-parallel training from outside the model: process group from torchrun's environment, FSDP2 and
activation checkpointing applied by one function, `parallelize`.

    torchrun --nproc-per-node 8 -m kinema train --data runs/footage --vae shipped --out runs/dit ...

Single process is the default: without torchrun's WORLD_SIZE, `init_distributed` returns a one-rank
`Dist` and every collective below is a no-op, so the training loop has one code path. On CPU the gloo
backend is used (the tests run two ranks that way); on CUDA, NCCL.

FSDP2 (`fully_shard`) shards every DiT block, then the root (which owns the embedders and final layer),
the order torchtitan uses: each block's parameters are all-gathered just before it runs and freed after.
Gradients are reduce-scattered with averaging, so per-rank losses must be means over the global batch
(`train.py` scales them so). Mixed precision is bf16 autocast over fp32 master weights, exactly as in
single-process training, so a two-rank run follows a one-rank run up to reduction order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    mesh: object | None = None  # a 1-D DeviceMesh when world > 1
    owns_group: bool = False  # init_distributed created the process group (so close_distributed ends it)

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> Dist:
    """Join torchrun's process group if WORLD_SIZE > 1 (gloo on CPU, NCCL on CUDA); else one rank. A group
    the caller already initialised is used as it is and left open (several runs in one launch)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device == "cuda" or (device is None and torch.cuda.is_available())
    if world <= 1:
        return Dist(device=torch.device("cuda" if use_cuda else "cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(dev.type, (world,), mesh_dim_names=("dp",))
    return Dist(rank, world, local, dev, mesh, owns)


def close_distributed(d: Dist) -> None:
    if d.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def parallelize(
    model: nn.Module, d: Dist, checkpointing: bool = False, compile: bool = False, mp: str = "autocast"
) -> nn.Module:
    """Apply activation checkpointing, torch.compile (each per block) and FSDP2 (per block, then the root) to
    a DiT in place, in torchtitan's order. State-dict names stay those of the plain model.

    mp: "autocast" keeps fp32 parameters and leaves bf16 to the caller's autocast (the single-process
    recipe); "fsdp-bf16" gathers parameters in bf16 and reduces gradients in fp32 (FSDP2's
    MixedPrecisionPolicy), which halves the all-gather traffic on GPUs.
    """
    if checkpointing:  # recompute each block's activations in backward; state-dict names stay unchanged
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        for i, block in enumerate(model.blocks):  # the DiT has no dropout: no RNG state to replay
            model.blocks[i] = checkpoint_wrapper(block, preserve_rng_state=False)
    if compile:  # per block: every block has the same graph, so one compilation serves all
        for block in model.blocks:
            block.compile()  # in place (no `_orig_mod.` in parameter names)
    if d.world <= 1:
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy()
    if mp == "fsdp-bf16":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mesh=d.mesh, mp_policy=policy)
    fully_shard(model, mesh=d.mesh, mp_policy=policy)
    return model


def param_name(name: str) -> str:
    """A parameter's name as state dicts spell it: without the activation-checkpoint wrapper's prefix."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import _CHECKPOINT_PREFIX

    return name.replace(_CHECKPOINT_PREFIX, "")


def all_mean(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """The mean over ranks of a scalar tensor (itself on one rank)."""
    if d.world <= 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / d.world


def any_rank(flag: bool, d: Dist) -> bool:
    """True if flag is true on any rank: every rank takes the same branch (e.g. skipping a NaN step)."""
    if d.world <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def local(x: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (a collective), or the tensor itself."""
    return x.full_tensor() if hasattr(x, "full_tensor") else x
