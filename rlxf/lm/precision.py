"""Where the model runs and in which precision: decided once per machine from what the hardware has, never assumed.

`precision("auto" | "fp32" | "bf16", device)` -> a `Precision`: the compute dtype, a one-line reason a notebook prints,
and `autocast()`, the context every forward and `generate` runs under. Master weights, LoRA parameters, value heads
and optimizer states stay fp32; only matmuls run in bf16, and callers take log-probabilities, KL and losses in fp32
from the autocast logits. `store_frozen_weights` keeps a model's frozen Linear weights in bf16 once, instead of
autocast casting them again in every forward (the same bf16 values, so the same results; half their memory).

CPUs differ: with AVX512-BF16 or AMX-BF16 (e.g. AMD Zen 4, Intel Sapphire Rapids) bf16 matmuls are ~4x faster than
fp32; without them PyTorch emulates bf16 and it is ~100x slower. "auto" reads the CPU flags in /proc/cpuinfo (Linux)
or, where there is no /proc/cpuinfo, times a small bf16 and fp32 matmul once per process.
"""

from __future__ import annotations

import functools
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

DTYPES = ("auto", "fp32", "bf16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 matmuls
SLOW_BF16 = "expect ~100x slowdown"


@dataclass(frozen=True)
class Precision:
    """The compute dtype of one device and why it was chosen."""

    dtype: torch.dtype
    """torch.bfloat16 (matmuls under bf16 autocast) or torch.float32 (no autocast)"""
    device_type: str
    """"cpu", "cuda" or "mps": the autocast device"""
    reason: str
    """one line for humans, e.g. "cpu has avx512_bf16: bf16 autocast" """

    @property
    def name(self) -> str:
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"

    def autocast(self):
        """The context forwards run under: bf16 autocast, or nothing (plain fp32)."""
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def __str__(self) -> str:
        return f"precision {self.name} on {self.device_type}: {self.reason}"


def pick_device() -> torch.device:
    """The best available device: cuda > mps > cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.cache
def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The native-bf16 flags this CPU lists in /proc/cpuinfo; None where there is no such file (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(CPU_BF16_FLAGS) & set(line.split(":", 1)[-1].split())
    return None


@functools.cache
def cpu_bf16_speedup(size: int = 512, repeats: int = 5) -> float:
    """How many times faster a bf16 matmul is than an fp32 one on this CPU (best of `repeats`; ~20 ms, once)."""
    def best(dtype: torch.dtype) -> float:
        a = torch.randn(size, size, generator=torch.Generator().manual_seed(0)).to(dtype)  # global RNG untouched
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - start)
        return min(times)

    return best(torch.float32) / max(best(torch.bfloat16), 1e-9)


def cpu_has_fast_bf16() -> tuple[bool, str]:
    """(fast bf16 matmuls on this CPU?, what says so): the /proc/cpuinfo flags, else a timed matmul."""
    flags = cpu_bf16_flags()
    if flags is not None:
        return (True, f"cpu has {', '.join(sorted(flags))}") if flags else (False, "no bf16 instructions on this CPU")
    speedup = cpu_bf16_speedup()
    return speedup > 1.2, f"bf16 matmul {speedup:.1f}x the speed of fp32 on this CPU"


def cuda_has_bf16() -> bool:
    """Native bf16 on the current GPU (Ampere or newer); emulated bf16 on older GPUs is slow and does not count."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def check_dtype(dtype: str, owner: str = "dtype") -> str:
    """`dtype` if it is one of DTYPES; an error naming `owner` (e.g. "PPOSettings.dtype") otherwise."""
    if dtype not in DTYPES:
        raise ValueError(f"{owner} must be one of {', '.join(map(repr, DTYPES))}, got {dtype!r}")
    return dtype


def precision(dtype: str | Precision = "auto", device: torch.device | str | None = None, *,
              fast_bf16: tuple[bool, str] | None = None) -> Precision:
    """The compute precision for `device` (default: `pick_device()`): "auto" picks bf16 where the hardware runs it
    natively and fp32 elsewhere; "fp32" and "bf16" are obeyed, with a warning when bf16 would be emulated.

    `fast_bf16`: (has native bf16, why) instead of asking the hardware (tests fake it). A `Precision` is returned as is.
    """
    if isinstance(dtype, Precision):
        return dtype
    check_dtype(dtype)
    device_type = torch.device(device if device is not None else pick_device()).type
    if device_type == "cuda":
        native, why = fast_bf16 or ((True, "gpu has native bf16") if cuda_has_bf16()
                                    else (False, "gpu has no native bf16"))
    elif device_type == "cpu":
        native, why = fast_bf16 or cpu_has_fast_bf16()
    else:  # mps and others: bf16 autocast support varies; fp32 unless asked
        native, why = fast_bf16 or (False, f"{device_type}: bf16 autocast not used by default")
    if dtype == "fp32":
        return Precision(torch.float32, device_type, "fp32 as asked")
    if dtype == "bf16" and not native:
        reason = f"bf16 asked for on a {device_type} without native bf16 ({why}): {SLOW_BF16}"
        warnings.warn(reason + "; use dtype='auto' or 'fp32'", UserWarning, stacklevel=2)
        return Precision(torch.bfloat16, device_type, reason)
    if dtype == "bf16":
        return Precision(torch.bfloat16, device_type, f"{why}: bf16 autocast as asked")
    if native:
        return Precision(torch.bfloat16, device_type, f"{why}: bf16 autocast")
    return Precision(torch.float32, device_type, f"fp32: {why}")


@contextmanager
def fp32_head(model: nn.Module, chosen: Precision):
    """Under bf16, a sequence classifier's output Linear (`score` or `classifier`) runs in fp32 while this lasts.

    Its output is the score itself: a bf16 output keeps ~3 significant digits (reward ties, biases rounded away),
    while the head costs nothing next to the body. Nothing changes under fp32 or for other heads.
    """
    head = next((getattr(model, name) for name in ("score", "classifier")
                 if type(getattr(model, name, None)) is nn.Linear), None)
    if head is None or chosen.dtype == torch.float32:
        yield
        return

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.float(), head.weight.float(), None if head.bias is None else head.bias.float())

    head.forward = forward
    try:
        yield
    finally:
        del head.forward


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (cpu for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def training_precision(dtype: str | Precision = "auto") -> Precision:
    """The precision of a transformers/TRL Trainer run: the GPU if there is one (the Trainer goes there), else CPU,
    where the process then keeps freed memory for reuse (`rlxf.infra.memory.reuse_freed_memory`, as rlxf's PPO does:
    an algorithm comparison runs every trainer under the same allocator)."""
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    if device_type == "cpu":
        from rlxf.infra.memory import reuse_freed_memory

        reuse_freed_memory()
    return precision(dtype, device_type)


def trainer_precision_kwargs(chosen: Precision) -> dict:
    """TrainingArguments (and TRL config) fields for a precision: bf16 mixed precision (autocast over fp32 master
    weights; transformers 5.23 runs it on CPU only with use_cpu=True) or plain fp32; use_cpu when there is no GPU."""
    return {"bf16": chosen.dtype == torch.bfloat16, "fp16": False, **({"use_cpu": True} if chosen.device_type == "cpu"
                                                                        else {})}


def without_autocast_wrapper(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with the autocast wrapper that accelerate puts on `forward` during bf16 mixed-precision training
    removed, so that a trained model's later forwards follow the caller's precision (and match a reloaded copy)."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_fp32_wrapper=False)


PACK_FROZEN = True  # frozen fp32 CPU Linears: oneDNN's matmul on prepacked weights where torch has it
# bf16 as well? Off: F.linear reaches oneDNN in bf16 already; prepacking made SmolLM2's layer matmuls ~20 % (forward)
# and ~12 % (input gradient) faster in isolation, but the PPO benchmark's update barely moved (343 vs 333 GFLOP/s)
# while its peak RSS rose from 2.4 to 2.8 GB (packed W and W^T beside the bf16 weights). In fp32 it is ~2.3x faster.
PACK_FROZEN_BF16 = False


def onednn_packs(dtype: torch.dtype) -> bool:
    """Whether this torch build can run CPU matmuls of `dtype` on oneDNN-prepacked weights (x86 builds; bf16 where
    the CPU has it)."""
    if not torch.backends.mkldnn.is_available():
        return False
    return dtype == torch.float32 or (dtype == torch.bfloat16 and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))


def onednn_pack(weight: torch.Tensor, rows: int = 256) -> torch.Tensor:
    """`weight` [out, in] reordered once into oneDNN's blocked layout for about `rows` input rows (`onednn_linear`)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, rows)


def onednn_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x W^T + b with W prepacked by `onednn_pack`."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")


def onednn_available(dtype: torch.dtype = torch.float32, device_type: str = "cpu") -> bool:
    """Whether frozen Linears of `dtype` run through oneDNN with prepacked weights here (`PACK_FROZEN`, and
    `PACK_FROZEN_BF16` for bf16)."""
    if not PACK_FROZEN or device_type != "cpu" or (dtype == torch.bfloat16 and not PACK_FROZEN_BF16):
        return False
    return onednn_packs(dtype)


class _PackCache:
    """A frozen Linear's oneDNN-packed weights, keyed by the weight's storage and version; never copied (a deep copy
    or a pickle of the module starts empty and packs again on its first call)."""

    def __init__(self):
        self.key, self.forward, self.backward = None, None, None

    def __deepcopy__(self, memo):
        return _PackCache()

    def __reduce__(self):
        return _PackCache, ()


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b by oneDNN with W prepacked; the input gradient dy W by oneDNN with W^T prepacked (W is frozen:
    no weight gradient)."""

    @staticmethod
    def forward(ctx, x, module, bias):
        ctx.module = module
        return onednn_linear(x, module._packed(backward=False), bias)

    @staticmethod
    def backward(ctx, grad):
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return onednn_linear(grad, ctx.module._packed(backward=True)), None, None


class _PackedFrozenLinear(nn.Linear):
    """A frozen nn.Linear that can run through oneDNN with its weight prepacked (`_onednn`).

    On CPU `F.linear` reaches oneDNN (bf16) or BLAS (fp32: MKL in torch's x86 wheels, which runs its AVX2 path on AMD
    CPUs) with a plain [out, in] weight that the kernel reorders on every call. Measured on the 2-core AMD EPYC (torch
    2.13, 1 thread): square fp32 matmuls reach 95 GFLOP/s through `torch.matmul` and 225 through oneDNN; SmolLM2-135M's
    layer matmuls at 328 rows, forward and input gradient, 78 and 91 GFLOP/s against 201 and 192 in fp32, and at 248
    rows in bf16 319 and 383 against 395 and 435. The packed copies (W for the forward, W^T once a backward needs it)
    are built on first use and rebuilt when the weight changes: the same arithmetic in another kernel.
    """

    def _packed(self, backward: bool) -> torch.Tensor:
        cache = self.__dict__.get("_onednn_cache")
        if cache is None:
            cache = self.__dict__["_onednn_cache"] = _PackCache()
        key = (self.weight.data_ptr(), self.weight._version)
        if cache.key != key:
            cache.key, cache.forward, cache.backward = key, None, None
        if backward and cache.backward is None:
            cache.backward = onednn_pack(self.weight.detach().t().contiguous())
        if not backward and cache.forward is None:
            cache.forward = onednn_pack(self.weight.detach())
        return cache.backward if backward else cache.forward

    def _onednn(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.detach().to(self.weight.dtype)
        return _OneDNNLinear.apply(x.to(self.weight.dtype), self, bias)

    def _packs(self, x: torch.Tensor) -> bool:
        return (x.device.type == "cpu" and not self.weight.requires_grad
                and onednn_available(self.weight.dtype, x.device.type))


class FrozenLowPrecisionLinear(_PackedFrozenLinear):
    """A frozen nn.Linear whose weights are stored in bf16 (by `store_frozen_weights`).

    Under autocast it is what autocast makes of an fp32 Linear (its bf16 weights are what autocast would cast to, on
    every call; with `PACK_FROZEN_BF16` the CPU matmul runs on a prepacked copy); outside autocast an input of another
    dtype is cast to bf16 and the output back, so a caller that runs without autocast still gets its own dtype back.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        autocast = torch.is_autocast_enabled(x.device.type)
        if x.dtype == self.weight.dtype or autocast:
            return self._onednn(x) if self._packs(x) else F.linear(x, self.weight, self.bias)
        out = self._onednn(x) if self._packs(x) else F.linear(x.to(self.weight.dtype), self.weight, self.bias)
        return out.to(x.dtype)


class FrozenOneDNNLinear(_PackedFrozenLinear):
    """A frozen fp32 nn.Linear whose matmuls run through oneDNN with prepacked weights (by `store_frozen_weights`);
    under autocast, in another dtype or off the CPU it is nn.Linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dtype != torch.float32 or self.weight.dtype != torch.float32 or torch.is_autocast_enabled(x.device.type)
                or not self._packs(x)):
            return F.linear(x, self.weight, self.bias)
        return self._onednn(x)


def _frozen_linears(model: nn.Module):
    """(name, module, own parameters) of every frozen fp32 nn.Linear outside LoRA and modules_to_save."""
    for name, module in model.named_modules():
        if type(module) not in (nn.Linear, FrozenOneDNNLinear) or "lora_" in name or "modules_to_save" in name:
            continue
        own = list(module.named_parameters(recurse=False))
        if any(p.requires_grad or p.dtype != torch.float32 for _, p in own):
            continue
        module.__dict__.pop("_onednn_cache", None)
        yield name, module, own


def store_frozen_weights(model: nn.Module, chosen: Precision) -> Precision:
    """Store the frozen fp32 nn.Linear weights of `model` in `chosen`'s dtype when that is bf16 -> `chosen`.

    Autocast casts every fp32 weight to bf16 in every forward (a generated token is a forward: the whole model read
    and written again per token); storing the frozen ones in bf16 does that once. A frozen lm_head tied to the input
    embedding gets its own bf16 copy (the embedding stays fp32, and so does the residual stream; the logits are what
    autocast made of the tied weight, without casting its ~28M values per generated token). Left alone: trainable
    parameters, LoRA layers (every adapter, active or not, stays fp32 and trainable later). Under fp32 on a CPU the
    weights stay fp32 and the frozen Linears become `FrozenOneDNNLinear` (the same arithmetic in a faster kernel).
    """
    if chosen.dtype == torch.float32:
        if onednn_available(torch.float32, chosen.device_type):
            for _name, module, _own in list(_frozen_linears(model)):
                module.__class__ = FrozenOneDNNLinear
        return chosen
    tied = {id(p) for module in model.modules() if isinstance(module, nn.Embedding) for p in module.parameters()}
    converted = False
    for _name, module, own in list(_frozen_linears(model)):
        for key, parameter in own:
            if id(parameter) in tied:  # untie: a bf16 copy of its own, the embedding keeps the fp32 original
                setattr(module, key, nn.Parameter(parameter.detach().to(chosen.dtype), requires_grad=False))
            else:
                parameter.data = parameter.data.to(chosen.dtype)
        module.__class__ = FrozenLowPrecisionLinear
        converted = True
    # A model loaded from safetensors holds its weights in one memory-mapped file: while any tensor still points into
    # it (the fp32 embedding, the norms), every page of the converted fp32 weights that was read stays mapped and
    # resident (~0.5 GB for SmolLM2-135M). Copying the frozen fp32 ones that are left releases the file; a model
    # converted earlier (several trainers on one shared policy) has nothing left to release.
    if converted:
        for parameter in model.parameters():
            if not parameter.requires_grad and parameter.dtype == torch.float32:
                parameter.data = parameter.data.clone()
    return chosen
