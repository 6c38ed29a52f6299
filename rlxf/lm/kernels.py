"""The kernels of the forwards that PPO differentiates, on CPU: `training_kernels(model, device_type)`.

A PPO epoch of the benchmark (SmolLM2-135M, 4 x 82 tokens, bf16, 2 threads) spent about 40 % of its time outside the
matmuls, in some 150 small PyTorch operations per layer, forward and backward, each a few microseconds of dispatch
and a pass over memory. While `training_kernels` lasts, a Llama model runs:

  attention   `grouped_attention`: the G query heads that share a key/value head as G * L rows of one matmul
              (transformers' eager and SDPA paths copy every key and value head G times, and sum the copies'
              gradients again), an fp32 softmax, no checks for fully masked rows
  RMSNorm     y = w * (x * rstd), rstd = 1 / sqrt(mean(x^2) + eps): one pass forward and one backward
  SiLU * up   h = silu(gate) * up: one pass each way (fp32; bf16 where the CPU has AVX512-BF16: GCC keeps the
              portable loop over bf16 scalar, slower than PyTorch's operations)
  RoPE        q cos + rotate_half(q) sin: one pass each way, the queries written in the layout the attention reads,
              already times the attention's scale 1 / sqrt(d) and, like the keys, rounded to the dtype autocast
              gives the matmul (`FOLD_QUERY_SCALE`: the same operations in the same order, two passes fewer)

The last three are C++ operations of `rlxf.lm.fused` (`decode_ops.cpp`) with the roundings of the eager operations
they replace: the same values up to the order of their sums (within an ulp or two; `tests/test_training_kernels.py`
compares values and gradients). Where the extension is not built, or a module does not match what they compute (a
trainable norm weight, another activation, another dtype), the module runs its own forward. Rollout forwards run
under the same context, so that the PPO ratio is exactly 1 before the first update.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from rlxf.lm import fused

TRAINING_ATTENTION = "rlxf_grouped"  # the transformers attention implementation `training_kernels` selects on CPU
BF16_SWIGLU = True  # bf16 SiLU * up on the fused operation where it has its AVX-512 path (tests switch it off)
FOLD_QUERY_SCALE = True  # the fused RoPE applies the attention's query scale and autocast's cast (tests switch it off)


def grouped_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                      **kwargs) -> tuple[torch.Tensor, None]:
    """softmax(q k^T * scaling + mask) v with the query heads of one key/value head stacked as rows of one matmul.

    A transformers attention function (`AttentionInterface`, registered as `TRAINING_ATTENTION`): query [B, H, L, D],
    key and value [B, KV, S, D] with H = G * KV, an additive mask [B, 1, L, S] (transformers' eager mask) -> [B, L, H,
    D]. The scores add the fp32 mask and the softmax runs in fp32 (a fully masked row, a padding position, stays
    finite: the mask is the dtype's minimum, not -inf); the probabilities are rounded to the values' dtype for the
    second matmul. What it does not cover (soft-capping, sliding windows, sinks, biases) goes to SDPA's math kernel.
    """
    unsupported = [name for name in ("softcap", "sliding_window", "s_aux", "position_bias")
                   if kwargs.get(name) is not None]
    if unsupported:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        with sdpa_kernel(SDPBackend.MATH):
            return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                          **kwargs)
    b, heads, length, dim = query.shape
    kv, slots = key.shape[1], key.shape[2]
    if heads % kv:
        raise ValueError(f"grouped_attention: {heads} query heads do not divide into {kv} key/value heads")
    group = heads // kv
    scale = dim**-0.5 if scaling is None else scaling
    done = getattr(query, "rlxf_scaled", None)  # the fused RoPE scaled the queries already (`_rope`)
    if done is None:
        query = query * scale
    elif done != scale:
        query = query * (scale / done)
    q = query.reshape(b, kv, group * length, dim)
    scores = torch.matmul(q, key.transpose(-1, -2)).view(b, kv, group, length, slots)
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, None, :, :slots]
    elif length > 1 and getattr(module, "is_causal", True):
        causal = torch.ones(length, slots, dtype=torch.bool, device=query.device).tril(slots - length)
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    if dropout > 0:
        probs = F.dropout(probs, p=dropout, training=True)
    out = torch.matmul(probs.view(b, kv, group * length, slots), value)
    return out.view(b, heads, length, dim).transpose(1, 2), None


@functools.cache
def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(TRAINING_ATTENTION, grouped_attention)
    AttentionMaskInterface.register(TRAINING_ATTENTION, eager_mask)


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps, ops):
        y, rstd = ops.rms_norm(x, weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        ctx.ops = ops
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, rstd = ctx.saved_tensors
        return ctx.ops.rms_norm_backward(x, weight, rstd, grad.float().contiguous()), None, None, None


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up, ops):
        ctx.save_for_backward(gate, up)
        ctx.ops = ops
        return ops.swiglu(gate, up)

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        grad_gate, grad_up = ctx.ops.swiglu_backward(gate, up, grad.to(gate.dtype).contiguous())
        return grad_gate, grad_up, None


class _RoPE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos, sin, ops, scale=1.0, out_dtype=torch.float32):
        ctx.save_for_backward(cos, sin)
        ctx.ops, ctx.dtype, ctx.scale = ops, x.dtype, scale
        return ops.rope(x, cos, sin, scale, out_dtype)

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        grad = grad.float()
        if ctx.scale != 1.0:  # eager: the cast's gradient, then the scale's (fp32), then RoPE's
            grad = grad * ctx.scale
        if grad.stride(-1) != 1:
            grad = grad.contiguous()
        return ctx.ops.rope_backward(grad, cos, sin, ctx.dtype), None, None, None, None, None


def _rms_norm_forward(module: nn.Module, ops, original, hidden_states: torch.Tensor) -> torch.Tensor:
    weight = module.weight
    if (hidden_states.dtype != torch.float32 or weight.dtype != torch.float32 or weight.requires_grad
            or not hidden_states.is_contiguous()):
        return original(hidden_states)
    return _RMSNorm.apply(hidden_states, weight.detach(), float(module.variance_epsilon), ops)


def _mlp_forward(module: nn.Module, ops, original, x: torch.Tensor) -> torch.Tensor:
    gate, up = module.gate_proj(x), module.up_proj(x)
    fused_dtypes = (torch.float32, torch.bfloat16) if BF16_SWIGLU and getattr(ops, "swiglu_vector_bf16", False) else (
        torch.float32,)  # bf16 without AVX512-BF16: GCC keeps the loop scalar (1.3 ns per element, PyTorch's 0.5)
    if gate.dtype not in fused_dtypes or up.dtype != gate.dtype or not (gate.is_contiguous() and up.is_contiguous()):
        return module.down_proj(module.act_fn(gate) * up)
    return module.down_proj(_SwiGLU.apply(gate, up, ops))


def _rope(ops, original, q, k, cos, sin, unsqueeze_dim=1):
    usable = (unsqueeze_dim == 1 and cos.dtype == torch.float32 and sin.dtype == torch.float32 and cos.dim() == 3
              and all(t.dtype in (torch.float32, torch.bfloat16) and t.dim() == 4 and t.stride(-1) == 1
                      for t in (q, k)))
    if not usable:
        return original(q, k, cos, sin, unsqueeze_dim)
    if cos.shape[0] != q.shape[0]:  # one row of positions for the whole batch
        cos, sin = cos.expand(q.shape[0], -1, -1), sin.expand(q.shape[0], -1, -1)
    cos, sin = cos.contiguous(), sin.contiguous()
    if not FOLD_QUERY_SCALE:
        return _RoPE.apply(q, cos, sin, ops), _RoPE.apply(k, cos, sin, ops)
    # What `grouped_attention` does next, done here in the same order: the queries times the softmax scale, and both
    # rounded to the dtype autocast gives the matmul (two passes over q and k, and their gradients, fewer)
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32
    scale = q.shape[-1] ** -0.5
    query = _RoPE.apply(q, cos, sin, ops, scale, dtype)
    query.rlxf_scaled = scale
    return query, _RoPE.apply(k, cos, sin, ops, 1.0, dtype)


def _llama_parts(model: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """The RMSNorms and SwiGLU MLPs of a Llama model that the fused operations compute exactly as written."""
    from transformers.models.llama import modeling_llama

    norms = [m for m in model.modules() if type(m) is modeling_llama.LlamaRMSNorm]
    mlps = [m for m in model.modules() if type(m) is modeling_llama.LlamaMLP
            and getattr(m.config, "hidden_act", None) == "silu" and getattr(m.config, "pretraining_tp", 1) == 1]
    return norms, mlps


@contextmanager
def training_kernels(model: nn.Module, device_type: str):
    """Run `model`'s forwards (and so their backwards) on this module's kernels while this lasts, on CPU; elsewhere
    (a GPU: PyTorch's own kernels, its SDPA included) nothing changes. The attention applies to any transformers
    model whose config selects its attention implementation; RMSNorm, SiLU * up and RoPE to Llama models (SmolLM2),
    when the fused extension is built (`rlxf.lm.fused`; `RLXF_FUSED_DECODE=0` leaves them out)."""
    config = getattr(model, "config", None)
    if device_type != "cpu" or config is None or not hasattr(config, "_attn_implementation"):
        yield
        return
    _register_attention()
    before = config._attn_implementation
    ops = fused.ops()
    patched, rope_before = [], None
    try:
        config._attn_implementation = TRAINING_ATTENTION
        if ops is not None:
            from transformers.models.llama import modeling_llama

            norms, mlps = _llama_parts(model)
            for module in norms:
                module.forward = functools.partial(_rms_norm_forward, module, ops, module.forward)
                patched.append(module)
            for module in mlps:
                module.forward = functools.partial(_mlp_forward, module, ops, module.forward)
                patched.append(module)
            if norms or mlps:
                rope_before = modeling_llama.apply_rotary_pos_emb
                modeling_llama.apply_rotary_pos_emb = functools.partial(_rope, ops, rope_before)
        yield
    finally:
        config._attn_implementation = before
        for module in patched:
            del module.forward  # the instance attribute: the class's forward again
        if rope_before is not None:
            from transformers.models.llama import modeling_llama

            modeling_llama.apply_rotary_pos_emb = rope_before
