"""The exercises against rlxf's own functions on random inputs.

`pytest exercises/` tests your fill-ins (`exercises/*_exercises.py`): it fails until every blank is filled correctly.
`RLXF_EXERCISES=solutions pytest exercises/` tests the reference solutions instead (`make test` does, through
`tests/test_exercises.py`). The suite's default `testpaths` (pyproject: `tests`) never collects this folder.
"""

from __future__ import annotations

import importlib
import os

import pytest
import torch

from rlxf.algos import dpo, ppo
from rlxf.rewards import bradley_terry

VARIANTS = {"blanks": "exercises", "solutions": "exercises.solutions"}
VARIANT = os.environ.get("RLXF_EXERCISES", "blanks")
if VARIANT not in VARIANTS:
    raise ValueError(f"RLXF_EXERCISES must be one of {sorted(VARIANTS)}, got {VARIANT!r}")


def _module(name: str):
    return importlib.import_module(f"{VARIANTS[VARIANT]}.{name}")


def _batch(seed: int, batch: int = 4, length: int = 7):
    """Random per-token tensors and a right-padded mask (every row keeps at least one token)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=generator)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).float()

    def draw():
        return torch.randn(batch, length, generator=generator, dtype=torch.float64)

    return draw, mask


@pytest.mark.parametrize("seed", range(5))
def test_gae_matches_rlxf(seed):
    draw, mask = _batch(seed)
    values, rewards = draw(), draw()
    gamma, lam = [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0), (0.99, 0.0), (0.5, 0.8)][seed]
    advantages, returns = _module("ppo_exercises").gae(values, rewards, mask, gamma, lam)
    expected_advantages, expected_returns = ppo.gae(values, rewards, mask, gamma, lam)
    torch.testing.assert_close(advantages, expected_advantages, msg=lambda m: f"gae's advantages (gamma {gamma}, "
                               f"lam {lam}) differ from rlxf.algos.ppo.gae: {m}")
    torch.testing.assert_close(returns, expected_returns, msg=lambda m: f"gae's returns differ from rlxf's: {m}")


@pytest.mark.parametrize("seed", range(5))
def test_policy_loss_matches_rlxf(seed):
    draw, mask = _batch(seed)
    old_logprobs, advantages = -draw().abs(), draw()
    logprobs = old_logprobs + 0.5 * draw()  # ratios from about 0.2 to 5: many are clipped
    cliprange = [0.2, 0.1, 0.3, 0.05, 0.5][seed]
    loss = _module("ppo_exercises").policy_loss(logprobs, old_logprobs, advantages, mask, cliprange)
    expected, clipfrac, _ = ppo.policy_loss(logprobs, old_logprobs, advantages, mask, cliprange)
    assert clipfrac > 0, "the random ratios should hit the clip somewhere (the test would not test it)"
    torch.testing.assert_close(torch.as_tensor(loss), expected, msg=lambda m: f"policy_loss (cliprange {cliprange}) "
                               f"differs from rlxf.algos.ppo.policy_loss: {m}")


@pytest.mark.parametrize("seed", range(3))
def test_bradley_terry_loss_matches_rlxf(seed):
    generator = torch.Generator().manual_seed(seed)
    chosen, rejected = 3 * torch.randn(2, 16, generator=generator, dtype=torch.float64)
    chosen[0], rejected[0] = -100.0, 100.0  # a far-off pair: log(sigmoid(-200)) underflows, logsigmoid does not
    loss = _module("preference_exercises").bradley_terry_loss(chosen, rejected)
    torch.testing.assert_close(loss, bradley_terry.bradley_terry_loss(chosen, rejected),
                               msg=lambda m: f"bradley_terry_loss differs from rlxf's (per pair, no mean): {m}")


@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0])
def test_dpo_loss_matches_rlxf(beta):
    generator = torch.Generator().manual_seed(int(beta * 100))
    logps = -20 * torch.rand(4, 16, generator=generator, dtype=torch.float64)
    loss = _module("preference_exercises").dpo_loss(*logps, beta=beta)
    torch.testing.assert_close(loss, dpo.dpo_loss(*logps, beta=beta),
                               msg=lambda m: f"dpo_loss (beta {beta}) differs from rlxf.algos.dpo.dpo_loss: {m}")
