"""Model FLOPs of a PPO update, counted from the model's shapes, and this machine's matmul peak, measured.

The count is of the matmuls a forward and a backward execute (biases, norms, softmax and RoPE are left out):
- every `nn.Linear` of the body (the base weights and the active adapter's LoRA A and B): 2 FLOPs per weight per
  token forward, 2 more backward for the gradient of its input, and 2 more for its weight's gradient only where the
  weight trains (LoRA). A frozen weight gets no weight gradient, so a LoRA forward + backward is ~2x a forward, not
  the 3x of full fine-tuning (3x would overstate the achieved FLOP/s by half);
- the LM head (the output embedding) likewise, on the `kept` logit positions only (rlxf keeps the response's);
- attention: QK^T and AV, 2 * L^2 * (heads * head_dim) each per layer and sequence forward, 2x that backward,
  counted in full (a padding mask makes the kernels compute the whole square, causal or not).
Over-counted, deliberately simple: the input gradients of the projections that read the first layer's input, which
autograd skips because the frozen embedding needs no gradient (layer 0's q/k/v and its LoRA A, and its dK): about
0.1% of a SmolLM2-135M update. `tests/test_benchmark_flops.py` checks the count by hand and against
`torch.utils.flop_counter` on a tiny model.

`update_matmul_ceiling` runs exactly the counted matmuls of one PPO epoch (the same shapes, the model's own weights in
the update's dtype and kernels) back to back with nothing between them: what the update could reach if everything
that is not a matmul (norms, RoPE, softmax, SiLU, log-probabilities, casts, autograd, the optimizer) took no time.
An update comes closer to the square-matmul peak than this only by running its matmuls faster than they run alone (or
at a faster moment of a shared host: both are measured once per run).
"""

from __future__ import annotations

import re
import time

import torch
from torch import nn


def _linears(model: nn.Module, adapter: str | None):
    """(name, weight elements, trains?, is in the LM head) of every Linear that runs with `adapter` active."""
    head = model.get_output_embeddings()
    head_names = {name for name, module in model.named_modules() if module is head}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        parts = name.split(".")
        if any(p.startswith("lora_") for p in parts) and parts[-1] != adapter:
            continue  # another adapter's LoRA (e.g. a frozen reference copy): does not run with `adapter` active
        in_head = any(name == h or name.startswith(h + ".") for h in head_names)
        yield name, module.in_features * module.out_features, module.weight.requires_grad, in_head


def _attention_shape(model: nn.Module):
    """(text config, query heads, head dimension) of `model`."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = config.num_attention_heads
    return config, heads, getattr(config, "head_dim", None) or config.hidden_size // heads


def model_flops(model: nn.Module, adapter: str | None, *, rows: int, seq_len: int, kept: int) -> dict:
    """FLOPs of one forward and one backward of `rows` sequences of `seq_len` tokens with `kept` logit positions."""
    config, heads, head_dim = _attention_shape(model)
    d_attn = heads * head_dim
    attention = 4 * config.num_hidden_layers * seq_len**2 * d_attn  # QK^T and AV of one sequence, forward
    forward = backward = 0
    weights = {"body": 0, "head": 0, "trainable": 0}
    for _name, n, trains, in_head in _linears(model, adapter):
        positions = kept if in_head else seq_len
        forward += 2 * positions * n
        backward += 2 * positions * n * (2 if trains else 1)  # input gradient; weight gradient only if it trains
        weights["head" if in_head else "body"] += n
        weights["trainable"] += n if trains else 0
    forward, backward = rows * (forward + attention), rows * (backward + 2 * attention)
    return {"forward": forward, "backward": backward, "weights": weights, "attention_per_sequence": attention}


def update_flops(model: nn.Module, adapter: str, *, rows: int, seq_len: int, kept: int, epochs: int) -> int:
    """FLOPs of the PPO epochs: `epochs` forwards + backwards over the batch (the minibatches add up to the batch)."""
    counted = model_flops(model, adapter, rows=rows, seq_len=seq_len, kept=kept)
    return epochs * (counted["forward"] + counted["backward"])


def matmul_peak_gflops(dtype: str, sizes: tuple[int, ...] = (1024, 2048), repeats: int = 3) -> dict:
    """The best GFLOP/s of square matmuls in `dtype` ("fp32", or "bf16" under CPU autocast) on this machine, under
    the calling process's thread count; one untimed warm-up per size. Two kernels are timed and the faster counts:
    `torch.matmul` (BLAS: MKL in torch's x86 wheels, which runs fp32 on its AVX2 path on AMD CPUs) and oneDNN's matmul
    with a prepacked weight (what `rlxf.lm.decode` uses), so that a peak is not the slower library's."""
    compute = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    by_size, by_kernel = {}, {}
    generator = torch.Generator().manual_seed(0)  # the global RNG is left alone
    for size in sizes:
        a, b = (torch.randn(size, size, generator=generator).to(compute) for _ in range(2))
        kernels = {"matmul": lambda a=a, b=b: torch.matmul(a, b)}
        if torch.backends.mkldnn.is_available() and (compute == torch.float32
                                                     or torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            packed = torch.ops.mkldnn._reorder_linear_weight(b, size)
            kernels["onednn"] = lambda a=a, packed=packed: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none",
                                                                                              [], "")
        for kernel, call in kernels.items():
            best = float("inf")
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=compute == torch.bfloat16):
                for i in range(repeats + 1):
                    start = time.perf_counter()
                    call()
                    if i:  # the first is a warm-up
                        best = min(best, time.perf_counter() - start)
            by_kernel.setdefault(kernel, {})[size] = 2 * size**3 / best / 1e9
        by_size[size] = max(by_kernel[kernel][size] for kernel in by_kernel)
    return {"gflops": max(by_size.values()), "by_size": by_size, "by_kernel": by_kernel, "dtype": dtype,
            "threads": torch.get_num_threads()}


