"""Fast sampling for Llama-family decoders: merged rollout weights, a static KV cache, inverse-CDF sampling.

`generate` (transformers) spends most of a decode step on other things than reading the weights once: per-layer
module dispatch, LoRA's two extra matmuls per adapted projection (plus peft's bookkeeping), autocast casting fp32
weights and LoRA factors again in every step, the dynamic KV cache's `cat` of every layer's keys and values, CPU
flash attention (slow for one query token), logit processors, and `multinomial` drawing an exponential per
vocabulary entry (49k per row per step). Here a step is:

    x = embed(token);  for each layer:  h = rms(x);  q,k,v = h W_qkv;  x += attn(rope(q), K, V) W_o
                                         h = rms(x);  x += (silu(h W_gate) * (h W_up)) W_down
    logits = rms(x) W_head;   token = first i with cdf_i > u * cdf_V,   cdf = cumsum(softmax(logits / T)),  u ~ U(0, 1)

with `W = W_base + (alpha / r) B A` merged once per policy version (`rollout_weights`, cached on the model and rebuilt
when a parameter changed in place, e.g. after an optimizer step), stored in the compute dtype (bf16 under bf16
autocast: the same values autocast makes of them, up to one rounding of the merged sum), q/k/v and gate/up fused into
one matmul each, and stored for the matmul kernel that reads them fastest: on a CPU with AVX-512 (AVX512-BF16 for
bf16) rlxf's own (`small_linear` in `decode_ops.cpp`, which streams the weights at close to the copy bandwidth for a
few rows), elsewhere oneDNN's on prepacked weights (`rlxf.lm.precision.onednn_pack`: a plain [out, in] weight is
reordered by the kernel in every call, and on CPU BLAS reads it at a fraction of the bandwidth when the batch is a
few rows), keys and values written into one preallocated zeroed tensor per layer that attention reads whole under a
mask (a slice of the cache would be copied in every layer). A step of a 135M model is bound by per-operation
dispatch nearly as much as by the weights (about forty PyTorch operations per layer besides the four matmuls, a few
microseconds each), so a decode step runs the rest of a layer through four fused C++ operations (`rlxf.lm.fused`,
compiled on first use: residual add + RMSNorm, RoPE + cache write, attention, SiLU * up) and samples in one more;
without a compiler it runs the PyTorch operations, kept few: one RoPE over all heads, the softmax scale folded into
the queries where that is exact, residual adds in place. The loop runs under `torch.inference_mode`. The residual
stream, norms, RoPE and the softmax stay fp32 and results are rounded to the compute dtype where autocast rounds
them (the fused operations add in another order, so they may differ from eager in the last bit). One uniform per row
and an inverse CDF draw exactly from softmax(logits / T) (after the same top-k / top-p filtering transformers
applies); a test checks the sampled frequencies against softmax.

`supports(model)` says whether a model can take this path (Llama architecture, LoRA adapters only on Linear layers);
`rlxf.lm.generation.sample_tokens` falls back to `generate` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rlxf.infra.memory import reuse_freed_memory
from rlxf.lm.fused import ops
from rlxf.lm.precision import onednn_linear, onednn_pack, onednn_packs

SUPPORTED_MODEL_TYPES = ("llama",)
_CACHE_ATTRIBUTE = "_rlxf_rollout_weights"  # one cached RolloutWeights per model object
FUSED_ATTENTION_MAX_BATCH = 8  # decode batches up to this size use the fused attention kernel
VECTOR_ATTENTION = True  # its AVX-512 path (bf16) at every batch size (tests switch it off to compare)
FUSED_DTYPES = (torch.float32, torch.bfloat16)  # what rlxf/lm/decode_ops.cpp computes in
PACK_WEIGHTS = True  # prepack the decode matmuls for oneDNN where torch has it (tests switch it off to compare)
SMALL_LINEAR = True  # bf16 decode matmuls on decode_ops.cpp's kernel where it is built (tests switch it off to compare)


class Unsupported(ValueError):
    """The model has something the fast path does not implement (the caller falls back to `generate`)."""


@dataclass
class Matrix:
    """One decode matmul's weight [out, in] in one of three forms: `small`, in `decode_ops.cpp`'s layout for
    `small_linear` (where that kernel is built for the dtype: it takes every decode matmul, prompts included), or
    `weight`, prepacked for oneDNN (`onednn_pack`) or plain."""

    shape: tuple[int, int]
    dtype: torch.dtype
    weight: torch.Tensor | None = None
    small: torch.Tensor | None = None

    @property
    def out_features(self) -> int:
        return self.shape[0]

    def numel(self) -> int:
        return self.shape[0] * self.shape[1]


@dataclass
class _Layer:
    qkv: Matrix
    o: Matrix
    gate_up: Matrix
    down: Matrix
    input_norm: torch.Tensor
    post_norm: torch.Tensor


@dataclass
class RolloutWeights:
    """What a decode step reads: merged, fused weights in the compute dtype, plus the key they were built for."""

    key: tuple
    dtype: torch.dtype
    layers: list[_Layer]
    embed: torch.Tensor
    norm: torch.Tensor
    head: Matrix
    rotary: nn.Module
    heads: int
    kv_heads: int
    head_dim: int
    eps: float


def _decoder(model) -> nn.Module:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        raise Unsupported(f"model type {getattr(config, 'model_type', None)!r} (supported: {SUPPORTED_MODEL_TYPES})")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise Unsupported("biases in attention or MLP")
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "pretraining_tp", 1) != 1:
        raise Unsupported("activation other than silu or pretraining_tp != 1")
    if not isinstance(base.get_input_embeddings(), nn.Embedding):
        raise Unsupported("the input embedding is adapted (not a plain nn.Embedding)")
    return base


def _effective_weight(module: nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """The weight a Linear (or a peft LoRA Linear with its active adapters) applies, in `dtype`: W + sum scale B A,
    summed in fp32 and rounded once. A weight without adapters is not copied when it is already in `dtype` (no fp32
    transient: for SmolLM2 the tied head alone would be 108 MB of it)."""
    if type(module).__name__ in ("FrozenLowPrecisionLinear", "FrozenOneDNNLinear") or type(module) is nn.Linear:
        if module.bias is not None:
            raise Unsupported("a Linear with a bias")
        return module.weight.to(dtype)
    if hasattr(module, "base_layer") and hasattr(module, "lora_A"):
        active = [name for name in module.active_adapters if name in module.lora_A]
        if getattr(module, "merged", False) or getattr(module, "disable_adapters", False) or not active:
            return _effective_weight(module.base_layer, dtype)
        weight = _effective_weight(module.base_layer, torch.float32)
        for name in active:
            if getattr(module, "use_dora", {}).get(name, False):
                raise Unsupported("DoRA adapters")
            lora_a, lora_b = module.lora_A[name].weight.float(), module.lora_B[name].weight.float()
            weight = weight + module.scaling[name] * (lora_b @ lora_a)
        return weight.to(dtype)
    raise Unsupported(f"a projection of type {type(module).__name__}")


def _key(model, dtype: torch.dtype) -> tuple:
    """What the rollout weights depend on: every parameter's storage and in-place version, the active adapters, and
    the LoRA factors' values (small; `p.data.copy_` writes do not bump a version, so their sums are part of the key)."""
    lora_layers = [m for m in model.modules() if hasattr(m, "lora_A")]
    active = tuple(tuple(m.active_adapters) for m in lora_layers)
    disabled = tuple(bool(getattr(m, "disable_adapters", False)) for m in lora_layers)
    params = tuple((p.data_ptr(), p._version, p.dtype) for p in model.parameters())
    lora = [p.detach().float() for name, p in model.named_parameters() if "lora_" in name]
    sums = torch.stack([torch.stack([p.sum(), p.square().sum()]) for p in lora]).flatten().tolist() if lora else []
    return dtype, active, disabled, params, tuple(sums)


