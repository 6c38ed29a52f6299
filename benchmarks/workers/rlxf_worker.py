"""Worker: one benchmark run of rlxf.ppo, as `peak_memory("benchmarks.workers.rlxf_worker:run", ...)`."""

from __future__ import annotations

import math
import time

from benchmarks.workers.common import (
    PhasePeak,
    PPOSettings,
    PPOTrainer,
    common_record,
    evaluate,
    load_task,
    lora_b_norm,
    phase_memory,
    score_responses,
    set_all_seeds,
    start_worker,
)


def run(settings: dict, seed: int) -> dict:
    """rlxf.ppo: generate -> score -> step, `updates` times, each phase timed."""
    settings = start_worker(settings)
    policy, tokenizer, reward_model, prompt_ids = load_task(settings)
    config = PPOSettings(learning_rate=settings.learning_rate, batch_size=settings.batch_size,
                         num_minibatches=settings.num_minibatches, ppo_epochs=settings.ppo_epochs,
                         max_grad_norm=math.inf,  # TRL's PPO loop never clips gradients
                         kl_estimator="k1", adaptive_kl=False, init_kl_coef=settings.kl_coef,
                         max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, top_k=0, top_p=1.0,
                         lora_r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0,
                         lora_target_modules=settings.lora_target_modules, seed=seed, progress_bar=False,
                         dtype="fp32")  # TRL's run is fp32: like for like (benchmarks/precision.py measures bf16)
    trainer = PPOTrainer(policy, tokenizer, config)
    record = common_record("rlxf", settings, seed, tokenizer, reward_model, prompt_ids)
    record["eos_token_ids"] = sorted(trainer.eos_ids)
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
            updates.append({"seconds": done - start, "generation_s": generated - start, "scoring_s": scored - generated,
                            "reward_mean": float(scores.mean()), "kl": metrics["objective/kl"],
                            "response_tokens": sum(len(r) for r in responses), "gc_s": 0.0})
    record["updates"] = updates
    record["eval_after"] = evaluate(trainer.model, tokenizer, reward_model, prompt_ids, settings, seed)
    record["lora_b_norm_after"] = lora_b_norm(trainer.model)
    record["memory"] = phase_memory(train_peak)
    return record

