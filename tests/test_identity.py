"""What identifies a run: settings fields marked on the settings, checkpoints of older rlxf versions still resuming,
and (identity by content) the reward, the model's weights, an explicit checkpoint from elsewhere, one trainer per
output_dir."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from rlxf.algos.ppo import PPOSettings
from rlxf.infra.checkpoint import OutputDirInUse, RunMismatch, write_manifest
from rlxf.infra.identity import identity_of, sampled_weights_hash, settings_identity
from rlxf.selfplay import SelfPlaySettings
from tests.test_faults import PROMPTS, assert_same_history, settings, toy_reward, trainer

pytestmark = [pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`:UserWarning"),
              pytest.mark.usefixtures("one_thread")]  # one_thread: tests/conftest.py

# What rlxf before identity-on-the-settings left out of a run's identity (rlxf.infra.checkpoint.NOT_IDENTITY).
OLD_NOT_IDENTITY = {"output_dir", "progress_bar", "report_to", "log_with_tensorboard", "checkpoint_every",
                    "keep_checkpoints", "snapshot_every", "rounds"}


def test_the_settings_say_which_fields_identify_a_run():
    for defaults in (PPOSettings(), SelfPlaySettings()):
        everything = dataclasses.asdict(defaults)
        identity = settings_identity(defaults)
        assert set(identity) == set(everything) - OLD_NOT_IDENTITY, type(defaults).__name__
    changed = dataclasses.replace(PPOSettings(), output_dir="/elsewhere", progress_bar=False, checkpoint_every=7)
    assert settings_identity(changed) == settings_identity(PPOSettings())
    assert settings_identity(dataclasses.replace(PPOSettings(), seed=1)) != settings_identity(PPOSettings())


def old_fingerprint(state: dict, run) -> dict:
    """The fingerprint as rlxf wrote it before identity by content (the dict shape of that code, rebuilt by hand)."""
    settings = {key: value for key, value in state["config"].items() if key not in OLD_NOT_IDENTITY}
    return {"kind": "PPO", "settings": json.loads(json.dumps(settings)),
            "model": {"name": "", "architecture": run.fingerprint["model"]["architecture"]},
            "adapter": {"name": "default", "reference": None, "start": "new"},
            "data": {"prompts": run.fingerprint["data"]["prompts"], "n_prompts": len(PROMPTS), "batch_size": 4,
                     "reward_fn": "reward_fn"}}


@pytest.mark.parametrize("resume", [True, "auto"])
def test_a_checkpoint_with_the_old_fingerprint_still_resumes(tmp_path, resume):
    run, reward_fn = trainer(tmp_path, max_new_tokens=2)
    history = run.train(PROMPTS, reward_fn, steps=2)
    state_file = tmp_path / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["fingerprint"] = old_fingerprint(state, run)
    state_file.write_text(json.dumps(state, indent=1))
    write_manifest(tmp_path / "checkpoint-2")
    again, _ = trainer(tmp_path, max_new_tokens=2)
    resumed = again.train(PROMPTS, toy_reward(again.tokenizer), steps=3, resume=resume)
    assert [row["step"] for row in resumed] == [1, 2, 3]
    assert_same_history(resumed[:2], history)
    assert not list(tmp_path.parent.glob(f"{tmp_path.name}.old-*"))  # the same run: nothing moved aside


# --------------------------------------------------------------------------------------------- identity by content


class Scorer:
    """A reward object whose attribute decides its scores."""

    def __init__(self, sign: float):
        self.sign = sign

    def __call__(self, prompts, completions):
        return [self.sign * 0.5] * len(completions)


def test_rewards_are_identified_by_their_content():
    from rlxf.lm.models import load_classifier
    from rlxf.rewards import ClassifierReward, ConstantReward, Evaluator, HTTPJudge

    assert identity_of(lambda p, c: [1.0] * len(c)) != identity_of(lambda p, c: [-1.0] * len(c))
    assert identity_of(Scorer(+1)) != identity_of(Scorer(-1)) and identity_of(Scorer(1)) == identity_of(Scorer(1))
    assert identity_of(ConstantReward(0.0)) != identity_of(ConstantReward(1.0))
    assert identity_of(toy_reward(None)) == identity_of(toy_reward(None, delay_s=1.0))  # closures: by their code

    def judged(url="https://judge.example/v1", criteria=("Is it kind?",)):
        return Evaluator(HTTPJudge(url, "some-model"), lambda texts: [0.5] * len(texts), list(criteria))

    assert identity_of(judged()) == identity_of(judged())
    assert identity_of(judged()) != identity_of(judged(url="https://other.example/v1"))
    assert identity_of(judged()) != identity_of(judged(criteria=("Is it short?",)))
    model, tokenizer = load_classifier("tiny-bert")
    before = identity_of(ClassifierReward(model, tokenizer))
    with torch.no_grad():
        model.classifier.weight.add_(0.1)
    assert identity_of(ClassifierReward(model, tokenizer)) != before
    json.dumps([before, identity_of(judged())])  # plain JSON data, as a checkpoint stores it


def test_a_run_with_another_reward_is_not_continued(tmp_path):
    from rlxf.rewards import ConstantReward

    run, _ = trainer(tmp_path, max_new_tokens=2)
    run.train(PROMPTS, ConstantReward(0.0), steps=2)
    again, _ = trainer(tmp_path, max_new_tokens=2)
    with pytest.raises(RunMismatch, match=r"data.reward.value: 0.0 \(checkpoint\) vs 1.0 \(this run\)"):
        again.train(PROMPTS, ConstantReward(1.0), steps=3, resume=True)
    with pytest.warns(UserWarning, match=r"another PPO run \(data.reward.value: 0.0"):
        assert len(again.train(PROMPTS, ConstantReward(1.0), steps=1, resume="auto")) == 1


def test_a_model_with_other_weights_does_not_continue_the_run(tmp_path):
    from rlxf.algos.ppo import PPOTrainer
    from rlxf.lm.models import load_causal_lm

    models = {}
    for name in ("a/policy", "b/policy"):
        models[name], tokenizer = load_causal_lm("tiny-llama", device="cpu")
        models[name].config._name_or_path = name  # the same last part: "policy"
    with torch.no_grad():
        models["b/policy"].model.layers[0].mlp.up_proj.weight.mul_(1.5)
    PPOTrainer(models["a/policy"], tokenizer, settings(tmp_path, max_new_tokens=2)).train(
        PROMPTS, toy_reward(tokenizer), steps=1)
    other = PPOTrainer(models["b/policy"], tokenizer, settings(tmp_path, max_new_tokens=2))
    with pytest.raises(RunMismatch, match=r"model.weights: '[0-9a-f]{16}' \(checkpoint\) vs"):
        other.train(PROMPTS, toy_reward(tokenizer), steps=2, resume=True)


def test_the_weights_sample_is_the_same_after_frozen_weights_go_to_bf16():
    from rlxf.lm.models import load_causal_lm
    from rlxf.lm.precision import precision, store_frozen_weights

    model, _ = load_causal_lm("tiny-llama", device="cpu")
    model.requires_grad_(False)
    before = sampled_weights_hash(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without it: emulated, and said so
        store_frozen_weights(model, precision("bf16", "cpu"))
    assert model.lm_head.weight.dtype == torch.bfloat16  # converted, and untied from the fp32 embedding
    assert sampled_weights_hash(model) == before


# --------------------------------------------------------------------------------------------- the output_dir


def test_resuming_a_checkpoint_of_another_directory_moves_the_run_there_aside(tmp_path):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    run_a, reward_fn = trainer(a_dir, max_new_tokens=2)
    history_a = run_a.train(PROMPTS, reward_fn, steps=2)
    trainer(b_dir, max_new_tokens=2, seed=8)[0].train(PROMPTS, reward_fn, steps=2)
    b_metrics = (b_dir / "metrics.jsonl").read_text()
    again, _ = trainer(b_dir, max_new_tokens=2)
    with pytest.warns(UserWarning, match=r"held an earlier PPO run; moved it to .*b\.old-"):
        resumed = again.train(PROMPTS, reward_fn, steps=3, resume=a_dir / "checkpoint-2")
    assert_same_history(resumed[:2], history_a)
    (old,) = tmp_path.glob("b.old-*")
    assert (old / "metrics.jsonl").read_text() == b_metrics  # run B whole, nothing mixed into it
    assert [p.name for p in old.glob("checkpoint-*")] == ["checkpoint-2"]
    assert [p.name for p in b_dir.glob("checkpoint-*")] == ["checkpoint-3"]
    assert [json.loads(line)["step"] for line in (b_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    trainer(b_dir, max_new_tokens=2)[0].train(PROMPTS, reward_fn, steps=3, resume=b_dir / "checkpoint-3")
    assert len(list(tmp_path.glob("b.old-*"))) == 1  # a checkpoint of output_dir's own run moves nothing


def test_one_output_dir_has_one_live_trainer(tmp_path):
    lock = tmp_path.with_name(f"{tmp_path.name}.lock")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock.write_text(str(holder.pid))
        run, reward_fn = trainer(tmp_path, max_new_tokens=2)
        with pytest.raises(OutputDirInUse, match=rf"{tmp_path} is held by another live trainer \(pid {holder.pid}"):
            run.train(PROMPTS, reward_fn, steps=1)
        assert run.step_count == 0 and not (tmp_path / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    held = []

    def reward_while_held(prompts, completions):
        held.append(lock.read_text())
        return reward_fn(prompts, completions)

    run.train(PROMPTS, reward_while_held, steps=1)  # the holder is gone: its stale lock is taken over
    assert held == [str(os.getpid())] and not lock.exists()  # held during the run, released after it
