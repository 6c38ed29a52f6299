"""What the PPO update's forwards run on CPU: `grouped_attention` computes transformers' attention, the fused
`target_logprobs` computes the eager log-softmax and gather (values and gradients), and `reuse_freed_memory` sets
glibc's thresholds once."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from rlxf.infra import memory
from rlxf.lm import fused
from rlxf.lm.generation import collate
from rlxf.lm.kernels import TRAINING_ATTENTION, training_kernels
from rlxf.lm.logprobs import gather_logprobs, response_logits, target_logprobs
from rlxf.lm.precision import Precision

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
needs_compiler = pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler to build the extension")


def tiny_llama(attn_implementation: str) -> LlamaForCausalLM:
    """2 layers, hidden 32, 4 query heads of 8 sharing 2 key/value heads (groups of 2), vocab 64."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation=attn_implementation)
    return LlamaForCausalLM(config)


def padded_batch():
    """Two rows of different lengths: [left-padded query | right-padded response] as PPO collates them."""
    generator = torch.Generator().manual_seed(1)
    queries = [torch.randint(1, 64, (n,), generator=generator) for n in (5, 2)]
    responses = [torch.randint(1, 64, (n,), generator=generator) for n in (3, 4)]
    return collate(queries, responses, pad_id=0)


def forward(model, batch, dtype: torch.dtype, grouped: bool):
    """The logits of a PPO forward and the gradient of their sum of squares at the real tokens for every weight."""
    model.zero_grad(set_to_none=True)
    chosen = Precision(dtype, "cpu", "test")
    context = training_kernels(model, "cpu") if grouped else torch.nn.attention.sdpa_kernel(
        torch.nn.attention.SDPBackend.MATH)
    with chosen.autocast(), context:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"], use_cache=False).logits.float()
    real = batch["attention_mask"].bool()
    logits[real].square().sum().backward()
    return logits[real].detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_grouped_attention_computes_what_sdpa_computes(dtype):
    model, batch = tiny_llama("sdpa"), padded_batch()
    expected, expected_grads = forward(model, batch, dtype, grouped=False)
    got, grads = forward(model, batch, dtype, grouped=True)
    tolerance = 1e-5 if dtype == torch.float32 else 5e-2  # bf16: the two round scores and probabilities differently
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)
    for name, grad in expected_grads.items():
        scale = grad.abs().max().clamp(min=1.0)
        assert (grads[name] - grad).abs().max() / scale <= (1e-5 if dtype == torch.float32 else 5e-2), name
    assert model.config._attn_implementation == "sdpa"  # switched back after the forward


