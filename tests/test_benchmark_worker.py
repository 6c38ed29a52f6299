"""benchmarks/workers/rlxf_worker.py runs end to end on tiny-llama (a broken settings object once stopped the benchmark
before its first update, and nothing in the suite noticed)."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks.workers import rlxf_worker
from benchmarks.workers.settings import BenchSettings
from rlxf.algos.ppo import PPOSettings

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_the_rlxf_worker_makes_its_updates_on_a_tiny_model():
    settings = dataclasses.asdict(BenchSettings(model="tiny-llama", updates=2, threads=1, max_new_tokens=4,
                                                eval_samples=1, dtype="fp32"))
    record = rlxf_worker.run(settings, seed=0)
    assert len(record["updates"]) == 2 and all(u["seconds"] > 0 for u in record["updates"])
    # the update's matmul ceiling runs the last update's counted FLOPs for one epoch
    ceiling, last = record["update_ceiling"], record["updates"][-1]
    assert ceiling["gflops"] > 0 and ceiling["flops"] * 4 == last["update_flops"]  # ppo_epochs = 4


def test_no_gradient_clipping_is_none_and_an_infinite_clip_is_refused():
    assert PPOSettings(max_grad_norm=None).max_grad_norm is None
    with pytest.raises(ValueError, match="max_grad_norm"):
        PPOSettings(max_grad_norm=float("inf"))
    with pytest.raises(ValueError, match="max_grad_norm"):
        PPOSettings(max_grad_norm=0.0)
