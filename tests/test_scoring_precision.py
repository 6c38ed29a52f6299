"""Scoring forwards (classifiers, reward models) run under the compute precision; bf16 and fp32 scores agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlxf.lm.models import load_classifier
from rlxf.lm.precision import Precision
from rlxf.rewards.bradley_terry import score_texts
from rlxf.rewards.classifiers import ClassifierReward, predict_logits

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

FP32 = Precision(torch.float32, "cpu", "test")
BF16 = Precision(torch.bfloat16, "cpu", "test")  # runs everywhere (slowly where bf16 is emulated; tiny model)
TEXTS = ["Justice is giving each his due.", "Virtue can be taught, I think.", "Who rules best?", "No."]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-bert"])
def test_classifier_logits_agree_in_bf16_and_fp32(name):
    model, tokenizer = load_classifier(name, num_labels=3, device="cpu")
    exact = predict_logits(model, tokenizer, TEXTS, batch_size=3, dtype=FP32)
    low = predict_logits(model, tokenizer, TEXTS, batch_size=3, dtype=BF16)
    assert not np.array_equal(exact, low)  # the bf16 forward really ran
    np.testing.assert_allclose(low, exact, atol=0.05 * max(1.0, float(np.abs(exact).max())))
    reward = ClassifierReward(model, tokenizer, label=1, dtype=BF16)
    np.testing.assert_allclose(reward([""] * len(TEXTS), TEXTS), torch.softmax(torch.from_numpy(exact), -1)[:, 1],
                               atol=0.02)


def test_reward_model_scores_agree_in_bf16_and_fp32():
    model, tokenizer = load_classifier("tiny-llama", num_labels=1, device="cpu")
    exact = score_texts(model, tokenizer, TEXTS, batch_size=2, dtype=FP32)
    low = score_texts(model, tokenizer, TEXTS, batch_size=2, dtype=BF16)
    np.testing.assert_allclose(low, exact, atol=0.05 * max(1.0, float(np.abs(exact).max())))
