"""rlxf.lm.logprobs: log-probabilities by hand, padding-free, one precision rule for PPO, eval and perplexity."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from rlxf.algos.ppo import PPOSettings, PPOTrainer
from rlxf.algos.sft import completion_perplexity, perplexity
from rlxf.lm.generation import chat_prompt, collate, encode_text
from rlxf.lm.logprobs import response_logprobs, sequence_nll, token_logprobs, token_logprobs_at
from rlxf.lm.models import load_causal_lm
from rlxf.lm.precision import Precision

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

FP32 = Precision(torch.float32, "cpu", "test")
BF16 = Precision(torch.bfloat16, "cpu", "test")  # runs everywhere (slowly where bf16 is emulated; tiny model)
TEXTS = ["Justice is giving each his due.", "Virtue can be taught, I think.", "Who rules best?"]


class BigramLM(nn.Module):
    """Next-token logits from a table indexed by the current token: log-probabilities computable by hand."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        return SimpleNamespace(logits=self.table[input_ids])


@pytest.fixture(scope="module")
def tiny():
    return load_causal_lm("tiny-llama", device="cpu", dtype=torch.float32)


def test_log_probs_of_a_bigram_model_by_hand():
    table = torch.tensor([[0.0, 1.0, 2.0, 3.0], [2.0, 0.0, -1.0, 0.5], [1.0, 1.0, 1.0, 1.0], [-2.0, 3.0, 0.0, 0.0]])
    model = BigramLM(table)
    queries = [torch.tensor([3, 1]), torch.tensor([2])]
    responses = [torch.tensor([0, 3, 1]), torch.tensor([2])]
    at_1, at_half = response_logprobs(model, queries, responses, pad_id=0, temperatures=(1.0, 0.5), dtype=FP32)

    def by_hand(previous: int, token: int, temperature: float) -> float:
        row = [float(x) / temperature for x in table[previous]]
        return row[token] - math.log(sum(math.exp(x) for x in row))

    for query, response, got_1, got_half in zip(queries, responses, at_1, at_half, strict=True):
        tokens = [*query.tolist(), *response.tolist()]
        start = len(query)
        for got, temperature in ((got_1, 1.0), (got_half, 0.5)):
            expected = [by_hand(tokens[k - 1], tokens[k], temperature) for k in range(start, len(tokens))]
            np.testing.assert_allclose(got, expected, atol=1e-6)
    for training in (True, False):  # the model is left in the mode it was found in
        model.train(training)
        response_logprobs(model, queries, responses, pad_id=0, dtype=FP32)
        assert model.training == training


