"""Worker: one benchmark run of rlxf.algos.ppo, as `peak_memory("benchmarks.workers.rlxf_worker:run", ...)`."""

from __future__ import annotations

import time

from benchmarks.workers.common import (
    PhasePeak,
    PPOSettings,
    PPOTrainer,
    common_record,
    evaluate,
    keeps_logits,
    load_task,
    lora_b_norm,
    phase_memory,
    score_responses,
    set_all_seeds,
    start_worker,
)
from benchmarks.workers.flops import matmul_peak_gflops, update_flops, update_matmul_ceiling


def run(settings: dict, seed: int) -> dict:
    """rlxf.algos.ppo: generate -> score -> step, `updates` times, each phase timed; then this machine's matmul peak."""
    settings = start_worker(settings)
    policy, tokenizer, reward_model, prompt_ids = load_task(settings)
    ppo_settings = PPOSettings(learning_rate=settings.learning_rate, batch_size=settings.batch_size,
                         num_minibatches=settings.num_minibatches, ppo_epochs=settings.ppo_epochs,
                         max_grad_norm=None,  # TRL's PPO loop never clips gradients
                         kl_estimator="k1", adaptive_kl=False, init_kl_coef=settings.kl_coef,
                         max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, top_k=0, top_p=1.0,
                         lora_r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0,
                         lora_target_modules=settings.lora_target_modules, seed=seed, progress_bar=False,
                         dtype=settings.dtype)  # the driver resolved it; TRL's runs get the same
    trainer = PPOTrainer(policy, tokenizer, ppo_settings)
    record = common_record("rlxf", settings, seed, tokenizer, reward_model, prompt_ids)
    record["eos_token_ids"] = sorted(trainer.eos_ids)
    record["precision"] = str(trainer.precision)
    record["trainable_parameters"] = sum(p.numel() for p in trainer.policy_params) + sum(
        p.numel() for p in trainer.value_head.parameters())
    record["eval_before"] = evaluate(trainer.model, tokenizer, reward_model, prompt_ids, settings, seed)
    set_all_seeds(seed)

    updates = []
    with PhasePeak() as train_peak:
        for _ in range(settings.updates):
            start = time.perf_counter()
            queries, responses, _ = trainer.generate(prompt_ids)
            generated = time.perf_counter()
            scores = score_responses(reward_model, queries, responses, tokenizer.pad_token_id)
            scored = time.perf_counter()
            metrics = trainer.step(queries, responses, scores)
            done = time.perf_counter()
            r_len = max(len(r) for r in responses)
            seq_len = max(len(q) for q in queries) + r_len  # every minibatch is padded to the whole batch's length
            kept = r_len + 1 if keeps_logits(trainer.model) else seq_len
            flops = update_flops(trainer.model, trainer.adapter_name, rows=len(queries), seq_len=seq_len, kept=kept,
                                 epochs=ppo_settings.ppo_epochs)
            updates.append({"seconds": done - start, "generation_s": generated - start, "scoring_s": scored - generated,
                            "rollout_policy_s": metrics["time/rollout_policy_s"],  # its values come with it
                            "rollout_ref_s": metrics["time/rollout_ref_s"], "rollout_value_s": 0.0,
                            "optimise_s": metrics["time/optimise_s"], "update_flops": flops,
                            "rows": len(queries), "seq_len": seq_len, "kept": kept,
                            "reward_mean": float(scores.mean()), "kl": metrics["objective/kl"],
                            "response_tokens": sum(len(r) for r in responses), "gc_s": 0.0})
    record["updates"] = updates
    record["matmul_peak"] = matmul_peak_gflops(settings.dtype)  # this process, these threads, this dtype
    last = updates[-1]  # the update's own matmuls alone, at the last update's shapes: the update's ceiling
    record["update_ceiling"] = update_matmul_ceiling(trainer.model, trainer.adapter_name, rows=last["rows"],
                                                     seq_len=last["seq_len"], kept=last["kept"], dtype=settings.dtype)
    record["eval_after"] = evaluate(trainer.model, tokenizer, reward_model, prompt_ids, settings, seed)
    record["lora_b_norm_after"] = lora_b_norm(trainer.model)
    record["memory"] = phase_memory(train_peak)
    return record

