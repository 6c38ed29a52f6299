"""The frozen-encoder Bradley-Terry reward model: the head's fit, scoring through the usual helpers, bagging, IDS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlxf.lm.models import load_classifier
from rlxf.rewards.bradley_terry import RewardEnsemble, score_pairs
from rlxf.rewards.frozen_bt import (
    FrozenBTSettings,
    FrozenEncoderReward,
    embed_pairs,
    fit_bt_head,
    train_frozen_bt,
    train_frozen_bt_ensemble,
    train_frozen_ids,
)

PAIRS = [{"prompt": "Q: ", "chosen": f"a kind helpful answer {i}", "rejected": f"go away you fool {i}"}
         for i in range(12)]


def test_the_head_minimises_the_penalised_bradley_terry_loss():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    w = fit_bt_head(x, l2=0.1)
    grad = -(x * (1 / (1 + np.exp(x @ w)))[:, None]).mean(0) + 0.1 * w  # d/dw of mean softplus(-x.w) + l2/2 |w|^2
    assert np.abs(grad).max() < 1e-4
    # a soft label of 1/2 everywhere has its minimum at w = 0; doubling a pair's weight equals repeating it
    assert np.abs(fit_bt_head(x, l2=0.1, labels=np.full(50, 0.5))).max() < 1e-5
    weights = np.ones(50)
    weights[0] = 2
    assert np.allclose(fit_bt_head(x, l2=0.1, weights=weights), fit_bt_head(np.r_[x, x[:1]], l2=0.1), atol=1e-4)
    with pytest.raises(ValueError, match="weights"):
        fit_bt_head(x, l2=0.1, weights=np.zeros(50))


def test_a_fitted_head_ranks_its_training_pairs_and_scores_through_score_pairs():
    model, tokenizer = load_classifier("tiny-bert", num_labels=1, device="cpu")
    before = [p.detach().clone() for p in model.base_model.parameters()]
    settings = FrozenBTSettings(l2=0.01, max_length=32)
    result = train_frozen_bt(model, tokenizer, PAIRS, settings)
    assert result.n_pairs == len(PAIRS) and result.history[0]["accuracy"] == 1.0
    chosen, rejected = score_pairs(result.model, tokenizer, PAIRS, max_length=32, dtype="fp32")  # as the embeddings
    assert (chosen > rejected).all()
    # the reward is w . e(text), the same through the model's forward pass and through the embeddings
    assert np.allclose(chosen - rejected, embed_pairs(result.model, tokenizer, PAIRS, settings) @ result.model.weight,
                       atol=1e-5)
    ensemble = RewardEnsemble([(result.model, tokenizer)], max_length=32, dtype="fp32")
    assert np.allclose(ensemble(["Q: "], [PAIRS[0]["chosen"]]), chosen[0], atol=1e-5)
    # the encoder stays frozen
    assert all(torch.equal(a, b) for a, b in zip(before, model.base_model.parameters(), strict=True))


def test_bagged_members_differ_and_the_first_is_the_single_fit():
    model, tokenizer = load_classifier("tiny-bert", num_labels=1, device="cpu")
    settings = FrozenBTSettings(l2=0.01, max_length=32)
    diffs = embed_pairs(FrozenEncoderReward(model), tokenizer, PAIRS, settings)
    members = train_frozen_bt_ensemble(model, tokenizer, PAIRS, settings, members=3, seed=0, differences=diffs)
    single = train_frozen_bt(model, tokenizer, PAIRS, settings, differences=diffs)
    assert np.allclose(members[0].model.weight, single.model.weight)
    assert not np.allclose(members[1].model.weight, members[2].model.weight)


def test_ids_relabels_each_round_toward_the_heads_preference():
    model, tokenizer = load_classifier("tiny-bert", num_labels=1, device="cpu")
    settings = FrozenBTSettings(l2=0.01, max_length=32)
    diffs = embed_pairs(FrozenEncoderReward(model), tokenizer, PAIRS, settings)
    diffs[0] = -diffs[0]  # one flipped label
    result, history = train_frozen_ids(model, tokenizer, PAIRS, settings, alpha=0.5, rounds=3, differences=diffs)
    assert len(history) == 3 and all(h.shape == (len(PAIRS),) for h in history)
    assert all(np.all((h > 0) & (h <= 1)) for h in history)
    assert history[-1][0] < history[-1][1:].min()  # the flipped pair's label drifts lowest
    with pytest.raises(ValueError, match="rounds"):
        train_frozen_ids(model, tokenizer, PAIRS, settings, alpha=0.5, rounds=0, differences=diffs)
