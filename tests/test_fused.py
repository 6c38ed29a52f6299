"""rlxf.lm.fused: the fused decode operations compute what the PyTorch operations they replace compute."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F

from rlxf.lm import decode, fused
from rlxf.lm.generation import sample_tokens

pytestmark = [pytest.mark.usefixtures("one_thread"),  # tests/conftest.py
              pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler to build the extension")]

BATCH, HEADS, KV, HD, SLOTS, WIDTH = 3, 6, 2, 16, 11, 48


@pytest.fixture(scope="module")
def ops():
    built = fused.ops()
    assert built is not None, "the extension did not build (see the RuntimeWarning)"
    return built


def eager_attention(q, cache, allowed, dtype):
    """What decode._forward computes for one step: bf16/fp32 scores (scale folded in q), mask, softmax, values."""
    groups = HEADS // KV
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, float("-inf"))[:, None, None]
    scores = torch.matmul(q.view(BATCH, KV, groups, HD), cache[0].transpose(-1, -2)).add_(mask)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(dtype)
    return torch.matmul(probs, cache[1]).reshape(BATCH, 1, HEADS * HD)


def inputs(dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    cache = torch.randn(2, BATCH, KV, SLOTS, HD, generator=generator).to(dtype)
    allowed = torch.rand(BATCH, SLOTS, generator=generator) > 0.3
    allowed[:, 0] = True
    q = torch.randn(BATCH, HEADS, HD, generator=generator).to(dtype)
    return generator, cache, allowed, q


def ulps(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """|a - b| in units of the dtype's spacing at b's magnitude, or at 1 below 1 (the inputs here are O(1): a sum that
    cancels, like RoPE's, may round to a few ulps of its small result but not of its terms)."""
    spacing = torch.finfo(dtype).eps * b.float().abs().clamp(min=1.0)
    return (a.float() - b.float()).abs() / spacing


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_operations_match_the_pytorch_operations(ops, dtype):
    generator, cache, allowed, q = inputs(dtype)
    # residual add + RMSNorm + rounding
    x = torch.randn(BATCH, 1, WIDTH, generator=generator)
    delta, weight = torch.randn(BATCH, 1, WIDTH, generator=generator).to(dtype), torch.rand(WIDTH) + 0.5
    expected_x = x + delta.float()
    expected = F.rms_norm(expected_x, (WIDTH,), weight, 1e-5).to(dtype)
    got = ops.add_rms(x, delta, weight, 1e-5, dtype)
    assert torch.equal(x, expected_x)  # the residual add is in place, exactly
    assert ulps(got, expected, dtype).max() <= 1
    # RoPE of queries and keys + the cache write (value heads: cos 1, sin 0)
    qkv = torch.randn(BATCH, 1, (HEADS + 2 * KV) * HD, generator=generator).to(dtype)
    cos = torch.randn(BATCH, 1, HEADS + 2 * KV, HD, generator=generator)
    sin = torch.randn(BATCH, 1, HEADS + 2 * KV, HD, generator=generator)
    cos[:, :, HEADS + KV:], sin[:, :, HEADS + KV:] = 1.0, 0.0
    rotated = decode._rotate(qkv.view(BATCH, 1, HEADS + 2 * KV, HD), cos, sin).to(dtype)
    target = cache.clone()
    got_q = ops.rope_cache(qkv, cos, sin, target, HEADS, 4)
    assert ulps(got_q, rotated[:, 0, :HEADS], dtype).max() <= 1
    assert ulps(target[:, :, :, 4], rotated[:, 0, HEADS:].view(BATCH, 2, KV, HD).transpose(0, 1), dtype).max() <= 1
    assert torch.equal(target[1, :, :, 4], qkv.view(BATCH, HEADS + 2 * KV, HD)[:, HEADS + KV:])  # values as they are
    untouched = torch.ones(SLOTS, dtype=torch.bool)
    untouched[4] = False
    assert torch.equal(target[:, :, :, untouched], cache[:, :, :, untouched])
    # masked attention over the cache
    got = ops.attention(q, cache, allowed, 1.0)
    expected = eager_attention(q, cache, allowed, dtype)
    assert (got.float() - expected.float()).abs().max() <= (1e-5 if dtype == torch.float32 else 2e-2)
    # SiLU(gate) * up
    gate_up = torch.randn(BATCH, 1, 2 * WIDTH, generator=generator).to(dtype) * 4
    gate, up = gate_up.chunk(2, dim=-1)
    expected = F.silu(gate).mul_(up)
    assert ulps(ops.silu_mul(gate_up), expected, dtype).max() <= 2


def test_fused_operations_say_what_is_wrong_with_their_inputs(ops):
    _, cache, allowed, q = inputs(torch.float32)
    with pytest.raises(RuntimeError, match="q must be float32|must be Float"):
        ops.attention(q.bfloat16(), cache, allowed, 1.0)
    with pytest.raises(RuntimeError, match="slot 11 outside the cache's 11 slots"):
        ops.rope_cache(torch.zeros(BATCH, (HEADS + 2 * KV) * HD), torch.zeros(BATCH, HEADS + 2 * KV, HD),
                       torch.zeros(BATCH, HEADS + 2 * KV, HD), cache, HEADS, SLOTS)
    with pytest.raises(RuntimeError, match="contiguous"):
        ops.sample(torch.zeros(5, 4).t(), torch.zeros(4, dtype=torch.float64), 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_sampler_draws_what_the_pytorch_sampler_draws(ops, monkeypatch, dtype):
    """Same uniforms, same inverse CDF: the same tokens (the sums' order differs, which matters only for a uniform
    within ~1e-7 of a boundary)."""
    logits = (torch.randn(400, 1000, generator=torch.Generator().manual_seed(3)) * 3).to(dtype)
    logits[:, 500:] -= 20  # a long tail
    for temperature, top_k, top_p in ((1.0, 0, 1.0), (0.7, 0, 1.0), (0.7, 50, 0.9)):
        torch.manual_seed(5)
        got = decode.sample_from_logits(logits, temperature, top_k, top_p)
        monkeypatch.setattr(fused, "enabled", lambda: False)
        torch.manual_seed(5)
        expected = decode.sample_from_logits(logits.float(), temperature, top_k, top_p)
        monkeypatch.undo()
        assert (got == expected).float().mean() >= 0.995, (temperature, top_k, top_p)


@pytest.mark.parametrize("largest_fused_attention", [8, 0])  # the fused attention, and PyTorch's for larger batches
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_decode_step_computes_the_eager_step(ops, monkeypatch, dtype, largest_fused_attention):
    from rlxf.lm.precision import Precision
    from tests.test_decode import batch_of, decode_logits, policy

    model, _ = policy(Precision(dtype, "cpu", "test"))
    batch = batch_of()
    mask = batch["attention_mask"].bool()
    monkeypatch.setattr(decode, "FUSED_ATTENTION_MAX_BATCH", largest_fused_attention)
    monkeypatch.setattr(decode, "VECTOR_ATTENTION", largest_fused_attention > 0)
    got = decode_logits(model, batch, dtype, split=4)[mask]
    monkeypatch.setattr(fused, "enabled", lambda: False)
    expected = decode_logits(model, batch, dtype, split=4)[mask]
    tolerance = 1e-4 if dtype == torch.float32 else 0.05 * expected.abs().max()
    assert (got - expected).abs().max() <= tolerance


def test_decoding_falls_back_to_pytorch_when_the_extension_cannot_be_built(monkeypatch):
    from tests.test_decode import policy

    def fail():
        raise OSError("no compiler here")

    monkeypatch.setattr(fused, "_build", fail)
    fused._module.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="could not be built .*no compiler here.*PyTorch operations"):
            assert fused.ops() is None
        model, tokenizer = policy()
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # warned once, not in every step
            responses = sample_tokens(model, [torch.tensor([5, 6, 7])] * 2, max_new_tokens=4, temperature=1.0,
                                      pad_id=tokenizer.pad_token_id, eos_ids={-1}, dtype="fp32")
        assert [len(r) for r in responses] == [4, 4]
    finally:
        fused._module.cache_clear()


def test_the_fused_loops_run_on_torchs_threads():
    # at::parallel_for runs serially in an extension compiled without OpenMP: the training kernels once did, on one
    # thread of two, unnoticed
    ops = fused.ops()
    assert ops is not None and ops.rlxf_openmp, "this machine's compiler has OpenMP: the extension should use it"
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert ops.parallel_threads(64) == 2
    finally:
        torch.set_num_threads(before)


def test_without_openmp_the_extension_is_built_without_it(monkeypatch):
    built = []

    class Module:
        pass

    def load(flags, ldflags):
        built.append((tuple(flags), tuple(ldflags)))
        if "-fopenmp" in flags:
            raise RuntimeError("unrecognized command-line option '-fopenmp'")
        return Module()

    monkeypatch.setattr(fused, "_load", load)
    module = fused._build()
    assert module.rlxf_openmp is False
    assert built == [(tuple(fused.FLAGS + fused.OPENMP), tuple(fused.OPENMP)), (tuple(fused.FLAGS), ())]


def small_kernel(ops, dtype=torch.bfloat16):
    if not ops.small_linear_supports(dtype):
        pytest.skip(f"this CPU has no {'AVX512-BF16' if dtype == torch.bfloat16 else 'AVX-512'}: the {dtype} decode "
                    "matmuls run on oneDNN")
    return ops


@pytest.mark.parametrize("rows", [1, 3, 4, 8, 13, 16, 21, 64])
@pytest.mark.parametrize(("out", "inner"), [(96, 70), (48, 576), (160, 1536)])  # 70: pairs left after the unrolling
def test_small_linear_is_a_bf16_matmul(ops, rows, out, inner):
    """fp32 sums of bf16 products, rounded once: the exact product rounded to bf16, up to the sums' order."""
    kernel = small_kernel(ops)
    assert ops.small_linear_built
    generator = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, inner, generator=generator).bfloat16()
    weight = torch.randn(out, inner, generator=generator).bfloat16()
    got = kernel.small_linear(x, kernel.small_pack(weight), out)
    exact = x.double() @ weight.double().t()
    assert got.shape == (rows, out) and got.dtype == torch.bfloat16
    # one rounding to bf16, plus what fp32 sums of `inner` terms may add in another order
    bound = 2.0**-8 * exact.abs() + inner * 2.0**-24 * (x.double().abs() @ weight.double().abs().t())
    assert ((got.double() - exact).abs() <= bound).all()
    assert (got == exact.bfloat16()).float().mean() >= 0.99


