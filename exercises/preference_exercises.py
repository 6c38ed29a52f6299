"""Exercise: write the Bradley-Terry reward-model loss and the DPO loss.

Fill in each `raise NotImplementedError  # TODO`, then run `pytest exercises/` from the repository root: the tests
compare your functions with rlxf's own (`rlxf.rewards.bradley_terry.bradley_terry_loss`, `rlxf.algos.dpo.dpo_loss`)
on random inputs. The equations are in the Concept cells of notebooks 03 and 08; the answers are in
`exercises/solutions/preference_exercises.py`.
"""

from __future__ import annotations

import torch


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Per pair: -log P(chosen preferred) = -log sigmoid(r_chosen - r_rejected).

    Hint: `torch.nn.functional.logsigmoid` is stable where log(sigmoid(x)) underflows (try x = -200).
    """
    raise NotImplementedError  # TODO


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
    """Per pair: -log sigmoid(beta * (h_chosen - h_rejected)), h(y) = log pi(y|x) - log pi_ref(y|x).

    Arguments are sequence log-probabilities (summed over a reply's tokens), one per pair.
    """
    raise NotImplementedError  # TODO
