"""Data parallelism for rlxf's own PPO loop with plain `torch.distributed` (what `torchrun` and `accelerate launch`
set up): every process generates and scores its share of the prompts, gradients are averaged across processes
before clipping, whitening statistics and metrics are taken over all processes. Without an initialised process
group every function here is the identity, so the single-process path is unchanged.

TRL's trainers (SFT, reward, GRPO, RLOO) need none of this: `transformers.Trainer` runs on `accelerate` itself.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """Whether a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, the number of processes); (0, 1) without a process group."""
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def init_from_env() -> bool:
    """Join the process group that `torchrun` / `accelerate launch` describe in the environment (WORLD_SIZE > 1):
    gloo on CPU, nccl on CUDA (each process on its LOCAL_RANK device). False when there is nothing to join."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    if torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for in one process)."""
    if is_distributed():
        dist.barrier()


def average_gradients(params) -> list:
    """Average the gradients of `params` over all processes in place (a missing gradient counts as zero) -> params.

    With equal numbers of response tokens per process this equals the gradient of one process on the whole batch.
    """
    params = list(params)
    if is_distributed():
        world = dist.get_world_size()
        for param in params:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad /= world
    return params


def masked_moments(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, unbiased variance) of x over the masked positions of every process's batch."""
    sums = torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()]).to(torch.float64)
    if is_distributed():
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    total, squares, count = sums
    mean = total / count.clamp(min=1)
    var = (squares - count * mean * mean) / (count - 1).clamp(min=1)
    return mean.to(x.dtype), var.clamp(min=0).to(x.dtype)


def mean_over_ranks(metrics: dict) -> dict:
    """Float metrics averaged over all processes (ints such as `step` kept as they are)."""
    if not is_distributed():
        return metrics
    keys = [key for key, value in metrics.items() if isinstance(value, float)]
    values = torch.tensor([metrics[key] for key in keys], dtype=torch.float64)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return {**metrics, **dict(zip(keys, (values / dist.get_world_size()).tolist(), strict=True))}
