"""rlxf.lm.decode: the fast decode loop samples from the same distribution as the forward that scores it."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from rlxf.lm import decode
from rlxf.lm.generation import collate, sample_tokens
from rlxf.lm.models import load_causal_lm
from rlxf.lm.precision import Precision, store_frozen_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

FP32 = Precision(torch.float32, "cpu", "test")
BF16 = Precision(torch.bfloat16, "cpu", "test")


def policy(dtype: Precision = FP32):
    """tiny-llama with a LoRA adapter whose B is not zero (so the merge matters), in eval mode."""
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_causal_lm("tiny-llama", device="cpu", dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]), "policy")
    generator = torch.Generator().manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.1
    store_frozen_weights(model, dtype)
    return model.eval(), tokenizer


def batch_of(lengths=(7, 12, 3), response=5):
    generator = torch.Generator().manual_seed(1)
    queries = [torch.randint(5, 300, (n,), generator=generator) for n in lengths]
    return collate(queries, [torch.randint(5, 300, (response,), generator=generator) for _ in queries], 0)


def decode_logits(model, batch, dtype: torch.dtype, split: int | None = None) -> torch.Tensor:
    """Logits of every position by `decode._forward`: one prefill, or a prefill of `split` tokens then one at a time."""
    weights = decode.rollout_weights(model, dtype)
    rows, length = batch["input_ids"].shape
    cache = decode.KVCache.empty(weights, rows, length, dtype)
    slots = torch.arange(length)
    allowed = (((slots[:, None] >= slots[None]) & batch["attention_mask"].bool()[:, None, :])
               | torch.eye(length, dtype=torch.bool))
    ids, positions = batch["input_ids"], batch["position_ids"]
    split = split or length
    hidden = [decode._forward(weights, ids[:, :split], positions[:, :split], allowed[:, :split], cache, 0)]
    for slot in range(split, length):
        hidden.append(decode._forward(weights, ids[:, slot:slot + 1], positions[:, slot:slot + 1],
                                      allowed[:, slot:slot + 1], cache, slot))
    return decode.logits_of(weights, torch.cat(hidden, dim=1))


def forward_logits(model, batch, chosen: Precision) -> torch.Tensor:
    with torch.no_grad(), chosen.autocast():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     position_ids=batch["position_ids"]).logits.float()


def test_decode_matches_the_forward_in_fp32_with_a_lora_adapter_and_left_padding():
    model, _ = policy()
    batch = batch_of()
    mask = batch["attention_mask"].bool()
    expected = forward_logits(model, batch, FP32)[mask]
    assert torch.allclose(decode_logits(model, batch, torch.float32)[mask], expected, atol=1e-5)
    assert torch.allclose(decode_logits(model, batch, torch.float32, split=9)[mask], expected, atol=1e-5)  # KV cache


def test_decode_in_bf16_is_as_close_to_fp32_as_the_bf16_forward_is():
    model, _ = policy(BF16)
    batch = batch_of()
    mask = batch["attention_mask"].bool()
    exact = torch.log_softmax(forward_logits(model, batch, FP32)[mask], -1)
    autocast = torch.log_softmax(forward_logits(model, batch, BF16)[mask], -1)
    ours = torch.log_softmax(decode_logits(model, batch, torch.bfloat16, split=9)[mask], -1)
    present = (autocast - exact).abs().max()  # the bf16 rounding the rollouts already had
    assert (ours - exact).abs().max() <= 3 * present
    assert (ours - autocast).abs().max() <= 3 * present


def test_rollout_weights_follow_the_adapter_after_an_update():
    model, _ = policy()
    batch = batch_of()
    mask = batch["attention_mask"].bool()
    first = decode.rollout_weights(model, torch.float32)
    assert decode.rollout_weights(model, torch.float32) is first  # cached while nothing changed
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_A" in name:
                parameter.data.mul_(3.0)  # a write that bumps no version counter: the values are in the key
    assert decode.rollout_weights(model, torch.float32) is not first
    assert torch.allclose(decode_logits(model, batch, torch.float32)[mask], forward_logits(model, batch, FP32)[mask],
                          atol=1e-5)
    with model.disable_adapter():  # the base model alone
        assert torch.allclose(decode_logits(model, batch, torch.float32)[mask],
                              forward_logits(model, batch, FP32)[mask], atol=1e-5)


def test_rollout_weights_share_unadapted_weights_and_ppo_releases_them_before_its_update(monkeypatch, tmp_path):
    from rlxf.algos.ppo import PPOSettings, PPOTrainer

    monkeypatch.setattr(decode, "PACK_WEIGHTS", False)  # plain tensors: storage can be compared
    model, tokenizer = policy(BF16)
    weights = decode.rollout_weights(model, torch.bfloat16)
    o_proj = model.get_base_model().model.layers[0].self_attn.o_proj
    assert weights.layers[0].o.weight.data_ptr() == o_proj.weight.data_ptr()  # no adapter, already bf16: not copied
    assert weights.layers[0].qkv.dtype == torch.bfloat16  # q and v merged with their adapter, then rounded once
    model, tokenizer = policy()
    trainer = PPOTrainer(model, tokenizer, PPOSettings(batch_size=2, max_new_tokens=3, dtype="fp32", progress_bar=False,
                                                       output_dir=str(tmp_path)), adapter_name="policy")
    queries, responses, _ = trainer.generate(["What is justice?", "The movie was"])
    assert getattr(trainer.model, decode._CACHE_ATTRIBUTE) is not None  # sampling built them
    trainer.step(queries, responses, torch.tensor([1.0, -1.0]))
    assert getattr(trainer.model, decode._CACHE_ATTRIBUTE) is None  # stale after the update: not held through it


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.3, 4, 1.0),
                                                               (1.0, 0, 0.8)])
def test_inverse_cdf_sampling_follows_the_softmax(temperature, top_k, top_p):
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0, float("-inf")])
    draws = 40_000
    torch.manual_seed(0)
    tokens = decode.sample_from_logits(logits.expand(draws, -1), temperature, top_k, top_p)
    expected = torch.softmax(decode.filter_logits(logits[None] / temperature, top_k, top_p), -1)[0].double()
    counts = torch.bincount(tokens, minlength=len(logits)).double()
    assert counts[expected == 0].sum() == 0  # filtered (and -inf) tokens are never drawn
    kept = expected > 0
    expected_counts = expected[kept] / expected[kept].sum() * counts.sum()  # sums equal, as chisquare requires
    assert chisquare(counts[kept].numpy(), expected_counts.numpy()).pvalue > 1e-3


def test_sample_tokens_takes_the_fast_path_and_stops_at_eos():
    model, tokenizer = policy()
    assert decode.supports(model)
    queries = [torch.tensor([5, 6, 7]), torch.tensor([8, 9, 10, 11, 12])]
    eos = {tokenizer.eos_token_id}
    torch.manual_seed(0)
    responses = sample_tokens(model, queries, max_new_tokens=12, temperature=1.0, pad_id=0, eos_ids=eos, dtype=FP32)
    assert all(1 <= len(r) <= 12 for r in responses)
    assert all(int(t) not in eos for r in responses for t in r[:-1])  # cut after the first EOS
    torch.manual_seed(0)
    again = sample_tokens(model, queries, max_new_tokens=12, temperature=1.0, pad_id=0, eos_ids=eos, dtype=FP32)
    assert all(torch.equal(a, b) for a, b in zip(responses, again, strict=True))  # seeded: reproducible


def test_greedy_text_generation_equals_transformers_generate(monkeypatch):
    from rlxf.lm import generation

    model, tokenizer = policy()
    prompts = ["Is justice the advantage of the stronger?", "Name a virtue.", "Who rules best, and why?"]
    ours = generation.generate(model, tokenizer, prompts, max_new_tokens=10, batch_size=2, dtype="fp32")
    monkeypatch.setattr(decode, "supports", lambda model: False)  # transformers' generate
    assert generation.generate(model, tokenizer, prompts, max_new_tokens=10, batch_size=2, dtype="fp32") == ours