@pytest.mark.parametrize("rows", [1, 3, 4, 8, 13, 16, 21, 64])
@pytest.mark.parametrize(("out", "inner"), [(96, 70), (48, 577), (160, 1536)])  # 577: odd widths are fine in fp32
def test_small_linear_is_an_fp32_matmul(ops, rows, out, inner):
    """fp32 products and sums: the exact product up to the rounding of `inner` fp32 additions in any order."""
    kernel = small_kernel(ops, torch.float32)
    generator = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, inner, generator=generator)
    weight = torch.randn(out, inner, generator=generator)
    got = kernel.small_linear(x, kernel.small_pack(weight), out)
    exact = x.double() @ weight.double().t()
    assert got.shape == (rows, out) and got.dtype == torch.float32
    bound = inner * 2.0**-24 * (x.double().abs() @ weight.double().abs().t())
    assert ((got.double() - exact).abs() <= bound).all()
    # no looser than PyTorch's own fp32 matmul of the same values
    assert (got.double() - exact).abs().mean() <= 2 * ((x @ weight.t()).double() - exact).abs().mean()


def test_small_linear_says_what_is_wrong_with_its_inputs(ops):
    kernel = small_kernel(ops)
    weight = torch.randn(32, 8).bfloat16()
    with pytest.raises(RuntimeError, match="must be a multiple of 16"):
        kernel.small_pack(torch.randn(20, 8).bfloat16())
    with pytest.raises(RuntimeError, match=r"in \(7\) even"):
        kernel.small_pack(torch.randn(32, 7).bfloat16())
    with pytest.raises(RuntimeError, match="bf16 or fp32 CPU tensor"):
        kernel.small_pack(weight.double())
    with pytest.raises(RuntimeError, match="x must be a 2-d bf16 CPU tensor"):
        kernel.small_linear(torch.randn(2, 8), kernel.small_pack(weight), 32)
    with pytest.raises(RuntimeError, match=r"is \[32, 8\], not \[32, 6\]"):
        kernel.small_linear(torch.randn(2, 6).bfloat16(), kernel.small_pack(weight), 32)
    with pytest.raises(RuntimeError, match=r"is \[32, 8\], not \[16, 16\]"):  # as many values, another shape
        kernel.small_linear(torch.randn(2, 16).bfloat16(), kernel.small_pack(weight), 16)
    with pytest.raises(RuntimeError, match="no rows"):
        kernel.small_linear(torch.randn(0, 8).bfloat16(), kernel.small_pack(weight), 32)


