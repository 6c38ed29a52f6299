"""Equal-budget races between RL algorithms: the same held-out check at the same reply counts, seconds to a target.

`HeldOutCheck` samples one reply per held-out prompt from a policy (one seed for every policy, so the base and each
policy are sampled the same way), scores it and pairs it with the base's rewards: the mean gain, its paired 95% CI,
and whether the target (gain >= `target` with the CI above 0) is met. `ppo_with_checks` runs rlxf's PPO in chunks
with a check after each; `train_trl(..., check=...)` (rlxf.algos.trl_online) checks TRL's GRPO and RLOO the same way.
The time a check takes is kept out of the training seconds, so `seconds_to_target` compares training time alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rlxf.analysis.stats import compare_paired
from rlxf.eval.policy import sample

CHECK_COLUMNS = ("check_gain", "check_low", "check_high", "check_met", "check_s")
"""the columns a check adds to a history row: gain, its paired 95% CI, target met, the check's own seconds"""


@dataclass
class HeldOutCheck:
    """One sampled reply per held-out prompt, scored and paired with the base's rewards on the same prompts."""

    tokenizer: object
    """the policy's tokenizer"""
    prompts: Sequence[str]
    """the held-out prompts (formatted as the policy reads them)"""
    reward_fn: Callable
    """reward_fn(prompts, completions) -> one number per reply"""
    base_rewards: Sequence[float]
    """the base policy's rewards on the same prompts, sampled with the same settings (e.g. `policy_report`'s)"""
    max_new_tokens: int = 32
    """most tokens per reply"""
    temperature: float = 0.7
    """sampling temperature"""
    seed: int = 0
    """sampling seed (and the bootstrap's)"""
    batch_size: int = 8
    """replies sampled at once (policy_report's default: the same replies as a report with the same seed)"""
    dtype: str = "auto"
    """compute precision of sampling"""
    target: float = 1.0
    """the gain a policy must reach, with its paired 95% CI above 0"""

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.base_rewards) or not len(self.prompts):
            raise ValueError(f"HeldOutCheck needs one base reward per held-out prompt: got {len(self.prompts)} prompts "
                             f"and {len(self.base_rewards)} base rewards")

    def score(self, rewards: Sequence[float]) -> dict:
        """A policy's rewards on the held-out prompts -> the check's columns (without check_s)."""
        test = compare_paired(np.asarray(rewards, dtype=float), np.asarray(self.base_rewards, dtype=float),
                              seed=self.seed)
        return {"check_gain": test["diff"], "check_low": test["diff_low"], "check_high": test["diff_high"],
                "check_met": bool(test["diff"] >= self.target and test["diff_low"] > 0)}

    def __call__(self, model, adapter: str | None) -> dict:
        """Sample from `adapter` of `model`, score, pair with the base -> the check's columns."""
        start = time.perf_counter()
        _, _, texts = sample(model, self.tokenizer, list(self.prompts), adapter=adapter,
                             max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=self.seed,
                             batch_size=self.batch_size, dtype=self.dtype)
        row = self.score(self.reward_fn(list(self.prompts), texts))
        return {**row, "check_s": time.perf_counter() - start}


def ppo_with_checks(trainer, prompts: Sequence[str], reward_fn: Callable, steps: int, check_steps: Sequence[int],
                    check: Callable | None) -> pd.DataFrame:
    """rlxf PPO for `steps` steps, checked after each step in `check_steps` -> the history (one row per step).

    The history has `seconds` (cumulative generation, scoring and update time: checks excluded) and the check's
    columns on the checked steps. Runs resume like `PPOTrainer.train(resume="auto")`.
    """
    stops = sorted({int(s) for s in check_steps if 0 < int(s) < steps} | {int(steps)})
    checks = {}
    for stop in stops:
        trainer.train(prompts, reward_fn, steps=stop, resume="auto")
        if check is not None and stop in check_steps:
            checks[stop] = check(trainer.model, trainer.adapter_name)
    history = pd.DataFrame(trainer.history)
    history["seconds"] = history[["time/generation_s", "time/scoring_s", "time/update_s"]].sum(axis=1).cumsum()
    return with_checks(history, checks)


def with_checks(history: pd.DataFrame, checks: dict[int, dict]) -> pd.DataFrame:
    """`history` (a `step` column) with the check columns filled on the checked steps (NaN elsewhere)."""
    history = history.copy()
    for column in CHECK_COLUMNS:
        history[column] = [checks.get(int(step), {}).get(column, np.nan) for step in history.step]
    return history


def check_rows(history: pd.DataFrame) -> pd.DataFrame:
    """The checked rows of a history (none when it has no check columns)."""
    if "check_gain" not in history:
        return history.iloc[:0]
    return history[history.check_gain.notna()]


def seconds_to_target(history: pd.DataFrame) -> float | None:
    """Training seconds at the first check that met the target -> None when no check met it."""
    met = history[history.check_met.eq(True)]
    return None if met.empty else float(met.seconds.iloc[0])
