"""Decode throughput against its roofline, measured in one process in the run's dtype.

A decode step reads every weight once and does 2 FLOPs per weight and row (plus attention over the context), so

    roofline step time = max(weight bytes / copy bandwidth, FLOPs / matmul peak)

with the bandwidth measured by copying a large tensor (bytes read + written / time) and the peak by square matmuls
(`flops.matmul_peak_gflops`), both in the calling process at its thread count, before and after the timings, the
higher of each kept (the stricter roofline: on a shared host both move). rlxf's decode (`sample_tokens`, a LoRA
attached with non-zero B, EOS never reached so every row makes `new_tokens` tokens) is timed per batch size, best of
`repeats` after a warm-up call, once for 1 new token (the prompt's forward and the first sample) and once for
`new_tokens`: the difference is `new_tokens - 1` decode steps, the steps the roofline describes (the prompt's forward
is a large matmul with its own, compute-bound roofline; tokens/s with it are reported as `end_to_end_tokens_per_s`).
Decode tokens/s divided by the roofline's is the fraction. On a shared machine wall time
says little: tokens per CPU second (times the thread count) and its fraction are reported beside it. `compare=True`
also times transformers' `generate` through `generate_responses` (the path `sample_tokens` takes for other models).
"""

from __future__ import annotations

import os
import time

import torch

from benchmarks.workers.flops import matmul_peak_gflops

PROMPT = "Write a short, happy review of a movie you liked, in two sentences."