@torch.no_grad()
def rollout_weights(model, dtype: torch.dtype) -> RolloutWeights:
    """The merged, fused decode weights of `model`'s active adapter in `dtype` (cached per model and version)."""
    pack, small = _packs(dtype), _small_kernel(dtype)
    key = (*_key(model, dtype), pack, small is not None)  # the form of the weights too (the kernels may be off now)
    cached = getattr(model, _CACHE_ATTRIBUTE, None)
    if cached is not None and cached.key == key:
        return cached
    object.__setattr__(model, _CACHE_ATTRIBUTE, None)  # free the old copy before building the new one
    base = _decoder(model)
    config, body = base.config, base.model


    def fused(*modules):
        parts = [_effective_weight(m, dtype) for m in modules]
        weight = (torch.cat(parts) if len(parts) > 1 else parts[0]).contiguous()
        shape = (weight.shape[0], weight.shape[1])
        if pack and small is not None and _small_fits(weight):
            return Matrix(shape, dtype, small=small.small_pack(weight))
        return Matrix(shape, dtype, weight=onednn_pack(weight, rows=4) if pack else weight)

    layers = []
    for layer in body.layers:
        attn, mlp = layer.self_attn, layer.mlp
        layers.append(_Layer(qkv=fused(attn.q_proj, attn.k_proj, attn.v_proj), o=fused(attn.o_proj),
                             gate_up=fused(mlp.gate_proj, mlp.up_proj), down=fused(mlp.down_proj),
                             input_norm=layer.input_layernorm.weight.float(),
                             post_norm=layer.post_attention_layernorm.weight.float()))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    weights = RolloutWeights(key=key, dtype=dtype, layers=layers, embed=base.get_input_embeddings().weight,
                             norm=body.norm.weight.float(), head=fused(base.get_output_embeddings()),
                             rotary=body.rotary_emb, heads=config.num_attention_heads,
                             kv_heads=config.num_key_value_heads, head_dim=head_dim, eps=config.rms_norm_eps)
    object.__setattr__(model, _CACHE_ATTRIBUTE, weights)
    return weights