def test_grouped_attention_without_a_mask_is_causal():
    model = tiny_llama("sdpa")
    ids = torch.randint(1, 64, (2, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        with training_kernels(model, "cpu"):
            got = model(input_ids=ids).logits
            # a later token does not change an earlier position's logits
            changed = ids.clone()
            changed[:, -1] = (changed[:, -1] + 1) % 64
            later = model(input_ids=changed).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(later[:, :-1], got[:, :-1], rtol=0, atol=0)


def test_training_attention_switches_back_after_an_error_and_leaves_other_devices_alone():
    model = tiny_llama("eager")
    with pytest.raises(RuntimeError, match="inside"), training_kernels(model, "cpu"):
        assert model.config._attn_implementation == TRAINING_ATTENTION
        raise RuntimeError("inside")
    assert model.config._attn_implementation == "eager"
    with training_kernels(model, "cuda"):
        assert model.config._attn_implementation == "eager"


def eager_logprobs(logits, targets, temperature):
    return gather_logprobs(response_logits(logits, targets.shape[1], temperature), targets)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("kept", ["response", "all"])  # logits_to_keep = r + 1, or every position
def test_fused_target_logprobs_match_the_eager_ones(dtype, temperature, kept):
    assert fused.ops() is not None, "the extension did not build (see the RuntimeWarning)"
    generator = torch.Generator().manual_seed(3)
    batch, r_len, vocab = 3, 5, 1000
    length = r_len + 1 if kept == "response" else r_len + 4
    base = (torch.randn(batch, length, vocab, generator=generator) * 4).to(dtype)
    targets = torch.randint(0, vocab, (batch, r_len), generator=generator)
    weights = torch.randn(batch, r_len, generator=generator)
    results = []
    for compute in (target_logprobs, eager_logprobs):
        logits = base.clone().requires_grad_(True)
        logprobs = compute(logits, targets, temperature)
        (logprobs * weights).sum().backward()
        results.append((logprobs.detach(), logits.grad))
    (got, got_grad), (expected, expected_grad) = results
    assert got.dtype == torch.float32 and got_grad.dtype == dtype and got_grad.shape == base.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-5)
    # the gradient: fp32 within 1e-5 relative (its log normaliser differs by ~2e-6, exp and sums run in another
    # order), bf16 within one rounding step of the dtype (2^-7 relative); measured 4e-6 and 6e-3
    relative = 1e-5 if dtype == torch.float32 else 2.0**-7
    error = (got_grad.float() - expected_grad.float()).abs()
    assert (error <= relative * expected_grad.float().abs() + 1e-8).all(), error.max()
    assert (got_grad[:, : length - r_len - 1] == 0).all()  # positions that predict no target get no gradient


@needs_compiler
def test_fused_target_logprobs_say_what_is_wrong():
    ops = fused.ops()
    logits, targets = torch.randn(2, 4, 10), torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"3 targets need 4 logit positions, got 3"):
        target_logprobs(logits[:, :3], targets)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        target_logprobs(logits, targets, 0.0)
    with pytest.raises(ValueError, match=r"logits must be \[batch, length, vocab\]"):
        target_logprobs(logits[0], targets)
    with pytest.raises(RuntimeError, match=r"token ids in \[0, 10\), got 0 to 12"):
        ops.target_logprobs(logits, torch.tensor([[0, 1, 12], [0, 0, 0]]), 1, 1.0)
    with pytest.raises(RuntimeError, match="outside the logits' 4 positions"):
        ops.target_logprobs(logits, targets, 2, 1.0)


def test_target_logprobs_run_the_eager_operations_without_the_extension(monkeypatch):
    monkeypatch.setattr(fused, "ops", lambda: None)
    logits, targets = torch.randn(2, 4, 10), torch.randint(0, 10, (2, 3))
    torch.testing.assert_close(target_logprobs(logits, targets, 0.5), eager_logprobs(logits, targets, 0.5))


def test_reuse_freed_memory_sets_glibc_once_and_can_be_switched_off(monkeypatch):
    import platform
    import sys

    memory.reuse_freed_memory.cache_clear()
    monkeypatch.setenv("RLXF_REUSE_FREED_MEMORY", "0")
    assert memory.reuse_freed_memory() is False
    memory.reuse_freed_memory.cache_clear()
    monkeypatch.delenv("RLXF_REUSE_FREED_MEMORY")
    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert memory.reuse_freed_memory() is expected
    memory.reuse_freed_memory.cache_clear()


