"""The control of self-play (`SelfPlaySettings.reward_mode`): its rewards are really constant or shuffled, and a
control run differs from the trained one only in the reward PPO sees."""

from __future__ import annotations

import zlib
from collections import Counter

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model

from rlxf.infra.identity import fingerprint_differences
from rlxf.lm.models import load_causal_lm
from rlxf.selfplay.control import CONSTANT_RATING, REWARD_MODES, control_ratings, derangement
from rlxf.selfplay.generated_rater import GeneratedRater


def test_derangement_moves_every_item_and_is_seeded():
    for n in range(2, 9):
        order = derangement(n, np.random.default_rng(n))
        assert sorted(order) == list(range(n)) and not np.any(order == np.arange(n))
    assert list(derangement(6, np.random.default_rng(3))) == list(derangement(6, np.random.default_rng(3)))
    with pytest.raises(ValueError, match="n must be >= 2"):
        derangement(1, np.random.default_rng(0))


def test_control_ratings_rating_constant_and_shuffled():
    ratings = [10.0, 20.0, 30.0, 40.0, 55.0, 65.0, 75.0, 85.0]
    speakers = ["dem", "rep"] * 4
    assert control_ratings(ratings, speakers, "rating", seed=[0, 0]) == ratings
    constant = control_ratings(ratings, speakers, "constant", seed=[0, 0])
    assert constant == [CONSTANT_RATING] * 8 and GeneratedRater.normalise(CONSTANT_RATING) == 0.0
    for seed in range(20):
        shuffled = control_ratings(ratings, speakers, "shuffled", seed=[seed, 1])
        for name in ("dem", "rep"):  # each bot keeps its own ratings (same mean and spread), none on its own reply
            own = [i for i, s in enumerate(speakers) if s == name]
            assert Counter(shuffled[i] for i in own) == Counter(ratings[i] for i in own)
            assert all(shuffled[i] != ratings[i] for i in own)
    assert control_ratings(ratings, speakers, "shuffled", seed=[4, 2]) == control_ratings(
        ratings, speakers, "shuffled", seed=[4, 2])
    with pytest.raises(ValueError, match="at least 2 replies of 'rep'"):
        control_ratings([1.0, 2.0, 3.0], ["dem", "dem", "rep"], "shuffled", seed=[0])
    with pytest.raises(ValueError, match="reward_mode must be one of"):
        control_ratings(ratings, speakers, "random", seed=[0])


def test_settings_check_the_reward_mode():
    from rlxf.selfplay import SelfPlaySettings

    assert SelfPlaySettings().reward_mode == "rating"
    with pytest.raises(ValueError, match="reward_mode must be one of"):
        SelfPlaySettings(reward_mode="none")
    with pytest.raises(ValueError, match="at least 2 replies per bot"):
        SelfPlaySettings(reward_mode="shuffled", debates_per_round=1, max_exchanges=1)


def control_trainer(reward_mode, output_dir=None):
    """A two-bot trainer on tiny-llama whose rater's rating depends on the text, so ratings differ between replies."""
    from rlxf.algos.ppo import PPOSettings
    from rlxf.selfplay import SelfPlaySettings, SelfPlayTrainer

    torch.set_num_threads(1)
    model, tokenizer = load_causal_lm("tiny-llama")
    torch.manual_seed(0)
    for index, name in enumerate(("dem", "rep")):
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        model = get_peft_model(model, config, adapter_name=name) if index == 0 else model
        if index:
            model.add_adapter(name, config)
    rater = GeneratedRater(lambda prompt, adapter: str(1 + zlib.crc32(prompt.encode()) % 100))
    ppo = PPOSettings(batch_size=2, ppo_epochs=1, max_new_tokens=4, learning_rate=1e-2, progress_bar=False)
    settings = SelfPlaySettings(rounds=2, debates_per_round=2, max_exchanges=1, progress_bar=False,
                                reward_mode=reward_mode, output_dir=None if output_dir is None else str(output_dir))
    return SelfPlayTrainer(model, tokenizer, ppo, settings, names=("dem", "rep"), rater=rater)


