"""PPO's pieces, filled in: generalised advantage estimation and the clipped policy loss (reference solutions).

Tensors are [batch, response_len]; `mask` is 1 on real response tokens and 0 on the right padding.
Compare with `rlxf.algos.ppo.gae` and `rlxf.algos.ppo.policy_loss` (notebook 04's Concept cell has the equations).
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
    """
    values, rewards = values * mask, rewards * mask
    steps = values.shape[1]
    advantages = torch.zeros_like(values)
    next_advantage = torch.zeros_like(values[:, 0])
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(values[:, t])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = next_advantage
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(logprobs, old_logprobs, advantages, mask, cliprange: float) -> torch.Tensor:
    """PPO's clipped surrogate loss (to minimise), the mean over real tokens of

    max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)),  ratio = exp(logprobs - old_logprobs).
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    return masked_mean(torch.max(unclipped, clipped), mask)