def eager_llama_parts():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm, apply_rotary_pos_emb

    return LlamaRMSNorm, apply_rotary_pos_emb


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_norm_mlp_and_rope_compute_the_eager_values_and_gradients(dtype):
    """Each fused operation against the transformers code it replaces, on the dtypes autocast gives it: RMSNorm on
    the fp32 residual stream, SiLU * up on the projections' dtype, RoPE of projections in that dtype with fp32 cos
    and sin (an fp32 result, as eager's type promotion makes it)."""
    from rlxf.lm.kernels import _RMSNorm, _RoPE, _SwiGLU

    ops = fused.ops()
    assert ops is not None, "the extension did not build (see the RuntimeWarning)"
    norm_class, eager_rope = eager_llama_parts()
    generator = torch.Generator().manual_seed(4)

    def grads(fn, *inputs):
        leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
        out = fn(*leaves)
        outs = out if isinstance(out, tuple) else (out,)
        weights = [torch.randn(o.shape, generator=torch.Generator().manual_seed(5 + i)) for i, o in enumerate(outs)]
        sum((o.float() * w).sum() for o, w in zip(outs, weights, strict=True)).backward()
        return [o.detach() for o in outs], [leaf.grad for leaf in leaves]

    # RMSNorm (fp32 in and out): within a few fp32 ulps, values and input gradients
    norm = norm_class(24, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(24, generator=generator) + 0.5)
    norm.weight.requires_grad_(False)
    x = torch.randn(3, 5, 24, generator=generator)
    (expected,), (expected_grad,) = grads(norm, x)
    (got,), (got_grad,) = grads(lambda t: _RMSNorm.apply(t, norm.weight, 1e-6, ops), x)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-5, atol=1e-6)

    # SiLU * up: within one rounding of the dtype, values and both gradients
    gate, up = (torch.randn(3, 5, 40, generator=generator) * 3).to(dtype), torch.randn(3, 5, 40, generator=generator)
    up = up.to(dtype)
    expected, expected_grads = grads(lambda g, u: F.silu(g) * u, gate, up)
    got, got_grads = grads(lambda g, u: _SwiGLU.apply(g, u, ops), gate, up)
    step = 2e-6 if dtype == torch.float32 else 2.0**-7
    for a, b in zip([*got, *got_grads], [*expected, *expected_grads], strict=True):
        assert a.dtype == b.dtype
        assert ((a.float() - b.float()).abs() <= step * b.float().abs() + 1e-6).all()

    # RoPE of q [B, H, L, D] laid out as [B, L, H, D] (the projection's view) and of a contiguous k
    q = torch.randn(2, 6, 4, 8, generator=generator).to(dtype).transpose(1, 2)
    k = torch.randn(2, 2, 6, 8, generator=generator).to(dtype)
    angles = torch.rand(2, 6, 4, generator=generator) * 6
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    expected, expected_grads = grads(lambda a, b: eager_rope(a, b, cos, sin), q, k)
    got, got_grads = grads(lambda a, b: (_RoPE.apply(a, cos, sin, ops), _RoPE.apply(b, cos, sin, ops)), q, k)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6)  # a fused multiply-add may round once, not twice
    for a, b in zip(got_grads, expected_grads, strict=True):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape
        assert ((a.float() - b.float()).abs() <= step * b.float().abs() + 1e-6).all()


@needs_compiler
def test_training_kernels_leave_the_model_as_it_was():
    from transformers.models.llama import modeling_llama

    model, rope = tiny_llama("sdpa"), modeling_llama.apply_rotary_pos_emb
    with training_kernels(model, "cpu"):
        assert modeling_llama.apply_rotary_pos_emb is not rope
        assert "forward" in vars(model.model.norm) and "forward" in vars(model.model.layers[0].mlp)
    assert modeling_llama.apply_rotary_pos_emb is rope
    assert not any("forward" in vars(module) for module in model.modules())


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_folded_query_scale_and_the_vector_swiglu_change_no_value(dtype, monkeypatch):
    """The fused RoPE taking over the attention's query scale and autocast's cast (`FOLD_QUERY_SCALE`), and SiLU * up
    on its AVX-512 path in bf16 (`BF16_SWIGLU`), do what the operations they replace did in the same order: the
    same logits and the same gradients here, bit for bit. (The SiLU's exponential is not PyTorch's, so a last-bit
    difference stays possible elsewhere; on SmolLM2's 30 layers of a PPO batch there was none.)"""
    from rlxf.lm import kernels

    model, batch = tiny_llama("sdpa"), padded_batch()
    got, grads = forward(model, batch, dtype, grouped=True)
    monkeypatch.setattr(kernels, "FOLD_QUERY_SCALE", False)
    monkeypatch.setattr(kernels, "BF16_SWIGLU", False)
    expected, expected_grads = forward(model, batch, dtype, grouped=True)
    assert torch.equal(got, expected)
    for name, grad in expected_grads.items():
        assert torch.equal(grads[name], grad), name
