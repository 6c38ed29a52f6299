"""Worker: one benchmark run of TRL 1.12.0's PPOTrainer, as `peak_memory("benchmarks.workers.trl_worker:run", ...)`.

Importable only where TRL 1.12.0 comes first on `sys.path` (the driver puts its directory first in PYTHONPATH of
TRL runs only); the venv's trl 1.16 has no PPOTrainer.

Precision: TRL 1.12's PPOTrainer builds its own `Accelerator()` and so ignores its config's `bf16` flag; accelerate's
`ACCELERATE_MIXED_PRECISION=bf16` (what `accelerate launch --mixed_precision bf16` sets) makes it run the prepared
model's forward (the training forwards) under bf16 autocast; the worker sets both and checks that accelerate obeyed.
Generation, the reference forward and the critic's rollout forward call the inner modules and would still stay fp32.
In a bf16 run this worker runs those three under the same autocast as well, with fp32 outputs (as rlxf takes
log-probs from fp32 logits), so every policy and critic forward of both libraries is in the same dtype. The
reward model (the environment, shared) scores in fp32 in both.
"""

from __future__ import annotations

import gc
import os
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


def run(settings: dict, seed: int, trl_dir: str, critic: str) -> dict:
    """TRL 1.12.0's experimental PPOTrainer on the same task with a `critic` ("full" or "lora") value model; updates
    timed by callbacks, the phases inside them by wrapping the module-level helpers TRL's loop calls."""
    settings = start_worker(settings)
    if trl.__version__ != TRL_VERSION or not Path(trl.__file__).resolve().is_relative_to(Path(trl_dir).resolve()):
        raise RuntimeError(f"expected trl {TRL_VERSION} from {trl_dir}, imported {trl.__version__} from {trl.__file__}")
    policy, tokenizer, reward_model, prompt_ids = load_task(settings)
    value_model = load_value_model(settings, critic)
    peft_config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0, bias="none",
                             target_modules=list(settings.lora_target_modules), task_type="CAUSAL_LM")
    output_dir = tempfile.mkdtemp(prefix="trl-ppo-")
    bf16 = settings.dtype == "bf16"
    args = PPOConfig(
        output_dir=output_dir, seed=seed, use_cpu=True, bf16=bf16, fp16=False, gradient_checkpointing=False,
        per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=1,
        num_mini_batches=settings.num_minibatches, num_ppo_epochs=settings.ppo_epochs,
        total_episodes=settings.updates * settings.batch_size, learning_rate=settings.learning_rate,
        lr_scheduler_type="constant", optim="adamw_torch", adam_epsilon=1e-5, weight_decay=0.0,  # as rlxf's AdamW
        response_length=settings.max_new_tokens, temperature=settings.temperature, stop_token="eos",
        kl_coef=settings.kl_coef, kl_estimator="k1", missing_eos_penalty=None,
        num_sample_generations=0, logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0)

    os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16" if bf16 else "no"  # read by the Accelerator TRL builds
    clock = UpdateClock()
    dataset = Dataset.from_dict({"input_ids": prompt_ids})
    set_all_seeds(seed)
    trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=None,
                         reward_model=reward_model, train_dataset=dataset, value_model=value_model,
                         peft_config=peft_config, callbacks=[clock])
    if trainer.accelerator.mixed_precision != ("bf16" if bf16 else "no"):
        raise RuntimeError(f"TRL's accelerator runs mixed_precision={trainer.accelerator.mixed_precision!r}, expected "
                           f"{'bf16' if bf16 else 'no'} (settings.dtype={settings.dtype!r})")
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    record = common_record("trl", settings, seed, tokenizer, reward_model, prompt_ids)
    record["critic"] = critic
    record["precision"] = (f"TRL bf16={bf16} (accelerate mixed_precision={trainer.accelerator.mixed_precision}); "
                           f"generation and rollout forwards under {'bf16 autocast' if bf16 else 'fp32'}")
    record["eos_token_ids"] = [trainer.stop_token_id]
    record["trainable_parameters"] = sum(p.numel() for p in unwrapped.parameters() if p.requires_grad)
    record["eval_before"] = evaluate(unwrapped.policy, tokenizer, reward_model, prompt_ids, settings, seed)

    # Measure the phases inside TRL's loop by wrapping the three module-level helpers it calls.
    phases = {"generation_s": [], "scoring_s": [], "ref_s": [], "value_s": [], "response_tokens": [], "scores": [],
              "check": [], "gc_s": [], "optimise_start": {}}
    batch_generation, get_reward, forward = ppo_module.batch_generation, ppo_module.get_reward, ppo_module.forward

    def rollout_precision():  # see the module docstring: what TRL's bf16 flag leaves in fp32
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def timed_generation(model, queries, *rest, **kwargs):
        start = time.perf_counter()
        with rollout_precision():
            query_responses, logits = batch_generation(model, queries, *rest, **kwargs)
        logits = logits.float()
        phases["generation_s"].append(time.perf_counter() - start)
        generated = query_responses[:, queries.shape[1]:]
        phases["response_tokens"].append(sum(len(r) for r in response_tokens(generated, tokenizer.eos_token_id)))
        return query_responses, logits

    def timed_forward(model, query_responses, pad_token_id):
        if torch.is_grad_enabled():  # a training forward: the PPO epochs of this update start at its first one
            phases["optimise_start"].setdefault(len(clock.marks) - 1, time.perf_counter())
            return forward(model, query_responses, pad_token_id)
        start = time.perf_counter()  # the no-grad rollout forward of the reference (the policy, adapter disabled)
        with rollout_precision():
            output = forward(model, query_responses, pad_token_id)
        output.logits = output.logits.float()
        phases["ref_s"].append(time.perf_counter() - start)
        return output

    def timed_reward(model, query_responses, pad_token_id, context_length):
        start = time.perf_counter()
        if model is not reward_model:  # the critic's rollout forward (values)
            with rollout_precision():
                logits, final, lengths = get_reward(model, query_responses, pad_token_id, context_length)
            phases["value_s"].append(time.perf_counter() - start)
            return logits.float(), final.float(), lengths
        out = get_reward(model, query_responses, pad_token_id, context_length)  # the reward model: fp32, as ours
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

    wrapped = {"batch_generation": timed_generation, "get_reward": timed_reward, "forward": timed_forward}
    originals = {name: getattr(ppo_module, name) for name in wrapped}
    for name, function in wrapped.items():
        setattr(ppo_module, name, function)
    gc.collect = timed_collect
    set_all_seeds(seed)
    try:
        with PhasePeak() as train_peak:
            trainer.train()
    finally:
        for name, function in originals.items():
            setattr(ppo_module, name, function)
        gc.collect = collect

    counts = {key: len(phases[key]) for key in ("generation_s", "scores", "ref_s", "value_s", "optimise_start")}
    if not (len(clock.marks) == settings.updates + 1 and set(counts.values()) == {settings.updates}):
        raise RuntimeError(f"TRL ran {len(clock.marks) - 1} updates ({counts} phases seen), expected "
                           f"{settings.updates} of each (one rollout batch per update)")
    kls = [log["objective/kl"] for log in clock.logs if "objective/kl" in log]
    record["updates"] = [
        {"seconds": clock.marks[i + 1] - clock.marks[i], "generation_s": phases["generation_s"][i],
         "scoring_s": phases["scoring_s"][i], "rollout_policy_s": 0.0,  # old log-probs come from generation
         "rollout_ref_s": phases["ref_s"][i], "rollout_value_s": phases["value_s"][i],
         "optimise_s": clock.marks[i + 1] - phases["optimise_start"][i],  # to on_step_end: includes its logging
         "reward_mean": statistics.fmean(phases["scores"][i]),
         "kl": kls[i] if i < len(kls) else None, "response_tokens": phases["response_tokens"][i],
         "gc_s": sum(seconds for update, seconds in phases["gc_s"] if update == i + 1)}
        for i in range(settings.updates)]
    record["scoring_check_max_abs_diff"] = phases["check"][0]
    record["eval_after"] = evaluate(unwrapped.policy, tokenizer, reward_model, prompt_ids, settings, seed)
    record["lora_b_norm_after"] = lora_b_norm(unwrapped.policy)
    record["memory"] = phase_memory(train_peak)
    shutil.rmtree(output_dir, ignore_errors=True)
    return record


def load_value_model(settings: BenchSettings, critic: str):
    """TRL's critic: the base under a zero value head (as rlxf's), fully trainable ("full") or LoRA + head."""
    value_model, _ = load_classifier(settings.model, num_labels=1, device="cpu", dtype="fp32")
    with torch.no_grad():
        value_model.score.weight.zero_()  # values start at 0, as rlxf's zero-initialised value head
    if critic == "lora":
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
