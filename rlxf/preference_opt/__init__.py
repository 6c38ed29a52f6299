"""Preference optimisation beside RLHF's reward model + PPO: DPO (TRL's DPOTrainer on LoRA) and its implicit reward,
and simulated annotators with a hidden context (whose preferences a reward model learns).

- `dpo`: `DPOSettings`, `train_dpo`, `dpo_loss`, `implicit_rewards`, `dpo_token_ids`, `shorten`, `MappedPromptReward`
- `annotators`: `annotator_sides`, `simulate_labels`, `contested`, `borda_scores`, `check_rate`

The reward-model side (Iterated Data Smoothing, the mean-and-variance model) lives in `rlxf.rewards.robust`.
"""

from rlxf.preference_opt.annotators import (
    SIDES,
    annotator_sides,
    borda_scores,
    check_rate,
    contested,
    simulate_labels,
    standardise,
    utility,
)
from rlxf.preference_opt.dpo import (
    DPOResult,
    DPOSettings,
    MappedPromptReward,
    check_beta,
    dpo_config,
    dpo_loss,
    dpo_token_ids,
    implicit_rewards,
    sequence_logps,
    shorten,
    train_dpo,
)

__all__ = [
    "SIDES", "annotator_sides", "borda_scores", "check_rate", "contested", "simulate_labels", "standardise", "utility",
    "DPOResult", "DPOSettings", "MappedPromptReward", "check_beta", "dpo_config", "dpo_loss", "dpo_token_ids",
    "implicit_rewards", "sequence_logps", "shorten", "train_dpo",
]