def test_control_runs_differ_from_the_trained_run_only_in_the_reward():
    trainers, rounds = {}, {}
    for mode in REWARD_MODES:
        trainers[mode] = control_trainer(mode)
        torch.manual_seed(1)  # sampling draws from the global generator
        rounds[mode] = trainers[mode].play_round()
    transcripts, turns = rounds["rating"]
    for mode in REWARD_MODES:  # the same debates, replies and ratings...
        assert rounds[mode][0] == transcripts
        for name in ("dem", "rep"):
            for (q, r, _), (q2, r2, _) in zip(turns[name], rounds[mode][1][name], strict=True):
                assert torch.equal(q, q2) and torch.equal(r, r2)
    fingerprints = {mode: trainer.fingerprint for mode, trainer in trainers.items()}
    for mode in ("shuffled", "constant"):  # ...and the same run but for the reward mode
        differ = fingerprint_differences(fingerprints["rating"], fingerprints[mode])
        assert len(differ) == 1 and differ[0].startswith("settings.reward_mode"), differ
    rows = [row for transcript in transcripts for row in transcript]
    for name in ("dem", "rep"):
        ratings = [GeneratedRater.normalise(row["rating_by_other"]) for row in rows if row["speaker"] == name]
        assert len(set(ratings)) > 1, "the test rater should give different ratings"
        rewards = {mode: [reward for _, _, reward in rounds[mode][1][name]] for mode in REWARD_MODES}
        assert rewards["rating"] == pytest.approx(ratings)
        assert rewards["constant"] == [0.0] * len(ratings)
        assert sorted(rewards["shuffled"]) == pytest.approx(sorted(ratings))
        assert all(s != pytest.approx(r) for s, r in zip(rewards["shuffled"], ratings, strict=True))


def test_a_control_run_trains_and_logs_its_ratings(tmp_path):
    from rlxf.selfplay import read_history

    trainer = control_trainer("constant", tmp_path)
    history = trainer.train()
    assert read_history(tmp_path) == history and len(history) == 2
    for row in history:  # the ratings are measured as in training; the reward PPO saw was 0
        for name in ("dem", "rep"):
            assert 1.0 <= row[f"{name}/rating_received"] <= 100.0
            assert row[f"{name}/env/reward_mean"] == pytest.approx(0.0)


def test_a_bots_replies_sample_with_a_new_seed_each(monkeypatch):
    import rlxf.selfplay.env as env
    from rlxf.selfplay import Bot

    seen = []
    monkeypatch.setattr(env, "generate", lambda model, tokenizer, prompts, seed, **kw: seen.append(seed) or ["hi"])
    monkeypatch.setattr(env, "using_adapter", lambda model, adapter: torch.no_grad())
    bot = Bot.from_adapter("dem", None, None, "dem", do_sample=True, seed=7)
    twin = Bot.from_adapter("dem", None, None, "dem", do_sample=True, seed=7)
    for _ in range(3):
        bot.reply_fn("same prompt")
    twin.reply_fn("same prompt")
    assert seen == [7, 8, 9, 7]  # a fresh draw per reply; a twin bot replays the same seeds


def test_paired_differences_subtract_the_control_seed_by_seed():
    from rlxf.selfplay.control import paired_differences

    def result(change, dem, rep):
        return {"ΔW relative change": change, "rating slope per round": {"dem": dem, "rep": rep}}

    trained = {0: result(0.04, 1.0, -1.0), 1: result(0.03, 2.0, 0.0), 2: result(0.05, 0.0, 0.0)}
    control = {0: result(0.01, 0.5, 0.5), 1: result(0.02, -1.0, 1.0)}
    diff = paired_differences(trained, control, ["dem", "rep"])
    assert sorted(diff) == [0, 1]  # seed 2 has no control
    assert diff[0] == pytest.approx({"ΔW relative change": 0.03, "dem: rating slope": 0.5, "rep: rating slope": -1.5,
                                     "rating slope, both bots": -0.5})
    assert diff[1]["rating slope, both bots"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no seed in both"):
        paired_differences({5: trained[0]}, control, ["dem", "rep"])
