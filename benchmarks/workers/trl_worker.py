"""Worker: one benchmark run of TRL 1.12.0's PPOTrainer, as `peak_memory("benchmarks.workers.trl_worker:run", ...)`.

Importable only where TRL 1.12.0 comes first on `sys.path` (the driver puts its directory first in PYTHONPATH of
TRL runs only); the venv's trl 1.16 has no PPOTrainer.
"""

from __future__ import annotations

import gc
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import trl
from datasets import Dataset
from peft import LoraConfig, inject_adapter_in_model
from transformers import TrainerCallback
from trl.experimental.ppo import PPOConfig, PPOTrainer
from trl.experimental.ppo import ppo_trainer as ppo_module

from benchmarks.workers.common import (
    PhasePeak,
    common_record,
    evaluate,
    load_classifier,
    load_task,
    lora_b_norm,
    phase_memory,
    response_tokens,
    score_responses,
    set_all_seeds,
    start_worker,
)
from benchmarks.workers.settings import TRL_VERSION, BenchSettings


def run(settings: dict, seed: int, trl_dir: str) -> dict:
    """TRL 1.12.0's experimental PPOTrainer on the same task; updates timed by callbacks, its helpers wrapped."""
    settings = start_worker(settings)
    if trl.__version__ != TRL_VERSION or not Path(trl.__file__).resolve().is_relative_to(Path(trl_dir).resolve()):
        raise RuntimeError(f"expected trl {TRL_VERSION} from {trl_dir}, imported {trl.__version__} from {trl.__file__}")
    policy, tokenizer, reward_model, prompt_ids = load_task(settings)
    value_model = load_value_model(settings)
    peft_config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0, bias="none",
                             target_modules=list(settings.lora_target_modules), task_type="CAUSAL_LM")
    output_dir = tempfile.mkdtemp(prefix="trl-ppo-")
    args = PPOConfig(
        output_dir=output_dir, seed=seed, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=1,
        num_mini_batches=settings.num_minibatches, num_ppo_epochs=settings.ppo_epochs,
        total_episodes=settings.updates * settings.batch_size, learning_rate=settings.learning_rate,
        lr_scheduler_type="constant", optim="adamw_torch", adam_epsilon=1e-5, weight_decay=0.0,  # as rlxf's AdamW
        response_length=settings.max_new_tokens, temperature=settings.temperature, stop_token="eos",
        kl_coef=settings.kl_coef, kl_estimator="k1", missing_eos_penalty=None,
        num_sample_generations=0, logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0)

    clock = UpdateClock()
    dataset = Dataset.from_dict({"input_ids": prompt_ids})
    set_all_seeds(seed)
    trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=None,
                         reward_model=reward_model, train_dataset=dataset, value_model=value_model,
                         peft_config=peft_config, callbacks=[clock])
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    record = common_record("trl", settings, seed, tokenizer, reward_model, prompt_ids)
    record["eos_token_ids"] = [trainer.stop_token_id]
    record["trainable_parameters"] = sum(p.numel() for p in unwrapped.parameters() if p.requires_grad)
    record["eval_before"] = evaluate(unwrapped.policy, tokenizer, reward_model, prompt_ids, settings, seed)

    # Measure generation and scoring inside TRL's loop by wrapping the two module-level helpers it calls.
    phases = {"generation_s": [], "scoring_s": [], "response_tokens": [], "scores": [], "check": [], "gc_s": []}
    batch_generation, get_reward = ppo_module.batch_generation, ppo_module.get_reward

    def timed_generation(model, queries, *rest, **kwargs):
        start = time.perf_counter()
        query_responses, logits = batch_generation(model, queries, *rest, **kwargs)
        phases["generation_s"].append(time.perf_counter() - start)
        generated = query_responses[:, queries.shape[1]:]
        phases["response_tokens"].append(sum(len(r) for r in response_tokens(generated, tokenizer.eos_token_id)))
        return query_responses, logits

    def timed_reward(model, query_responses, pad_token_id, context_length):
        start = time.perf_counter()
        out = get_reward(model, query_responses, pad_token_id, context_length)
        if model is reward_model:  # the other call scores the critic
            phases["scoring_s"].append(time.perf_counter() - start)
            phases["scores"].append(out[1].tolist())
            if len(phases["check"]) == 0:  # once (warm-up update): TRL's scoring equals the shared one
                phases["check"].append(scoring_difference(reward_model, query_responses, out[1], pad_token_id,
                                                          context_length))
        return out

    collect = gc.collect

    def timed_collect(*args, **kwargs):  # TRL runs a full garbage collection twice per update: report its cost
        start = time.perf_counter()
        try:
            return collect(*args, **kwargs)
        finally:
            phases["gc_s"].append((len(clock.marks), time.perf_counter() - start))

    ppo_module.batch_generation, ppo_module.get_reward, gc.collect = timed_generation, timed_reward, timed_collect
    set_all_seeds(seed)
    try:
        with PhasePeak() as train_peak:
            trainer.train()
    finally:
        ppo_module.batch_generation, ppo_module.get_reward, gc.collect = batch_generation, get_reward, collect

    if not (len(clock.marks) == settings.updates + 1 == len(phases["scores"]) + 1):
        raise RuntimeError(f"TRL ran {len(clock.marks) - 1} updates ({len(phases['scores'])} scored), expected "
                           f"{settings.updates}")
    kls = [log["objective/kl"] for log in clock.logs if "objective/kl" in log]
    record["updates"] = [
        {"seconds": clock.marks[i + 1] - clock.marks[i], "generation_s": phases["generation_s"][i],
         "scoring_s": phases["scoring_s"][i], "reward_mean": statistics.fmean(phases["scores"][i]),
         "kl": kls[i] if i < len(kls) else None, "response_tokens": phases["response_tokens"][i],
         "gc_s": sum(seconds for update, seconds in phases["gc_s"] if update == i + 1)}
        for i in range(settings.updates)]
    record["scoring_check_max_abs_diff"] = phases["check"][0]
    record["eval_after"] = evaluate(unwrapped.policy, tokenizer, reward_model, prompt_ids, settings, seed)
    record["lora_b_norm_after"] = lora_b_norm(unwrapped.policy)
    record["memory"] = phase_memory(train_peak)
    shutil.rmtree(output_dir, ignore_errors=True)
    return record


