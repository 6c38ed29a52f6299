"""rlxf's PPO under data parallelism: one step on two processes (gloo on CPU, started by torchrun), each with half
of a batch, gives the same LoRA weights as one process on the whole batch (`accelerate launch --cpu` starts only
one process on CPU, hence torchrun)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
import yaml

from rlxf.infra.distributed import average_gradients, masked_moments, mean_over_ranks, rank_and_world
from rlxf.paths import REPO_ROOT

WORKER = REPO_ROOT / "tests" / "ddp_ppo_worker.py"


def _run(args, out):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*args, str(WORKER), str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_process_ppo_step_equals_one_process_on_the_whole_batch(tmp_path):
    _run([sys.executable], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"], tmp_path)
    single = torch.load(tmp_path / "rank0-of-1.pt", weights_only=False)
    ranks = [torch.load(tmp_path / f"rank{r}-of-2.pt", weights_only=False) for r in (0, 1)]
    assert ranks[0]["world"] == 2 and single["world"] == 1
    assert single["weights"] and set(single["weights"]) == set(ranks[0]["weights"])
    for name, want in single["weights"].items():
        for rank in ranks:
            torch.testing.assert_close(rank["weights"][name], want, rtol=1e-4, atol=1e-5, msg=name)
    moved = max(float((single["weights"][n] - single["start"][n]).abs().max()) for n in single["weights"])
    assert moved > 1e-3, "the step must move the LoRA weights by more than the tolerance"
    for key in ("env/reward_mean", "objective/kl", "loss/policy"):  # metrics: means over the processes
        assert ranks[0]["metrics"][key] == ranks[1]["metrics"][key]
    assert abs(ranks[0]["metrics"]["env/reward_mean"] - single["metrics"]["env/reward_mean"]) < 1e-6


def test_single_process_helpers_are_the_identity():
    assert rank_and_world() == (0, 1)
    param = torch.nn.Parameter(torch.ones(3))
    param.grad = torch.full((3,), 2.0)
    assert average_gradients([param])[0].grad.tolist() == [2.0, 2.0, 2.0]
    metrics = {"step": 3, "loss": 0.5}
    assert mean_over_ranks(metrics) is metrics
    x, mask = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]]), torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    mean, var = masked_moments(x, mask)
    torch.testing.assert_close(mean, torch.tensor(3.0))
    torch.testing.assert_close(var, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]).var())


def test_torchrun_two_processes_runs_the_ppo_tiny_config(tmp_path):
    config = yaml.safe_load((REPO_ROOT / "configs" / "train" / "ppo_tiny.yaml").read_text())
    path = tmp_path / "ppo_tiny.yaml"
    path.write_text(yaml.safe_dump({**config, "output_dir": str(tmp_path / "out"), "steps": 1}))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "rlxf.train", "ppo", "--config", str(path)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["processes"] == 2  # torch.distributed inside saw both processes (gloo)
    assert len((tmp_path / "out" / "run" / "metrics.jsonl").read_text().splitlines()) == 1  # process 0 writes