def release_rollout_weights(model) -> None:
    """Drop `model`'s cached rollout weights (a copy of the whole model in the compute dtype). A trainer calls this
    before an update: the update makes them stale, and holding them through it would add their size to the peak."""
    if getattr(model, _CACHE_ATTRIBUTE, None) is not None:
        object.__setattr__(model, _CACHE_ATTRIBUTE, None)


def supports(model) -> bool:
    """Whether `sample` can run `model` (Llama architecture; plain or LoRA Linear projections)."""
    try:
        base = _decoder(model)
        layer = base.model.layers[0]
        for module in (layer.self_attn.q_proj, layer.self_attn.v_proj, layer.mlp.down_proj):
            _effective_weight(module, module.weight.dtype if hasattr(module, "weight") else torch.float32)
    except (Unsupported, AttributeError, IndexError):
        return False
    return True


def _packs(dtype: torch.dtype) -> bool:
    """Whether the decode matmuls of `dtype` run on oneDNN-prepacked weights here (`PACK_WEIGHTS`).

    On CPU `F.linear` goes through BLAS (MKL in torch's x86 wheels), which reads a [out, in] matrix at a fraction of
    the memory bandwidth when the batch is a few rows, and on AMD CPUs runs fp32 on its AVX2 path; a prepacked oneDNN
    matmul reads the weights near the bandwidth (measured: `benchmarks/ppo_vs_trl.py --decode-only`).
    """
    return PACK_WEIGHTS and onednn_packs(dtype)


def _small_kernel(dtype: torch.dtype):
    """The fused module where its matmul kernel is built for `dtype` (bf16: a CPU with AVX512-BF16; fp32: AVX-512)
    and wanted (`SMALL_LINEAR`), else None.

    A decode step reads every weight once for a few rows: it is bound by how fast the weights stream from memory.
    Measured on one core of the 2-core AMD EPYC (Zen 5; the model's 121 matrices, interleaved medians), oneDNN's
    prepacked bf16 matmul reads them at 15-20 GB/s at 4 rows and `small_linear` at 23-28 (a batch-4 bf16 step 16.5 ->
    12.2 ms), and at 64 and 200 rows (large batches, prompts) the two make about the same GFLOP/s (2 threads: 607
    against 544 and 711 against 737). In fp32 on a Zen 4 EPYC (`benchmarks/ppo_vs_trl.py --decode-only --dtype fp32`)
    it took decode from 0.49 to 0.77 of the roofline at batch 4 and from 0.73 to 0.76 at batch 64
    (`results/benchmarks/ppo_vs_trl.zen4_7fb8be3.json` against `ppo_vs_trl.json`). So where it is
    built it takes all of them, and the weights are held once, in its layout.
    """
    if not SMALL_LINEAR or dtype not in (torch.bfloat16, torch.float32):
        return None
    module = ops()
    supports = getattr(module, "small_linear_supports", None)
    return module if supports is not None and supports(dtype) else None