def test_left_padding_and_batching_give_each_sequence_alone(tiny):
    model, tokenizer = tiny
    queries = [encode_text(tokenizer, chat_prompt(tokenizer, p)) for p in ("Hi", "What is the state, Socrates?")]
    queries += [encode_text(tokenizer, "Plain text, no template"), torch.tensor([tokenizer.eos_token_id])]
    responses = [encode_text(tokenizer, t, special_tokens=False) for t in
                 ("Justice is the advantage of the stronger.", "Fine.", "and then a longer reply follows here")]
    responses.append(torch.tensor([], dtype=torch.long))  # an empty reply scores nothing
    batched = token_logprobs(model, tokenizer, queries, responses, adapter=None, batch_size=4, dtype=FP32)
    alone = [token_logprobs(model, tokenizer, [q], [r], adapter=None, batch_size=1, dtype=FP32)[0]
             for q, r in zip(queries, responses, strict=True)]
    assert [len(x) for x in batched] == [len(r) for r in responses]
    for a, b in zip(batched, alone, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # ... and each alone equals one plain forward over all positions (no logits_to_keep, no position ids).
    for query, response, got in zip(queries[:3], responses[:3], alone[:3], strict=True):
        with torch.no_grad():
            logits = model(input_ids=torch.cat([query, response])[None]).logits[0].double()
        expected = torch.log_softmax(logits[len(query) - 1:-1], -1).gather(-1, response[:, None]).squeeze(-1)
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    # Several temperatures from one forward equal one call per temperature.
    both = token_logprobs_at(model, tokenizer, queries, responses, adapter=None, temperatures=(0.7, 1.0), dtype=FP32)
    for k, temperature in enumerate((0.7, 1.0)):
        one = token_logprobs(model, tokenizer, queries, responses, adapter=None, temperature=temperature, dtype=FP32)
        for a, b in zip(both[k], one, strict=True):
            np.testing.assert_array_equal(a, b)


def test_perplexity_in_fp32_is_the_value_of_the_old_implementation(tiny):
    """Pinned before rlxf.algos.sft moved onto rlxf.lm.logprobs (its own left-padded cross_entropy, fp32)."""
    model, tokenizer = tiny
    assert perplexity(model, tokenizer, TEXTS, batch_size=2, dtype="fp32") == pytest.approx(389.7716542291079,
                                                                                            rel=1e-6)
    pairs = [(chat_prompt(tokenizer, "What is justice?"), "Giving each his due."),
             (chat_prompt(tokenizer, "Who rules best?"), "The wise.")]
    assert completion_perplexity(model, tokenizer, pairs, batch_size=2, dtype="fp32") == pytest.approx(
        397.0878585031368, rel=1e-6)


def test_perplexity_and_the_evaluations_nll_follow_one_precision_rule(tiny):
    """06's perplexity and 07's reference NLL are the same numbers in bf16 too: one forward rule, fp32 log-softmax."""
    model, tokenizer = tiny
    ids = [tokenizer(text + tokenizer.eos_token)["input_ids"] for text in TEXTS]
    queries, responses = [torch.tensor(x[:1]) for x in ids], [torch.tensor(x[1:]) for x in ids]
    for dtype in (FP32, BF16):
        logp = token_logprobs(model, tokenizer, queries, responses, adapter=None, dtype=dtype)
        mean_nll = -np.concatenate(logp).astype(np.float64).mean()
        assert perplexity(model, tokenizer, TEXTS, dtype=dtype) == pytest.approx(math.exp(mean_nll), rel=1e-6)
        assert sequence_nll(model, ids, [0] * len(ids), pad_id=tokenizer.pad_token_id, dtype=dtype) == pytest.approx(
            mean_nll, rel=1e-6)
    assert perplexity(model, tokenizer, TEXTS, dtype=BF16) != perplexity(model, tokenizer, TEXTS, dtype=FP32)


def test_ppo_forward_uses_the_same_log_probs():
    """PPO's `_forward` (log-probs, values and entropy from one forward) agrees with the batched scorer."""
    base, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    trainer = PPOTrainer(base, tokenizer, PPOSettings(dtype="fp32", temperature=0.7, progress_bar=False))
    queries = [encode_text(tokenizer, chat_prompt(tokenizer, p)) for p in ("Hi", "What is the state, Socrates?")]
    responses = [encode_text(tokenizer, t, special_tokens=False) for t in ("Fine, and you?", "A ship of fools.")]
    batch = collate(queries, responses, trainer.pad_id)
    with torch.no_grad():
        logprobs, _, entropy = trainer._forward(batch, with_entropy=True)
    expected = token_logprobs(trainer.model, tokenizer, queries, responses, adapter=trainer.adapter_name,
                              temperature=0.7, dtype=trainer.precision)
    for row, mask, want in zip(logprobs, batch["response_mask"], expected, strict=True):
        np.testing.assert_allclose(row[mask.bool()].numpy(), want, atol=1e-5)
    assert (entropy > 0).all()


def test_errors_name_what_was_wrong(tiny):
    model, tokenizer = tiny
    one = [torch.tensor([1, 2])]
    with pytest.raises(ValueError, match="1 queries but 2 responses"):
        response_logprobs(model, one, one * 2, pad_id=0)
    with pytest.raises(ValueError, match=r"queries\[1\] is empty"):
        response_logprobs(model, [one[0], torch.tensor([], dtype=torch.long)], one * 2, pad_id=0)
    with pytest.raises(ValueError, match="temperatures must be"):
        response_logprobs(model, one, one, pad_id=0, temperatures=(0.0,))
    with pytest.raises(ValueError, match=r"sequences\[0\] is empty"):
        sequence_nll(model, [[]], [0], pad_id=0)
    with pytest.raises(ValueError, match="no token to score"):
        sequence_nll(model, [[5], [7, 8]], [0, 2], pad_id=0)