def _layer_of(name: str) -> str:
    """The module path up to its first numeric part ("...layers.3"): the Linears of one decoder layer share a key."""
    match = re.match(r"(.*?\.\d+)(\.|$)", name)
    return match.group(1) if match else name


def ceiling_epoch(model: nn.Module, adapter: str, *, rows: int, seq_len: int, kept: int, dtype: str, seed: int = 0):
    """A callable that executes the matmuls `model_flops` counts for one forward and backward, and nothing else.

    Forward, layer by layer: every Linear that runs with `adapter` active on `rows * seq_len` positions (the LM head on
    `rows * kept`), then the layer's attention as batched matmuls (QK^T and AV over all heads, the square the count
    assumes). Backward, in reverse: attention's four batched matmuls, then every Linear's input gradient and, where the
    weight trains, its weight gradient. Weights are the modules' own, in the compute dtype (bf16 copies of trainable
    fp32 ones); a frozen Linear that the update runs on oneDNN-prepacked weights (`rlxf.lm.precision`) runs on them
    here too. Activations and gradients are random, one input per layer and input width and one gradient per layer and
    output width (the Linears of a layer that read one tensor in the model read one here: no more memory than the
    update's own activations, and, if anything, kinder to the caches)."""
    from rlxf.lm.precision import onednn_linear

    compute = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    config, heads, head_dim = _attention_shape(model)
    generator = torch.Generator().manual_seed(seed)

    def random(*shape):
        return torch.randn(*shape, generator=generator).to(compute)

    modules = dict(model.named_modules())
    layers: dict[str, list] = {}
    inputs, grads = {}, {}
    for name, _n, trains, in_head in _linears(model, adapter):
        module = modules[name]
        positions = rows * (kept if in_head else seq_len)
        key = "head" if in_head else _layer_of(name)
        if (key, "in", module.in_features) not in inputs:
            inputs[key, "in", module.in_features] = random(positions, module.in_features)
        if (key, "out", module.out_features) not in grads:
            grads[key, "out", module.out_features] = random(positions, module.out_features)
        packed = not trains and hasattr(module, "_packs") and module._packs(inputs[key, "in", module.in_features])
        weight = module.weight.detach()
        layers.setdefault(key, []).append({
            "x": inputs[key, "in", module.in_features], "g": grads[key, "out", module.out_features],
            "w": weight if weight.dtype == compute else weight.to(compute), "trains": trains,
            "packed": module if packed else None})
    q, k, v = (random(rows * heads, seq_len, head_dim) for _ in range(3))
    probs, grad_out = random(rows * heads, seq_len, seq_len), random(rows * heads, seq_len, head_dim)
    order = [key for key in layers if key != "head"]
    attention_layers = set([key for key in order if key.rsplit(".", 1)[-1].isdigit()][:config.num_hidden_layers])

    def once():
        for key in [*order, "head"] if "head" in layers else order:
            for linear in layers[key]:
                if linear["packed"] is not None:
                    onednn_linear(linear["x"], linear["packed"]._packed(backward=False))
                else:
                    torch.nn.functional.linear(linear["x"], linear["w"])
            if key in attention_layers:
                torch.bmm(q, k.transpose(1, 2))
                torch.bmm(probs, v)
        for key in (["head"] if "head" in layers else []) + order[::-1]:
            if key in attention_layers:
                torch.bmm(grad_out, v.transpose(1, 2))  # dP = dO V^T
                torch.bmm(probs.transpose(1, 2), grad_out)  # dV = P^T dO
                torch.bmm(probs, k)  # dQ = dS K
                torch.bmm(probs.transpose(1, 2), q)  # dK = dS^T Q
            for linear in layers[key][::-1]:
                if linear["packed"] is not None:
                    onednn_linear(linear["g"], linear["packed"]._packed(backward=True))
                else:
                    torch.mm(linear["g"], linear["w"])
                if linear["trains"]:
                    torch.mm(linear["g"].t(), linear["x"])

    return once


def update_matmul_ceiling(model: nn.Module, adapter: str, *, rows: int, seq_len: int, kept: int, dtype: str,
                          repeats: int = 5) -> dict:
    """The best GFLOP/s of `ceiling_epoch` over `repeats` timed runs after one warm-up, with the FLOPs `model_flops`
    counts for one epoch (so that it reads against the update's achieved GFLOP/s)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    counted = model_flops(model, adapter, rows=rows, seq_len=seq_len, kept=kept)
    flops = counted["forward"] + counted["backward"]
    with torch.no_grad():
        once = ceiling_epoch(model, adapter, rows=rows, seq_len=seq_len, kept=kept, dtype=dtype)
        once()
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            once()
            seconds.append(time.perf_counter() - start)
    return {"gflops": flops / min(seconds) / 1e9, "median_gflops": flops / sorted(seconds)[len(seconds) // 2] / 1e9,
            "seconds": seconds, "flops": flops, "rows": rows, "seq_len": seq_len, "kept": kept, "dtype": dtype,
            "threads": torch.get_num_threads()}