def copy_bandwidth(megabytes: int = 256, repeats: int = 5) -> dict:
    """Best GB/s of copying a `megabytes` tensor into another (bytes read + bytes written) -> {"gbs", ...}."""
    source = torch.ones(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    best = float("inf")
    for i in range(repeats + 1):
        start = time.perf_counter()
        target.copy_(source)
        if i:  # the first is a warm-up (page faults of the target)
            best = min(best, time.perf_counter() - start)
    return {"gbs": 2 * source.numel() * 4 / best / 1e9, "megabytes": megabytes, "threads": torch.get_num_threads()}


def step_cost(model, dtype: torch.dtype, batch: int, context: int) -> tuple[int, int]:
    """(weight bytes read, FLOPs) of one decode step of `batch` rows over `context` cached tokens."""
    from rlxf.lm.decode import rollout_weights

    weights = rollout_weights(model, dtype)
    matrices = [t for layer in weights.layers for t in (layer.qkv, layer.o, layer.gate_up, layer.down)]
    matrices.append(weights.head)
    parameters = sum(t.numel() for t in matrices)
    attention = 4 * len(weights.layers) * weights.heads * weights.head_dim * context  # q.k and p.v per row
    return parameters * torch.finfo(dtype).bits // 8, batch * (2 * parameters + attention)


def run(model_name: str = "smollm2-135m-instruct", dtype: str = "auto", batches: tuple[int, ...] = (1, 4, 16, 64),
        new_tokens: int = 32, repeats: int = 2, compare: bool = False) -> dict:
    """Tokens/s and roofline fraction per batch size -> the `decode_*` keys of ppo_vs_trl.json."""
    from peft import LoraConfig, get_peft_model

    from rlxf.lm.generation import chat_prompt, encode_text, generate_responses, sample_tokens, sampling_config
    from rlxf.lm.models import load_causal_lm
    from rlxf.lm.precision import precision, store_frozen_weights

    model, tokenizer = load_causal_lm(model_name, device="cpu")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]), "policy")
    generator = torch.Generator().manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # a trained-looking adapter: B = 0 would make LoRA a no-op some paths could skip
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.01
    chosen = store_frozen_weights(model, precision(dtype, "cpu"))
    model.eval()
    query = encode_text(tokenizer, chat_prompt(tokenizer, PROMPT))
    never = {-1}  # no EOS: every row decodes new_tokens tokens
    bandwidth = copy_bandwidth()
    peak = matmul_peak_gflops(chosen.name)
    # measured again after the timings, the higher kept: on a shared host both move, and the higher is the stricter
    # roofline (a bandwidth caught at a slow moment would flatter the fraction)
    timings_done = []
    results: dict = {"tokens_per_s": {}, "cpu_tokens_per_s": {}, "end_to_end_tokens_per_s": {},
                     "roofline_tokens_per_s": {}, "fraction": {}, "cpu_fraction": {}, "generate_tokens_per_s": {},
                     "generate_cpu_tokens_per_s": {}, "generate_end_to_end_tokens_per_s": {}}
    config = sampling_config(max_new_tokens=new_tokens, temperature=1.0, top_k=0, top_p=1.0,
                             pad_id=tokenizer.pad_token_id, eos_ids={tokenizer.eos_token_id})
    config.eos_token_id = None
    for batch in batches:
        queries = [query] * batch

        def ours(tokens, queries=queries):
            return sample_tokens(model, queries, max_new_tokens=tokens, temperature=1.0,
                                 pad_id=tokenizer.pad_token_id, eos_ids=never, dtype=chosen)

        def theirs(tokens, queries=queries):
            config.max_new_tokens = tokens
            with chosen.autocast():
                return generate_responses(model, queries, config, tokenizer.pad_token_id, never)

        for label, call in (("tokens_per_s", ours), *((("generate_tokens_per_s", theirs),) if compare else ())):
            timed = {}
            for tokens in (1, new_tokens):  # the prompt's forward and the first token, then the whole call
                best, best_cpu = float("inf"), float("inf")
                for i in range(repeats + 1):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    responses = call(tokens)
                    if i:
                        best, best_cpu = min(best, time.perf_counter() - start), min(best_cpu,
                                                                                     time.process_time() - start_cpu)
                assert all(len(r) == tokens for r in responses), "every row decodes `tokens` tokens (no EOS)"
                timed[tokens] = best, best_cpu
            steps = new_tokens - 1  # decode steps: the difference of the two calls is decoding alone
            results[label][batch] = batch * steps / (timed[new_tokens][0] - timed[1][0])
            # CPU seconds / threads: the wall time this would take on idle cores (the machine may be shared)
            results[label.replace("tokens", "cpu_tokens")][batch] = (batch * steps * torch.get_num_threads()
                                                                     / (timed[new_tokens][1] - timed[1][1]))
            results[label.replace("tokens", "end_to_end_tokens")][batch] = batch * new_tokens / timed[new_tokens][0]
        timings_done.append(batch)
    after_bandwidth, after_peak = copy_bandwidth(), matmul_peak_gflops(chosen.name)
    bandwidth = {**max(bandwidth, after_bandwidth, key=lambda m: m["gbs"]),
                 "measured_gbs": [bandwidth["gbs"], after_bandwidth["gbs"]]}
    peak = {**max(peak, after_peak, key=lambda m: m["gflops"]), "measured_gflops": [peak["gflops"],
                                                                                    after_peak["gflops"]]}
    for batch in timings_done:
        weight_bytes, flops = step_cost(model, chosen.dtype, batch, len(query) + new_tokens // 2)
        step = max(weight_bytes / (bandwidth["gbs"] * 1e9), flops / (peak["gflops"] * 1e9))
        results["roofline_tokens_per_s"][batch] = batch / step
        results["fraction"][batch] = results["tokens_per_s"][batch] / (batch / step)
        results["cpu_fraction"][batch] = results["cpu_tokens_per_s"][batch] / (batch / step)
        print(f"[decode] {chosen.name} batch {batch}: {results['tokens_per_s'][batch]:.1f} tok/s "
              f"(roofline {batch / step:.1f}: {results['fraction'][batch]:.2f}; by CPU time "
              f"{results['cpu_tokens_per_s'][batch]:.1f}: {results['cpu_fraction'][batch]:.2f}; with the prompt's "
              f"forward {results['end_to_end_tokens_per_s'][batch]:.1f})"
              + (f", generate {results['generate_tokens_per_s'][batch]:.1f} tok/s (by CPU time "
                 f"{results['generate_cpu_tokens_per_s'][batch]:.1f})" if compare else ""), flush=True)
    print(f"[decode] roofline: copy bandwidth {bandwidth['gbs']:.1f} GB/s (measured {bandwidth['measured_gbs'][0]:.1f} "
          f"before, {bandwidth['measured_gbs'][1]:.1f} after), matmul peak {peak['gflops']:.0f} GFLOP/s (measured "
          f"{peak['measured_gflops'][0]:.0f}, {peak['measured_gflops'][1]:.0f})", flush=True)
    roofline = {"bandwidth_gbs": bandwidth["gbs"], "peak_gflops": peak["gflops"], "dtype": chosen.name,
                "threads": torch.get_num_threads(), "weight_bytes": step_cost(model, chosen.dtype, 1, 0)[0],
                "new_tokens": new_tokens, "prompt_tokens": len(query),
                "tokens_per_s": results["roofline_tokens_per_s"],
                "cpu_tokens_per_s": results["cpu_tokens_per_s"], "cpu_fraction": results["cpu_fraction"],
                "end_to_end_tokens_per_s": results["end_to_end_tokens_per_s"], "peak": peak, "bandwidth": bandwidth,
                "load_average": os.getloadavg()[0]}
    out = {"decode_tokens_per_s": results["tokens_per_s"], "decode_roofline_fraction": results["fraction"],
           "decode_roofline": roofline}
    if compare:
        out["decode_generate_tokens_per_s"] = results["generate_tokens_per_s"]
        out["decode_generate_cpu_tokens_per_s"] = results["generate_cpu_tokens_per_s"]
        out["decode_generate_end_to_end_tokens_per_s"] = results["generate_end_to_end_tokens_per_s"]
    return out
