"""What identifies a run: settings fields marked on the settings, checkpoints of older rlxf versions still resuming,
and (identity by content) the reward, the model's weights, an explicit checkpoint from elsewhere, one trainer per
output_dir."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rlxf.algos.ppo import PPOSettings
from rlxf.infra.checkpoint import settings_identity, write_manifest
from rlxf.selfplay import SelfPlaySettings
from tests.test_faults import PROMPTS, assert_same_history, toy_reward, trainer

pytestmark = [pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`:UserWarning"),
              pytest.mark.usefixtures("one_thread")]  # one_thread: tests/conftest.py

# What rlxf before identity-on-the-settings left out of a run's identity (rlxf.infra.checkpoint.NOT_IDENTITY).
OLD_NOT_IDENTITY = {"output_dir", "progress_bar", "report_to", "log_with_tensorboard", "checkpoint_every",
                    "keep_checkpoints", "snapshot_every", "rounds"}


def test_the_settings_say_which_fields_identify_a_run():
    for settings in (PPOSettings(), SelfPlaySettings()):
        everything = dataclasses.asdict(settings)
        identity = settings_identity(settings)
        assert set(identity) == set(everything) - OLD_NOT_IDENTITY, type(settings).__name__
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