@pytest.mark.parametrize(("batch", "heads", "kv", "hd"), [(64, 9, 3, 64), (5, 4, 4, 32), (2, 16, 2, 128)])
def test_vector_attention_is_the_eager_attention_in_bf16(ops, batch, heads, kv, hd):
    """The AVX-512 path (`vector_attention`: bf16, any batch) against the eager operations, at SmolLM2's shape too."""
    if not ops.vector_attention(torch.bfloat16, heads, kv, hd):
        pytest.skip("no AVX512-BF16 here: bf16 attention runs the portable loop")
    assert not ops.vector_attention(torch.float32, heads, kv, hd) and not ops.vector_attention(torch.bfloat16, 9, 3, 72)
    generator = torch.Generator().manual_seed(batch)
    slots = 37
    cache = torch.randn(2, batch, kv, slots, hd, generator=generator).bfloat16()
    allowed = torch.rand(batch, slots, generator=generator) > 0.3
    allowed[:, 0] = True
    q = (torch.randn(batch, heads, hd, generator=generator) * hd**-0.5).bfloat16()
    got = ops.attention(q, cache, allowed, 1.0)
    groups = heads // kv
    mask = torch.zeros(allowed.shape, dtype=torch.bfloat16).masked_fill_(~allowed, float("-inf"))[:, None, None]
    scores = torch.matmul(q.view(batch, kv, groups, hd), cache[0].transpose(-1, -2)).add_(mask)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).bfloat16()
    expected = torch.matmul(probs, cache[1]).reshape(batch, 1, heads * hd)
    assert (got.float() - expected.float()).abs().max() <= 2e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_decoding_on_the_small_kernel_matches_onednn(ops, monkeypatch, dtype):
    """The weights are held once, in the kernel's layout, and every decode matmul (the prompt's and the steps') gives
    what oneDNN's prepacked matmul gives, up to the order of the fp32 sums."""
    from rlxf.lm.precision import Precision
    from tests.test_decode import batch_of, decode_logits, policy

    small_kernel(ops, dtype)
    model, _ = policy(Precision(dtype, "cpu", "test"))
    batch = batch_of()
    mask = batch["attention_mask"].bool()
    weights = decode.rollout_weights(model, dtype)
    assert all(m.small is not None and m.weight is None for m in (weights.layers[0].qkv, weights.head))
    got = decode_logits(model, batch, dtype, split=4)[mask]
    monkeypatch.setattr(decode, "SMALL_LINEAR", False)
    assert decode.rollout_weights(model, dtype).layers[0].qkv.small is None  # rebuilt for oneDNN
    expected = decode_logits(model, batch, dtype, split=4)[mask]
    tolerance = 0.05 if dtype == torch.bfloat16 else 1e-4
    assert (got - expected).abs().max() <= tolerance * expected.abs().max()
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() >= (0.9 if dtype == torch.bfloat16 else 0.99)
