"""Exercise: write PPO's generalised advantage estimation and clipped policy loss.

Fill in each `raise NotImplementedError  # TODO`, then run `pytest exercises/` from the repository root: the tests
compare your functions with rlxf's own (`rlxf.algos.ppo.gae`, `rlxf.algos.ppo.policy_loss`) on random batches.
The equations are in notebook 04's Concept cell; the answers are in `exercises/solutions/ppo_exercises.py`.

Tensors are [batch, response_len]; `mask` is 1 on real response tokens and 0 on the right padding.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is 1 (given, not an exercise)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def gae(values: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation -> (advantages, returns), both 0 on padding.

    delta_t = r_t + gamma * V_{t+1} - V_t  (V after the last real token is 0: the episode ends there)
    A_t = delta_t + gamma * lam * A_{t+1}, computed backwards from the last token; returns R_t = A_t + V_t.
    Hint: multiply values and rewards by the mask first, then one loop over t from the end.
    """
    raise NotImplementedError  # TODO


def policy_loss(logprobs, old_logprobs, advantages, mask, cliprange: float) -> torch.Tensor:
    """PPO's clipped surrogate loss (to minimise), the mean over real tokens of

    max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)),  ratio = exp(logprobs - old_logprobs).
    Why max of the negatives: it is -min(A * ratio, A * clip(...)), the pessimistic bound of the paper.
    """
    raise NotImplementedError  # TODO