def _small_fits(weight: torch.Tensor) -> bool:
    """Whether `small_pack` takes the [out, in] weight (out a multiple of 16; in even in bf16)."""
    even = weight.shape[-1] % 2 == 0 or weight.dtype != torch.bfloat16
    return weight.dim() == 2 and weight.shape[0] % 16 == 0 and even


def _linear(x: torch.Tensor, matrix: Matrix) -> torch.Tensor:
    """x W^T on `matrix`'s form: the small kernel's layout, a oneDNN-prepacked or a plain weight."""
    if matrix.small is not None:
        rows = x.numel() // x.shape[-1]
        out = ops().small_linear(x.reshape(rows, x.shape[-1]), matrix.small, matrix.out_features)
        return out.view(*x.shape[:-1], matrix.out_features)
    if matrix.weight.layout == torch._mkldnn:
        return onednn_linear(x, matrix.weight)
    return F.linear(x, matrix.weight)


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Llama's RMSNorm in fp32: weight * x / sqrt(mean(x^2) + eps)."""
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """RoPE in fp32: x cos + rotate_half(x) sin, with rotate_half(x) sin = roll(x, hd/2) (sign * sin) and the sign
    (-1 on the first half, +1 on the second) folded into `signed_sin` once per step: three operations, not seven."""
    return (x * cos).addcmul_(x.roll(x.shape[-1] // 2, -1), signed_sin)


@dataclass
class KVCache:
    """Keys and values of every layer in one zeroed tensor each, [2, B, kv, L, hd] (keys, then values): a step writes
    both with one copy. Attention reads a layer's cache whole, through views made once (`keys_t`: [B, kv, hd, L],
    `values`: [B, kv, L, hd]); slots not yet written are zeros, and masked."""

    kv: list[torch.Tensor]
    keys_t: list[torch.Tensor]
    values: list[torch.Tensor]

    @classmethod
    def empty(cls, w: RolloutWeights, batch: int, slots: int, dtype: torch.dtype) -> KVCache:
        # zeros, not empty: attention reads every slot (masked), and 0 * NaN from uninitialised memory would be NaN
        kv = [torch.zeros(2, batch, w.kv_heads, slots, w.head_dim, dtype=dtype) for _ in w.layers]
        return cls(kv, [t[0].transpose(-1, -2) for t in kv], [t[1] for t in kv])


def _scale_folds(head_dim: int) -> bool:
    """Whether the softmax scale head_dim^-1/2 is a power of two (hd = 64, 256, ...), which `_rotation` folds into the
    query heads exactly (so that the scores need no multiply of their own)."""
    return math.frexp(head_dim ** -0.5)[0] == 0.5


def _attend(q: torch.Tensor, keys_t: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, scale: float,
            dtype: torch.dtype) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v as autocast computes it: scores in the compute dtype (upcast and scaled only
    where the scale is not folded into q: `scale` 1), the softmax in fp32, its result rounded to the compute dtype."""
    scores = torch.matmul(q, keys_t)
    if scale != 1.0:
        scores = scores.float().mul_(scale)
    return torch.matmul(torch.softmax(scores.add_(mask), dim=-1, dtype=torch.float32).to(dtype), values)


def _rotation(w: RolloutWeights, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sign * sin of `positions` for every head of the fused q/k/v output, [B, T, heads + 2 kv, hd] (fp32).

    The value heads get cos = 1 and sin = 0: their "rotation" is the identity, exactly (bf16 -> fp32 -> bf16 is
    lossless), so one RoPE call covers the whole q/k/v output and keys and values leave it as one block. Where the
    softmax scale hd^-1/2 is a power of two (hd = 64, 256, ...), it is folded into the query heads' factors: scaling by
    a power of two is exact in fp32 and in bf16, so bf16(s q) . k = s bf16(q) . k bit for bit, and the scores need no
    upcast and multiply of their own (what autocast computes, in two operations fewer per layer).
    """
    cos, sin = w.rotary(x, positions)
    sign = torch.ones(sin.shape[-1], dtype=sin.dtype)
    sign[: sin.shape[-1] // 2] = -1.0
    factor = torch.ones(w.heads + w.kv_heads, 1, dtype=cos.dtype)  # queries, then keys
    if _scale_folds(w.head_dim):
        factor[: w.heads] = w.head_dim ** -0.5
    identity = cos.new_ones(*cos.shape[:2], w.kv_heads, cos.shape[-1])  # the value heads: cos 1, sin 0
    return (torch.cat((cos.unsqueeze(2) * factor, identity), dim=2),
            torch.cat(((sin * sign).unsqueeze(2) * factor, torch.zeros_like(identity)), dim=2))


def _forward(w: RolloutWeights, ids: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor,
             cache: KVCache, start: int) -> torch.Tensor:
    """Hidden states (fp32) of `ids` [B, T] written at cache slots start..start+T-1; `allowed` [B, T, L] says which
    of the cache's L slots each query sees (slots not yet written are zeros, and masked).

    Few operations per layer (a decode step of a small model is bound by per-operation dispatch as much as by the
    weights): one matmul for q, k and v, one RoPE over all of its heads, keys and values written into the cache with
    one copy, the cache read whole through views made once (a slice of it would be copied into a contiguous tensor
    in every layer), every query head of a kv head in one batched matmul, residual adds in place."""
    batch, steps = ids.shape
    end, slots = start + steps, allowed.shape[-1]
    x = F.embedding(ids, w.embed).float()
    groups, hd, heads, kv = w.heads // w.kv_heads, w.head_dim, w.heads, w.kv_heads
    cos, sin = _rotation(w, x, positions)
    scale = 1.0 if _scale_folds(hd) else hd ** -0.5  # 1: already in the rotated queries
    fused = ops() if steps == 1 and x.device.type == "cpu" and w.dtype in FUSED_DTYPES else None
    if fused is not None:
        return _fused_step(w, fused, x, cos, sin, allowed.reshape(batch, slots).contiguous(), cache, start, scale)
    # additive mask in the compute dtype (adding 0 or -inf to a score is exact in any dtype), one row per query row:
    # [B, 1, groups * T, L], query row j * T + t of a kv head being query head j at position t
    mask = torch.zeros(allowed.shape, dtype=w.dtype).masked_fill_(~allowed, float("-inf"))
    mask = mask.unsqueeze(1).repeat(1, 1, groups, 1)
    for i, layer in enumerate(w.layers):
        h = _rms(x, layer.input_norm, w.eps).to(w.dtype)
        qkv = _linear(h, layer.qkv).view(batch, steps, heads + 2 * kv, hd)
        qkv = _rotate(qkv, cos, sin).to(w.dtype)  # queries and keys rotated (fp32 by promotion), values as they were
        cache.kv[i][:, :, :, start:end] = qkv[:, :, heads:].view(batch, steps, 2, kv, hd).permute(2, 0, 3, 1, 4)
        # query head j of kv head c is head c * groups + j (transformers' repeat_kv): [B, kv, groups * T, hd]
        if steps == 1:  # a decode step: a view
            q = qkv[:, 0, :heads].view(batch, kv, groups, hd)
        else:
            q = qkv[:, :, :heads].reshape(batch, steps, kv, groups, hd).permute(0, 2, 3, 1, 4).reshape(
                batch, kv, groups * steps, hd)
        attn = _attend(q, cache.keys_t[i], cache.values[i], mask, scale, w.dtype)  # [B, kv, groups * T, hd]
        attn = (attn.view(batch, 1, heads * hd) if steps == 1
                else attn.view(batch, heads, steps, hd).transpose(1, 2).reshape(batch, steps, heads * hd))
        x.add_(_linear(attn, layer.o))
        h = _rms(x, layer.post_norm, w.eps).to(w.dtype)
        gate, up = _linear(h, layer.gate_up).chunk(2, dim=-1)
        x.add_(_linear(F.silu(gate).mul_(up), layer.down))
    return x


def _fused_step(w: RolloutWeights, fused, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                allowed: torch.Tensor, cache: KVCache, slot: int, scale: float) -> torch.Tensor:
    """One decode step through `rlxf.lm.fused`: per layer the four matmuls and fused operations for the rest
    (residual add + RMSNorm + rounding; RoPE + cache write; masked attention; SiLU * up), nine calls instead of about
    forty. Where the fused kernels are slower than PyTorch's (measured on the 2-core AMD EPYC: the portable attention
    loop above `FUSED_ATTENTION_MAX_BATCH` rows, whose dot products PyTorch's batched matmul does faster; SiLU * up in
    bf16), the eager operations run instead. The attention's AVX-512 path (bf16, `vector_attention`) is faster than
    PyTorch's at every batch (a batch-64 step on one core: 102 -> 77 ms, A/B in one process) and takes them all."""
    batch, groups = x.shape[0], w.heads // w.kv_heads
    small = batch <= FUSED_ATTENTION_MAX_BATCH or (
        VECTOR_ATTENTION and fused.vector_attention(w.dtype, w.heads, w.kv_heads, w.head_dim))
    mask = None if small else torch.zeros(allowed.shape, dtype=w.dtype).masked_fill_(
        ~allowed, float("-inf"))[:, None, None]  # [B, 1, 1, L]
    delta = None
    for i, layer in enumerate(w.layers):
        h = fused.add_rms(x, delta, layer.input_norm, w.eps, w.dtype)
        q = fused.rope_cache(_linear(h, layer.qkv), cos, sin, cache.kv[i], w.heads, slot)
        if small:
            attn = fused.attention(q, cache.kv[i], allowed, scale)
        else:
            attn = _attend(q.view(batch, w.kv_heads, groups, w.head_dim), cache.keys_t[i], cache.values[i], mask,
                           scale, w.dtype).view(batch, 1, w.heads * w.head_dim)
        h = fused.add_rms(x, _linear(attn, layer.o), layer.post_norm, w.eps, w.dtype)
        gate_up = _linear(h, layer.gate_up)
        if w.dtype == torch.float32:
            act = fused.silu_mul(gate_up)
        else:
            gate, up = gate_up.chunk(2, dim=-1)
            act = F.silu(gate).mul_(up)
        delta = _linear(act, layer.down)
    return x.add_(delta)


def logits_of(w: RolloutWeights, hidden: torch.Tensor, widen: bool = True) -> torch.Tensor:
    """Logits of fp32 hidden states (final norm, then the head in the compute dtype), widened to fp32 (exactly) unless
    `widen` is False: the sampler reads bf16 logits as they are (at batch 64 the copy to fp32 alone took 6 ms of a
    step)."""
    logits = _linear(_rms(hidden, w.norm, w.eps).to(w.dtype), w.head)
    return logits.float() if widen else logits


def filter_logits(scores: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """transformers' top-k then top-p filtering (the same warpers `generate` applies), for the cases that need it."""
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    if top_k and top_k < scores.shape[-1]:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    return scores


def sample_from_logits(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """One token per row drawn from softmax(filtered logits / temperature) by inverse CDF: one uniform per row.

    The unnormalised probabilities exp(s - max s) are taken in fp32 (each to fp32's relative precision, down to
    1e-38), and their running sum in float64, so that the tail of a 49k vocabulary keeps its probability mass; the
    uniform is scaled by the total instead of dividing every entry by it. (`torch.softmax(..., dtype=float64)` did
    the same in 1.3 ms per step at batch 4 and 24 ms at batch 64, most of a step's time outside the matmuls.)
    """
    filtered = (top_k and top_k < logits.shape[-1]) or top_p < 1.0
    fused = ops() if logits.device.type == "cpu" and logits.dim() == 2 and logits.dtype in FUSED_DTYPES else None
    if fused is not None:  # the same draw in one pass per row (rlxf.lm.fused: 5.8 -> 4.2 ms at batch 64, 1 thread)
        u = torch.rand(logits.shape[0], dtype=torch.float64)
        if filtered:
            return fused.sample(filter_logits(logits.float() / temperature, top_k, top_p).contiguous(), u, 1.0)
        return fused.sample(logits.contiguous(), u, float(temperature))
    scores = logits.float() / temperature if temperature != 1.0 else logits.float()
    scores = filter_logits(scores, top_k, top_p)
    cdf = (scores - scores.amax(-1, keepdim=True)).exp_().double().cumsum_(-1)
    u = torch.rand(cdf.shape[0], 1, dtype=torch.float64, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[-1] - 1)


# GenerationConfig fields whose non-default values add logit processors or constraints this loop does not apply
_PROCESSOR_DEFAULTS = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0),
                       "encoder_no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,), "min_length": (None, 0),
                       "min_new_tokens": (None, 0), "forced_bos_token_id": (None,), "forced_eos_token_id": (None,),
                       "suppress_tokens": (None,), "begin_suppress_tokens": (None,), "sequence_bias": (None,),
                       "num_beams": (None, 1), "renormalize_logits": (None, False), "exponential_decay_length_penalty":
                       (None,), "diversity_penalty": (None, 0.0), "guidance_scale": (None, 1.0),
                       "epsilon_cutoff": (None, 0.0), "eta_cutoff": (None, 0.0), "min_p": (None, 0.0),
                       "typical_p": (None, 1.0), "watermarking_config": (None,), "stop_strings": (None,),
                       "max_time": (None,), "assistant_model": (None,)}


def plain_greedy(config) -> bool:
    """Whether a GenerationConfig asks for plain greedy decoding (no processor `sample` does not implement)."""
    return not config.do_sample and all(getattr(config, field, None) in allowed
                                        for field, allowed in _PROCESSOR_DEFAULTS.items())


def sample(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int, temperature: float,
           top_k: int, top_p: float, pad_id: int, eos_ids: set[int], dtype: torch.dtype,
           greedy: bool = False) -> torch.Tensor:
    """New tokens [B, <= max_new_tokens] for left-padded prompts; a row is padded with `pad_id` after its EOS and
    the loop stops when every row has ended (what `generate` returns, without the prompt). `greedy`: the argmax.

    The loop runs under `torch.inference_mode` (no view or version tracking: about 6 % of a batch-4 bf16 step, where
    a step is some 1,300 small operations); the tokens are returned as a normal tensor, which a training forward can
    take as its input ids.
    """
    reuse_freed_memory()  # every step's logits and hidden states reuse memory already mapped (rlxf.infra.memory)
    with torch.inference_mode():
        tokens = _sample(model, input_ids, attention_mask, max_new_tokens=max_new_tokens, temperature=temperature,
                         top_k=top_k, top_p=top_p, pad_id=pad_id, eos_ids=eos_ids, dtype=dtype, greedy=greedy)
    return tokens.clone()


def _sample(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int, temperature: float,
            top_k: int, top_p: float, pad_id: int, eos_ids: set[int], dtype: torch.dtype,
            greedy: bool) -> torch.Tensor:
    w = rollout_weights(model, dtype)
    batch, prompt_len = input_ids.shape
    total = prompt_len + max_new_tokens
    cache = KVCache.empty(w, batch, total, dtype)
    valid = torch.zeros(batch, total, dtype=torch.bool)
    valid[:, :prompt_len] = attention_mask.bool()
    positions = (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)
    slots = torch.arange(total)
    # a query sees the valid keys up to itself, and itself (a pad query then has a key: no all -inf row, no NaN)
    causal = slots[:prompt_len, None] >= slots[None, :prompt_len]
    allowed = torch.zeros(batch, prompt_len, total, dtype=torch.bool)
    allowed[:, :, :prompt_len] = (causal & valid[:, None, :prompt_len]) | torch.eye(prompt_len, dtype=torch.bool)
    hidden = _forward(w, input_ids, positions, allowed, cache, 0)[:, -1:]
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long)
    done = torch.zeros(batch, dtype=torch.bool)
    next_position = positions[:, -1:] + 1
    out = []
    for step in range(max_new_tokens):
        logits = logits_of(w, hidden[:, -1], widen=False)  # the compute dtype: the sampler widens what it reads
        token = logits.argmax(-1) if greedy else sample_from_logits(logits, temperature, top_k, top_p)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        out.append(token)
        done |= torch.isin(token, eos)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        slot = prompt_len + step
        valid[:, slot] = True
        hidden = _forward(w, token[:, None], next_position, valid[:, None], cache, slot)
        next_position = next_position + 1
    return torch.stack(out, dim=1)