def load_value_model(settings: BenchSettings):
    """TRL's critic: the base under a zero value head (as rlxf's), fully trainable or LoRA + head."""
    value_model, _ = load_classifier(settings.model, num_labels=1, device="cpu", dtype="fp32")
    with torch.no_grad():
        value_model.score.weight.zero_()  # values start at 0, as rlxf's zero-initialised value head
    if settings.trl_critic == "lora":
        config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0, bias="none",
                            target_modules=list(settings.lora_target_modules))
        value_model = inject_adapter_in_model(config, value_model)  # in place: TRL needs `.model` and `.score`
        for name, param in value_model.named_parameters():
            param.requires_grad_("lora_" in name or name.startswith("score."))
    return value_model


def scoring_difference(reward_model, query_responses, trl_scores, pad_id: int, context_length: int) -> float:
    """Largest |TRL's reward-model score - the shared `score_responses`| on the same token sequences."""
    queries = [row[:context_length][row[:context_length] != pad_id] for row in query_responses]
    responses = [row[context_length:][row[context_length:] != pad_id] for row in query_responses]
    ours = score_responses(reward_model, queries, responses, pad_id)
    return float((ours - trl_scores).abs().max())


class UpdateClock(TrainerCallback):
    """A TRL callback: perf_counter marks at train begin and after every update, and the logged metrics."""

    def __init__(self):
        self.marks: list[float] = []
        self.logs: list[dict] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.marks.append(time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append(time.perf_counter())

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))
