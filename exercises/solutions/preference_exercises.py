"""The preference losses, filled in: Bradley-Terry's and DPO's (reference solutions).

Compare with `rlxf.rewards.bradley_terry.bradley_terry_loss` and `rlxf.algos.dpo.dpo_loss` (the Concept cells of
notebooks 03 and 08 have the equations).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Per pair: -log P(chosen preferred) = -log sigmoid(r_chosen - r_rejected)."""
    return -F.logsigmoid(chosen_rewards - rejected_rewards)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
    """Per pair: -log sigmoid(beta * (h_chosen - h_rejected)), h(y) = log pi(y|x) - log pi_ref(y|x).

    Arguments are sequence log-probabilities (summed over a reply's tokens), one per pair.
    """
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)
