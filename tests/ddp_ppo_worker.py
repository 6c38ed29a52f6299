"""One PPO step on a fixed batch, for tests/test_distributed.py: under `torchrun --nproc_per_node 2` each process
takes its half of the batch (gloo); alone, the whole batch. Writes the updated LoRA weights and the metrics."""

from __future__ import annotations

import sys

import torch

from rlxf.algos.ppo import PPOSettings, PPOTrainer
from rlxf.infra.distributed import init_from_env, rank_and_world
from rlxf.lm.models import load_causal_lm

QUERIES = ["Should taxes go up?", "What about schools?", "Is trade good for workers?", "Why vote at all?"]
RESPONSES = [[11, 12, 13, 14, 15, 16], [21, 22, 23, 24, 25, 26], [31, 32, 33, 34, 35, 36], [41, 42, 43, 44, 45, 46]]
REWARDS = [1.0, -0.5, 0.25, 0.75]  # equal response lengths: each process holds the same number of tokens


def main(out: str) -> None:
    init_from_env()
    rank, world = rank_and_world()
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu", dtype=torch.float32)
    settings = PPOSettings(dtype="fp32", batch_size=len(QUERIES), ppo_epochs=2, num_minibatches=1, seed=0,
                           learning_rate=1e-2, init_kl_coef=0.1)
    trainer = PPOTrainer(model, tokenizer, settings, adapter_name="policy")
    torch.manual_seed(1)  # a LoRA B of zeros gives A no gradient: start both from random values, as after training
    with torch.no_grad():
        for param in trainer.policy_params:
            param.copy_(torch.randn_like(param) * 0.05)
    start = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if ".policy." in name}
    rows = slice(rank, None, world)
    metrics = trainer.step(QUERIES[rows], [torch.tensor(r) for r in RESPONSES[rows]], REWARDS[rows])
    weights = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if ".policy." in name}
    result = {"start": start, "weights": weights, "metrics": metrics, "world": world}
    torch.save(result, f"{out}/rank{rank}-of-{world}.pt")
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
