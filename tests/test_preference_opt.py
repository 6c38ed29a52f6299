"""Notebook 08's machinery on tiny models: DPO's loss and implicit reward, IDS relabelling, the mean-and-variance
model, the simulated annotators with a hidden context, and the checks of bad pairs and bad parameters."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from rlxf.algos.dpo import (
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
from rlxf.lm.models import load_causal_lm, load_classifier
from rlxf.rewards.annotators import annotator_sides, borda_scores, check_rate, contested, simulate_labels
from rlxf.rewards.bradley_terry import PreferenceSettings, bradley_terry_loss, clean_pairs, score_pairs
from rlxf.rewards.robust import (
    ids_relabel,
    probit_preference_loss,
    score_mean_variance,
    train_ids_reward_model,
    train_mean_variance_model,
)

PAIRS = [
    {"prompt": "How do I pick a lock?\n", "chosen": "I can't help with that.", "rejected": "Use a tension wrench."},
    {"prompt": "Say something mean.\n", "chosen": "I'd rather be kind.", "rejected": "You are stupid."},
    {"prompt": "Hi!\n", "chosen": "Hello, how can I help?", "rejected": "Go away."},
    {"prompt": "Help me cheat.\n", "chosen": "Let's study instead.", "rejected": "Copy the answers."},
]


def test_dpo_loss_against_a_hand_computed_value():
    # h(chosen) = -1 - (-2) = 1, h(rejected) = -3 - (-2) = -1: beta * margin = 0.5 * 2 = 1
    loss = dpo_loss(torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -2.0]), torch.tensor([-2.0, -2.0]),
                    torch.tensor([-2.0, -2.0]), beta=0.5)
    assert loss[0].item() == pytest.approx(math.log(1 + math.exp(-1.0)))  # -log sigmoid(1) = 0.31326
    assert loss[1].item() == pytest.approx(math.log(2.0))  # no preference yet: log 2


@pytest.mark.parametrize("beta", [0.0, -0.1, float("nan"), float("inf"), "0.1", True])
def test_a_beta_outside_its_range_names_the_parameter(beta):
    with pytest.raises(ValueError, match="dpo_beta must be a finite number > 0"):
        check_beta(beta, "dpo_beta")
    with pytest.raises(ValueError, match="DPOSettings.beta"):
        DPOSettings(beta=beta)


@pytest.mark.parametrize("rate", [-0.1, 0.5, 1.2])
def test_a_noise_rate_outside_its_range_names_the_parameter(rate):
    with pytest.raises(ValueError, match=r"noise_rates must be in \[0, 0.5\)"):
        check_rate(rate, "noise_rates", high=0.5, high_open=True)
    assert check_rate(0.1, "noise_rates", high=0.5, high_open=True) == 0.1


def test_empty_and_identical_pairs_are_counted_dropped_and_said(capsys):
    bad = [*PAIRS, {"prompt": "x", "chosen": "  ", "rejected": "no"}, {"prompt": "x", "chosen": "same",
                                                                         "rejected": "same "}]
    kept, counts = clean_pairs(bad, what="training pairs")
    assert kept == PAIRS and counts == {"kept": 4, "empty": 1, "identical": 1}
    said = capsys.readouterr().out
    assert "training pairs: dropped 2 of 6 pairs (1 with an empty chosen or rejected text, 1 with identical" in said
    clean_pairs(PAIRS, what="clean")
    assert capsys.readouterr().out == ""


@pytest.fixture(scope="module")
def dpo_run():
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    settings = DPOSettings(beta=0.5, steps=2, batch_size=2, learning_rate=1e-2, max_length=64, dtype="fp32",
                           lora_target_modules="all-linear")
    return train_dpo(model, tokenizer, PAIRS, settings), tokenizer


def test_our_token_ids_are_trls(dpo_run):
    from datasets import Dataset
    from trl import DPOTrainer

    _, tokenizer = dpo_run
    model, _ = load_causal_lm("tiny-llama", device="cpu")
    dataset = Dataset.from_dict({k: [p[k] for p in PAIRS] for k in ("prompt", "chosen", "rejected")})
    reference, _ = load_causal_lm("tiny-llama", device="cpu")  # tiny-llama has no hub id for TRL to load it by
    trainer = DPOTrainer(model=model, ref_model=reference, train_dataset=dataset, processing_class=tokenizer,
                         args=dpo_config(DPOSettings(max_length=64, dtype="fp32"), "/tmp/rlxf-dpo-ids"))
    for pair, row in zip(PAIRS, trainer.train_dataset, strict=True):
        assert dpo_token_ids(tokenizer, pair["prompt"], pair["chosen"], pair["rejected"]) == (
            row["prompt_ids"], row["chosen_ids"], row["rejected_ids"])


def test_the_implicit_reward_is_zero_before_training_and_moves_after(dpo_run):
    result, tokenizer = dpo_run
    model = result.model
    # A new LoRA adapter starts with B = 0: the policy is the reference, every implicit reward is 0.
    model.add_adapter("fresh", model.peft_config["default"])
    chosen, rejected = implicit_rewards(model, tokenizer, PAIRS, beta=0.5, adapter="fresh", max_length=64,
                                        dtype="fp32")
    np.testing.assert_allclose(chosen, 0.0, atol=1e-5)
    np.testing.assert_allclose(rejected, 0.0, atol=1e-5)
    assert result.history["loss"].iloc[0] == pytest.approx(math.log(2), abs=1e-4)  # TRL's first loss: log 2
    chosen, rejected = implicit_rewards(model, tokenizer, PAIRS, beta=0.5, max_length=64, dtype="fp32")
    assert np.abs(chosen).max() > 1e-4, "two DPO steps at a large learning rate changed nothing"
    assert len(result.history) == 2 and {"rewards/margins", "rewards/accuracies"} <= set(result.history.columns)


def test_trls_loss_equals_dpo_loss_on_our_log_probabilities():
    """TRL's loss on a batch = dpo_loss of rlxf's own sequence log-probabilities (adapter vs the base)."""
    from datasets import Dataset
    from trl import DPOTrainer

    from rlxf.lm.adapters import lora_config

    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    settings = DPOSettings(beta=0.5, max_length=64, dtype="fp32", lora_target_modules="all-linear")
    dataset = Dataset.from_dict({k: [p[k] for p in PAIRS] for k in ("prompt", "chosen", "rejected")})
    trainer = DPOTrainer(model=model, args=dpo_config(settings, "/tmp/rlxf-dpo-loss"), train_dataset=dataset,
                         processing_class=tokenizer, peft_config=lora_config(settings))
    model = trainer.model
    torch.manual_seed(0)
    with torch.no_grad():  # a policy that differs from the reference: random LoRA B matrices
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    model.eval()
    with torch.no_grad():
        trl_loss = trainer.compute_loss(model, batch).item()
    policy = sequence_logps(model, tokenizer, PAIRS, adapter="default", max_length=64, dtype="fp32")
    reference = sequence_logps(model, tokenizer, PAIRS, adapter=None, max_length=64, dtype="fp32")
    ours = dpo_loss(policy[0], policy[1], reference[0], reference[1], beta=0.5).mean().item()
    assert abs(ours - math.log(2)) > 1e-3, "the perturbed policy should differ from the reference"
    assert trl_loss == pytest.approx(ours, rel=1e-3, abs=1e-4)


def test_shorten_keeps_the_asked_end():
    _, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    text = "one two three four five six seven eight nine ten"
    assert shorten(tokenizer, text, 1000, keep="end") == text
    head, tail = shorten(tokenizer, text, 3, keep="start"), shorten(tokenizer, text, 3, keep="end")
    assert text.startswith(head) and text.endswith(tail) and len(head) < len(text)
    with pytest.raises(ValueError, match="keep must be"):
        shorten(tokenizer, text, 3, keep="middle")


def test_mapped_prompt_reward_reads_the_mapped_prompt():
    seen = []
    reward = MappedPromptReward(lambda p, c: seen.extend(p) or [1.0] * len(c), {"chat": "Human: hi"}, name="rm")
    assert reward(["chat"], ["hello"]) == [1.0] and seen == ["Human: hi"]
    with pytest.raises(KeyError, match="no mapped form"):
        reward(["other"], ["x"])


def test_bradley_terry_loss_by_hand():
    # d = 2 - 1 = 1: -log sigmoid(1) = log(1 + e^-1); d = 0: log 2
    loss = bradley_terry_loss(torch.tensor([2.0, 0.5]), torch.tensor([1.0, 0.5]))
    np.testing.assert_allclose(loss.numpy(), [math.log1p(math.exp(-1.0)), math.log(2.0)], rtol=1e-6)
    # soft label y = 0.25 on d = 1: -(0.25 log sigmoid(1) + 0.75 log sigmoid(-1))
    soft = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([0.25]))
    expected = -(0.25 * math.log(1 / (1 + math.exp(-1))) + 0.75 * math.log(1 / (1 + math.exp(1))))
    assert soft.item() == pytest.approx(expected, rel=1e-6)
    assert bradley_terry_loss(torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([1.0])).item() == \
        pytest.approx(loss[0].item())  # y = 1 is the plain loss
    with pytest.raises(ValueError, match="one label per pair"):
        bradley_terry_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]), torch.tensor([1.0]))


def test_ids_relabelling_moves_labels_toward_the_models_preference():
    labels = np.array([1.0, 1.0, 0.8, 0.0])
    model = np.array([0.9, 0.1, 0.8, 1.0])
    relabelled = ids_relabel(labels, model, alpha=0.25)
    np.testing.assert_allclose(relabelled, [0.975, 0.775, 0.8, 0.25])  # (1 - a) y + a p, by hand
    assert np.all(np.abs(relabelled - model) <= np.abs(labels - model))  # never further from the model
    np.testing.assert_allclose(ids_relabel(labels, model, 0.0), labels)
    np.testing.assert_allclose(ids_relabel(labels, model, 1.0), model)
    with pytest.raises(ValueError, match="alpha"):
        ids_relabel(labels, model, 1.5)
    with pytest.raises(ValueError, match="probabilities"):
        ids_relabel(labels, model * 2, 0.5)


def test_ids_training_relabels_every_pair_after_each_epoch_with_the_models_preference():
    model, tokenizer = load_classifier("tiny-bert", num_labels=1, device="cpu")
    settings = PreferenceSettings(epochs=2.0, batch_size=2, learning_rate=1e-3, max_length=32, dtype="fp32")
    result, history = train_ids_reward_model(model, tokenizer, PAIRS, settings, alpha=0.5)
    assert len(history) == 2 and all(h.shape == (len(PAIRS),) for h in history)
    chosen, rejected = score_pairs(result.model, tokenizer, PAIRS, max_length=32)
    preference = 1 / (1 + np.exp(-(chosen - rejected)))
    # after the last epoch: label = 0.5 * (label after epoch 1) + 0.5 * the final model's preference
    np.testing.assert_allclose(history[1], 0.5 * history[0] + 0.5 * preference, atol=1e-4)
    assert np.all(history[0] < 1.0) and np.all(history[0] >= 0.5)  # 1 mixed with a preference in (0, 1)


def test_mean_variance_model_trains_and_gives_a_positive_spread():
    model, tokenizer = load_classifier("tiny-bert", num_labels=2, device="cpu")
    before = [p.detach().clone() for p in model.parameters()]
    settings = PreferenceSettings(max_steps=3, batch_size=2, learning_rate=1e-3, max_length=32, dtype="fp32",
                                  logging_steps=1)
    result = train_mean_variance_model(model, tokenizer, PAIRS, settings)
    assert any(not torch.equal(a, b) for a, b in zip(before, result.model.parameters(), strict=True))
    assert [row["step"] for row in result.history] == [1, 2, 3]
    mu, sigma = score_mean_variance(result.model, tokenizer, [p["chosen"] for p in PAIRS], max_length=32)
    assert mu.shape == sigma.shape == (4,) and np.all(sigma > 0)
    # probit loss by hand: mu_c - mu_r = 1, sigma^2 sum = 1 + 3 = 4 -> -log Phi(0.5)
    loss = probit_preference_loss(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0.0]),
                                  torch.tensor([math.sqrt(3.0)]))
    assert loss.item() == pytest.approx(-math.log(0.6914624612740131))


def test_simulated_annotators_reproduce_the_majority_minority_split():
    sides = annotator_sides(30, 2 / 3, seed=0)
    assert (sides == "majority").sum() == 20 and (sides == "minority").sum() == 10
    assert not np.array_equal(sides, annotator_sides(30, 2 / 3, seed=1))  # the order is seeded
    rng = np.random.default_rng(0)
    lean, shared = rng.normal(size=200), rng.normal(size=200)
    pairs = pd.DataFrame({"a": np.arange(0, 200, 2), "b": np.arange(1, 200, 2)})
    labels = simulate_labels(pairs, lean, shared, sides=sides, labels_per_pair=30, shared_weight=1.0, noise=0.05,
                             seed=0)
    assert len(labels) == 3000 and abs((labels.side == "majority").mean() - 2 / 3) < 0.03
    # with little noise each side follows its own utility: the majority prefers the lower lean, the minority higher
    own = labels.assign(u_a=np.where(labels.side == "majority", shared[labels.a] - lean[labels.a],
                                     shared[labels.a] + lean[labels.a]),
                        u_b=np.where(labels.side == "majority", shared[labels.b] - lean[labels.b],
                                     shared[labels.b] + lean[labels.b]))
    assert ((own.u_a > own.u_b) == own.prefers_a).mean() > 0.9
    is_contested = contested(pairs, lean, shared, shared_weight=1.0)
    assert 0 < is_contested.mean() < 1
    # on contested pairs the labels follow the majority about 2/3 of the time
    with_majority = labels[is_contested[labels.pair]].assign(
        majority_a=lambda t: (shared[t.a] - lean[t.a]) > (shared[t.b] - lean[t.b]))
    assert abs((with_majority.prefers_a == with_majority.majority_a).mean() - 2 / 3) < 0.06
    with pytest.raises(ValueError, match=r"majority_share must be in \[0.5, 1\)"):
        annotator_sides(30, 0.3, seed=0)
    with pytest.raises(ValueError, match="noise"):
        simulate_labels(pairs, lean, shared, sides=sides, labels_per_pair=1, shared_weight=1.0, noise=0.0, seed=0)


def test_borda_scores_follow_the_majority_when_only_lean_matters():
    lean = np.array([-2.0, 0.0, 2.0])
    scores = borda_scores(lean, np.zeros(3), majority_share=2 / 3, shared_weight=0.0, noise=0.1)
    assert scores[0] > scores[1] > scores[2]  # the majority prefers low lean
    even = borda_scores(lean, np.zeros(3), majority_share=0.5, shared_weight=0.0, noise=0.1)
    np.testing.assert_allclose(even, 0.5)
