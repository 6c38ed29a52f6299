"""The equal-budget race of notebook 04: held-out checks at the same reply counts, their time kept out of training."""

import time

import numpy as np
import pandas as pd
import pytest

from rlxf.algos.ppo import PPOSettings, PPOTrainer
from rlxf.algos.race import HeldOutCheck, check_rows, ppo_with_checks, seconds_to_target
from rlxf.algos.trl_online import TRLSettings, train_trl
from rlxf.eval.policy import policy_report
from rlxf.lm.models import load_causal_lm

PROMPTS = ["Propose a condition:", "The fiscal target is", "Describe the reform.", "Another one:"]


def length_reward(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]


def test_score_pairs_with_the_base_and_needs_the_ci_above_zero():
    check = HeldOutCheck(None, PROMPTS, length_reward, base_rewards=[1.0, 2.0, 3.0, 4.0], target=1.0)
    up = check.score([3.0, 4.0, 5.5, 6.0])  # +2, +2, +2.5, +2
    assert up["check_gain"] == pytest.approx(2.125) and up["check_low"] > 0 and up["check_met"]
    mixed = check.score([4.0, 0.0, 6.0, 2.0])  # +3, -2, +3, -2: the mean gain is 0.5
    assert not mixed["check_met"] and mixed["check_low"] < 0
    with pytest.raises(ValueError, match="one base reward per held-out prompt"):
        HeldOutCheck(None, PROMPTS, length_reward, base_rewards=[1.0])


def test_a_check_samples_as_policy_report_does():
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    base = policy_report(model, tokenizer, PROMPTS, length_reward, adapter=None, max_new_tokens=5, seed=3)
    check = HeldOutCheck(tokenizer, PROMPTS, length_reward, base.reward.to_numpy(), max_new_tokens=5, seed=3)
    row = check(model, None)  # the base again: the same replies, a gain of exactly 0
    assert row["check_gain"] == 0.0 and not row["check_met"] and row["check_s"] > 0


def test_checks_leave_ppo_training_unchanged_and_out_of_its_seconds():
    def run(check_steps, check):
        model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
        settings = PPOSettings(batch_size=2, max_new_tokens=4, ppo_epochs=1, checkpoint_every=0, seed=0,
                               progress_bar=False)
        trainer = PPOTrainer(model, tokenizer, settings, adapter_name="race")
        return ppo_with_checks(trainer, PROMPTS, length_reward, 3, check_steps, check), tokenizer

    plain, tokenizer = run([], None)
    calls = []

    def slow_check(model, adapter):
        calls.append(adapter)
        time.sleep(0.3)
        return {"check_gain": 1.5, "check_low": 0.5, "check_high": 2.5, "check_met": True, "check_s": 0.3}

    checked, _ = run([1, 2], slow_check)
    assert calls == ["race", "race"]
    assert checked["env/reward_mean"].tolist() == plain["env/reward_mean"].tolist()  # checks fork the RNG
    assert checked.check_gain.notna().tolist() == [True, True, False]
    assert list(check_rows(checked).step) == [1, 2] and check_rows(plain).empty
    assert checked.seconds.is_monotonic_increasing and seconds_to_target(checked) == checked.seconds.iloc[0]
    assert seconds_to_target(plain) is None


def test_trl_checks_every_n_steps_and_their_time_is_not_training_time(tmp_path):
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    settings = TRLSettings(steps=3, prompts_per_step=2, num_generations=2, max_new_tokens=4, check_every=1,
                           lora_target_modules="all-linear", output_dir=str(tmp_path))
    seen = []

    def slow_check(model, adapter):
        seen.append(adapter)
        time.sleep(1.0)
        return {"check_gain": 0.5, "check_met": False}

    start = time.perf_counter()
    _, history = train_trl("grpo", model, tokenizer, {"prompt": PROMPTS}, length_reward, settings, check=slow_check)
    wall = time.perf_counter() - start
    assert seen == ["default", "default"]  # after steps 1 and 2; the last step's check is the caller's final report
    assert history.check_gain.notna().tolist() == [True, True, False]
    assert history.seconds.iloc[-1] < wall - 2.0  # the two seconds of checks are not training seconds
    assert seconds_to_target(history) is None
    with pytest.raises(ValueError, match="check_every"):
        TRLSettings(check_every=-1)


def test_seconds_to_target_reads_the_first_met_check():
    frame = pd.DataFrame({"seconds": [10.0, 20.0, 30.0], "check_met": [False, True, True]})
    assert seconds_to_target(frame) == 20.0
    assert seconds_to_target(frame.assign(check_met=[np.nan, False, np.nan])) is None
