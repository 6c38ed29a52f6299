"""Compute precision: the decision with faked hardware, bf16 vs fp32 numerics, PPO in both, no default system prompt."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from rlxf.algos.ppo import PPOSettings, PPOTrainer
from rlxf.infra import threads
from rlxf.lm import precision as rlxf_device
from rlxf.lm.generation import chat_prompt, encode_text
from rlxf.lm.logprobs import token_logprobs
from rlxf.lm.models import load_causal_lm
from rlxf.lm.precision import (
    FrozenLowPrecisionLinear,
    FrozenOneDNNLinear,
    Precision,
    cpu_bf16_flags,
    precision,
    store_frozen_weights,
)

pytestmark = [pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`:UserWarning"),
              pytest.mark.usefixtures("one_thread")]  # one_thread: tests/conftest.py
PROMPTS = ["What is justice?", "How are you today?", "The movie was", "I think the government"]
NATIVE, ABSENT = (True, "cpu has avx512_bf16"), (False, "no bf16 instructions on this CPU")




# --- the decision, with the hardware faked ------------------------------------------------------------------


def test_auto_picks_bf16_only_where_the_cpu_has_it():
    on = precision("auto", "cpu", fast_bf16=NATIVE)
    assert on.dtype == torch.bfloat16 and on.reason == "cpu has avx512_bf16: bf16 autocast"
    off = precision("auto", "cpu", fast_bf16=ABSENT)
    assert off.dtype == torch.float32 and off.reason == "fp32: no bf16 instructions on this CPU"
    assert precision("fp32", "cpu", fast_bf16=NATIVE).dtype == torch.float32
    assert precision(on) is on  # a decided Precision passes through


def test_bf16_on_a_cpu_without_it_warns_of_the_slowdown():
    with pytest.warns(UserWarning, match=r"bf16 asked for on a cpu without native bf16.*~100x slowdown"):
        chosen = precision("bf16", "cpu", fast_bf16=ABSENT)
    assert chosen.dtype == torch.bfloat16 and "~100x slowdown" in chosen.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision("bf16", "cpu", fast_bf16=NATIVE).dtype == torch.bfloat16  # no warning where it is native


def test_cuda_uses_bf16_where_the_gpu_supports_it(monkeypatch):
    monkeypatch.setattr(rlxf_device, "cuda_has_bf16", lambda: True)
    assert precision("auto", "cuda").dtype == torch.bfloat16
    monkeypatch.setattr(rlxf_device, "cuda_has_bf16", lambda: False)
    chosen = precision("auto", "cuda")
    assert chosen.dtype == torch.float32 and chosen.reason == "fp32: gpu has no native bf16"
    with pytest.warns(UserWarning, match="~100x slowdown"):
        precision("bf16", "cuda")


def test_unknown_dtype_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="PPOSettings.dtype must be one of 'auto', 'fp32', 'bf16', got 'fp16'"):
        PPOSettings(dtype="fp16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        precision("float32", "cpu")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    with_bf16, without = tmp_path / "with", tmp_path / "without"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_bf16\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert cpu_bf16_flags(str(with_bf16)) == {"avx512_bf16", "amx_bf16"}
    assert cpu_bf16_flags(str(without)) == frozenset()
    assert cpu_bf16_flags(str(tmp_path / "missing")) is None  # not Linux: rlxf.lm.precision times a matmul instead


# --- numerics on tiny-llama -----------------------------------------------------------------------------------

BF16 = Precision(torch.bfloat16, "cpu", "test")  # runs everywhere (slowly where bf16 is emulated; tiny model)
FP32 = Precision(torch.float32, "cpu", "test")


def test_bf16_log_probs_are_close_to_fp32():
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    queries = [encode_text(tokenizer, chat_prompt(tokenizer, p)) for p in PROMPTS]
    responses = [encode_text(tokenizer, text, special_tokens=False) for text in
                 ("Justice is the advantage of the stronger.", "Fine, thanks.", "long and dull", "should act")]
    exact = token_logprobs(model, tokenizer, queries, responses, adapter=None, dtype=FP32)
    approx = token_logprobs(model, tokenizer, queries, responses, adapter=None, dtype=BF16)
    # bf16 keeps 8 bits of mantissa (relative error ~4e-3 per matmul); ~6-nat log-probs agree to 0.05 nats.
    for a, b in zip(exact, approx, strict=True):
        np.testing.assert_allclose(b, a, atol=0.05)
    assert any(not np.array_equal(a, b) for a, b in zip(exact, approx, strict=True))  # bf16 really ran


def test_frozen_weights_stored_in_bf16_give_the_same_autocast_results():
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    ids = torch.stack([encode_text(tokenizer, "The movie was long and dull")])
    head = model.get_output_embeddings()
    was_tied = head.weight is model.get_input_embeddings().weight
    with BF16.autocast():
        before = model(input_ids=ids).logits
    fp32_before = model(input_ids=ids).logits
    assert store_frozen_weights(model, FP32) is FP32 and not any(
        isinstance(m, FrozenLowPrecisionLinear) for m in model.modules())  # fp32: the weights stay fp32
    assert torch.allclose(model(input_ids=ids).logits, fp32_before, atol=1e-5)  # oneDNN's kernel, the same numbers
    store_frozen_weights(model, BF16)
    cast = {name for name, m in model.named_modules() if isinstance(m, FrozenLowPrecisionLinear)}
    assert cast and all("lora_" not in name for name in cast)
    assert all(p.dtype == torch.float32 for name, p in model.named_parameters() if "lora_" in name)
    embedding = model.get_input_embeddings().weight
    assert embedding.dtype == torch.float32  # the residual stream starts in fp32
    assert head.weight.dtype == torch.bfloat16 and not head.weight.requires_grad
    if was_tied:  # the head got its own bf16 copy: the same values autocast cast the tied weight to
        assert head.weight is not embedding and torch.equal(head.weight, embedding.to(torch.bfloat16))
    with BF16.autocast():
        after = model(input_ids=ids).logits
    assert torch.equal(before, after)  # the bf16 values autocast would have cast to, so the same numbers
    outside = model(input_ids=ids).logits  # no autocast: inputs cast to bf16 and outputs back
    assert outside.dtype == torch.float32 and torch.allclose(outside, fp32_before, atol=0.05)


@pytest.mark.skipif(not rlxf_device.onednn_available(), reason="this torch build has no oneDNN")
def test_frozen_fp32_linears_run_through_onednn_with_the_same_values_and_input_gradients():
    import copy

    torch.manual_seed(0)
    plain = torch.nn.Linear(48, 40)
    plain.requires_grad_(False)
    fast = copy.deepcopy(plain)
    store_frozen_weights(torch.nn.Sequential(fast), FP32)
    assert type(fast) is FrozenOneDNNLinear
    x = torch.randn(3, 5, 48, requires_grad=True)
    y = torch.randn(3, 5, 40)
    expected = plain(x)
    (grad_expected,) = torch.autograd.grad((expected * y).sum(), x)
    got = fast(x)
    (grad_got,) = torch.autograd.grad((got * y).sum(), x)
    assert torch.allclose(got, expected, atol=1e-5) and torch.allclose(grad_got, grad_expected, atol=1e-5)
    with torch.no_grad():
        fast.weight.mul_(2.0)  # an in-place change: packed again
    assert torch.allclose(fast(x), torch.nn.functional.linear(x, fast.weight, fast.bias), atol=1e-5)
    clone = copy.deepcopy(fast)  # the packed copies are not copied: the clone packs its own
    assert clone.__dict__["_onednn_cache"].key is None
    assert torch.allclose(clone(x), fast(x)) and clone.__dict__["_onednn_cache"].key[0] == clone.weight.data_ptr()
    with BF16.autocast():  # under autocast it is nn.Linear
        assert fast(x).dtype == torch.bfloat16


@pytest.mark.skipif(not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
                    reason="no oneDNN bf16 here")
def test_frozen_bf16_linears_on_packed_weights_match_autocast_values_and_gradients(monkeypatch):
    monkeypatch.setattr(rlxf_device, "PACK_FROZEN_BF16", True)  # off by default (memory), exact when on
    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 40)
    layer.requires_grad_(False)
    store_frozen_weights(torch.nn.Sequential(layer), BF16)
    assert type(layer) is FrozenLowPrecisionLinear
    x = torch.randn(3, 5, 48, requires_grad=True)
    y = torch.randn(3, 5, 40)

    def value_and_gradient():
        with BF16.autocast():
            out = layer(x)
        return out, torch.autograd.grad((out.float() * y).sum(), x)[0]

    packed, packed_grad = value_and_gradient()
    monkeypatch.setattr(rlxf_device, "PACK_FROZEN", False)  # F.linear under autocast
    plain, plain_grad = value_and_gradient()
    assert packed.dtype == plain.dtype == torch.bfloat16 and packed_grad.dtype == torch.float32
    assert torch.allclose(packed.float(), plain.float(), atol=1e-2)
    assert torch.allclose(packed_grad, plain_grad, atol=1e-2, rtol=1e-2)


def ppo_settings(dtype: str, **overrides) -> PPOSettings:
    settings = dict(learning_rate=5e-3, batch_size=4, max_new_tokens=6, lora_target_modules=("q_proj", "v_proj",
                    "lm_head"), adaptive_kl=False, init_kl_coef=0.01, progress_bar=False, dtype=dtype)
    return PPOSettings(**{**settings, **overrides})


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_ppo_ratio_is_exactly_one_before_the_first_update(dtype, monkeypatch):
    import rlxf.algos.ppo

    log_ratios = []
    policy_loss = rlxf.algos.ppo.policy_loss

    def recording(logprobs, old_logprobs, advantages, mask, cliprange):
        log_ratios.append(((logprobs - old_logprobs) * mask).detach())
        return policy_loss(logprobs, old_logprobs, advantages, mask, cliprange)

    monkeypatch.setattr(rlxf.algos.ppo, "policy_loss", recording)
    monkeypatch.setattr(rlxf_device, "cpu_has_fast_bf16", lambda: NATIVE)  # bf16 without a warning anywhere
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    trainer = PPOTrainer(model, tokenizer, ppo_settings(dtype, ppo_epochs=2))
    assert trainer.precision.name == dtype
    queries, responses, _ = trainer.generate(PROMPTS)
    trainer.step(queries, responses, [1.0, 0.0, 0.5, 0.2])
    assert torch.equal(log_ratios[0], torch.zeros_like(log_ratios[0]))  # same numerics in rollout and update
    assert log_ratios[1].abs().max() > 0  # and the update moved the policy


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_ppo_learns_a_toy_task_in_both_dtypes(dtype, monkeypatch):
    monkeypatch.setattr(rlxf_device, "cpu_has_fast_bf16", lambda: NATIVE)
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    special = set(tokenizer.all_special_ids)

    def reward_fn(prompts, completions):  # the fraction of reply tokens whose id is divisible by 8
        ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in completions]
        return [sum(i % 8 == 0 and i not in special for i in row) / max(len(row), 1) for row in ids]

    chats = [chat_prompt(tokenizer, p) for p in PROMPTS]
    trainer = PPOTrainer(model, tokenizer, ppo_settings(dtype, batch_size=16, max_new_tokens=8, seed=3))
    rewards = [m["env/reward_mean"] for m in trainer.train(chats, reward_fn, steps=30)]
    assert sum(rewards[:3]) / 3 < 0.15, rewards
    assert sum(rewards[-5:]) / 5 > 0.4, rewards
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)  # master weights stay fp32
    assert trainer.value_head.weight.dtype == torch.float32
    cast = [m for m in trainer.model.modules() if isinstance(m, FrozenLowPrecisionLinear)]
    frozen = {p.dtype for m in cast for p in m.parameters()}
    assert frozen == ({torch.bfloat16} if dtype == "bf16" else set())  # frozen weights stored in the compute dtype


# --- no default system prompt -----------------------------------------------------------------------------------

SMOLLM2_TEMPLATE = (  # SmolLM2-Instruct's template: a default system prompt unless the first message is a system one
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_chat_prompt_adds_no_default_system_prompt():
    _, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    plain = chat_prompt(tokenizer, "Hi")  # a template without a default: no system turn at all
    assert plain == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    tokenizer.chat_template = SMOLLM2_TEMPLATE
    assert chat_prompt(tokenizer, "Hi") == "<|im_start|>system\n<|im_end|>\n" + plain  # empty, not SmolLM's default
    assert "Be brief" in chat_prompt(tokenizer, "Hi", system="Be brief")


def test_follow_thread_budget_takes_the_share_the_runner_writes(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    budget = tmp_path / "04"
    monkeypatch.setenv(threads.THREADS_FILE, str(budget))
    try:
        budget.write_text("2\n")
        assert threads.follow_thread_budget() == 2 == torch.get_num_threads()
        budget.write_text("1\n")
        assert threads.follow_thread_budget() == 1 == torch.get_num_threads()
        for unusable in ("", "many", "0"):  # a half-written or nonsense file changes nothing
            budget.write_text(unusable)
            assert threads.follow_thread_budget() == 1
        budget.unlink()
        assert threads.follow_thread_budget() == 1
        monkeypatch.delenv(threads.THREADS_FILE)
        torch.set_num_threads(2)
        assert threads.follow_thread_budget() == 2  # no runner: left alone
    finally:
        torch.set_num_threads(before)


def test_trainers_follow_the_thread_budget_at_every_step(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    budget = tmp_path / "03"
    budget.write_text("1\n")
    monkeypatch.setenv(threads.THREADS_FILE, str(budget))
    try:
        threads.thread_budget_callback().on_step_begin(None, None, None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
