"""The same reward with TRL 1.16's GRPOTrainer and RLOOTrainer: LoRA via `peft_config`, rlxf precision, timed.

`train_trl("grpo" | "rloo", model, tokenizer, dataset, reward_fn, TRLSettings(...))` trains a new LoRA adapter
(named "default") on `model` and returns `(peft_model, history)`; `history` has one row per optimizer step with
the wall-clock seconds since training began and TRL's logged reward, KL and completion length, so that these
algorithms and rlxf.algos.ppo land on one reward-vs-seconds figure. Extra dataset columns (e.g. MONA's country,
arr_type, econ_class) reach the reward function as keyword lists, as TRL passes them. With `check` (e.g. a
rlxf.algos.race.HeldOutCheck) and `settings.check_every`, the adapter is checked every that many steps; the check's
time is kept out of `seconds`, and its columns join the history on the checked steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from transformers import PrinterCallback, TrainerCallback

from rlxf.infra.threads import thread_budget_callback
from rlxf.infra.tracking import check_report_to
from rlxf.lm.adapters import LORA_TARGET_MODULES, lora_config
from rlxf.lm.precision import check_dtype, trainer_precision_kwargs, training_precision, without_autocast_wrapper

METHODS = ("grpo", "rloo")


@dataclass
class TRLSettings:
    """Settings shared by the GRPO and RLOO runs (the PPO run's counterparts in brackets)."""

    steps: int = 10
    """optimizer steps (PPO steps)"""
    prompts_per_step: int = 2
    """distinct prompts per step; each gets `num_generations` completions (batch = their product)"""
    num_generations: int = 4
    """completions per prompt: the group GRPO normalises within and RLOO leaves one out of"""
    learning_rate: float = 1e-4
    """AdamW learning rate of the LoRA adapter (PPO: the same)"""
    beta: float = 0.05
    """KL coefficient to the reference (the base with the adapter disabled); > 0 so that TRL logs the KL"""
    max_new_tokens: int = 32
    """most tokens per completion"""
    temperature: float = 0.7
    """sampling temperature (PPO: the same)"""
    lora_r: int = 8
    """LoRA rank"""
    lora_alpha: int = 16
    """LoRA alpha"""
    lora_dropout: float = 0.0
    """LoRA dropout"""
    lora_target_modules: str | tuple[str, ...] = LORA_TARGET_MODULES
    """modules with LoRA (names, or "all-linear")"""
    seed: int = 0
    """seed of sampling, LoRA init and data order"""
    output_dir: str = "artifacts/trl"
    """TRL's output directory (nothing is saved but its logs)"""
    dtype: str = "auto"
    """compute precision: "auto" (bf16 mixed precision where the hardware has native bf16, else fp32;
    rlxf.lm.precision), "fp32" or "bf16"; master weights and optimizer states stay fp32"""
    report_to: str = "none"
    """where the trainer also logs: "none", "tensorboard", "trackio" or "wandb" (transformers' `report_to`)"""
    check_every: int = 0
    """call train_trl's `check` after every this many optimizer steps (not after the last); 0: never"""

    def __post_init__(self) -> None:
        for name in ("steps", "prompts_per_step", "num_generations", "max_new_tokens", "lora_r", "lora_alpha"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TRLSettings.{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.check_every) < 0:
            raise ValueError(f"TRLSettings.check_every must be >= 0, got {self.check_every!r}")
        if self.num_generations < 2:
            raise ValueError("TRLSettings.num_generations must be >= 2 (GRPO and RLOO compare completions)")
        if not self.learning_rate > 0 or not self.temperature > 0 or self.beta < 0:
            raise ValueError("TRLSettings needs learning_rate > 0, temperature > 0 and beta >= 0")
        check_dtype(self.dtype, "TRLSettings.dtype")
        check_report_to(self.report_to, "TRLSettings.report_to")


class _Clock(TrainerCallback):
    """Every log row with its step and the training seconds since training began (the checks' time left out)."""

    def __init__(self, check: Callable | None = None, every: int = 0):
        self.rows: list[dict] = []
        self.checks: dict[int, dict] = {}
        self.check, self.every, self.paused = check, every, 0.0

    def seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if self.check is not None and self.every and step % self.every == 0 and step < state.max_steps:
            start = time.perf_counter()
            self.checks[step] = self.check(model, "default")  # the live model: its autocast wrapper stays on
            self.paused += time.perf_counter() - start

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None:
            self.rows.append({**logs, "step": state.global_step, "seconds": self.seconds()})


def trl_config(method: str, settings: TRLSettings):
    """The GRPOConfig / RLOOConfig of a run: precision from `settings.dtype`, no gradient checkpointing; CPU: no GPU."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    from trl import GRPOConfig, RLOOConfig

    config_class = GRPOConfig if method == "grpo" else RLOOConfig
    batch = settings.prompts_per_step * settings.num_generations
    chosen = training_precision(settings.dtype)
    return config_class(
        output_dir=settings.output_dir, max_steps=settings.steps, per_device_train_batch_size=batch,
        num_generations=settings.num_generations, max_completion_length=settings.max_new_tokens,
        temperature=settings.temperature, learning_rate=settings.learning_rate, beta=settings.beta,
        lr_scheduler_type="constant", warmup_steps=0, logging_steps=1, save_strategy="no", report_to=settings.report_to,
        **trainer_precision_kwargs(chosen), gradient_checkpointing=False, activation_checkpointing=False,
        dataloader_pin_memory=False, disable_tqdm=False, seed=settings.seed,
    )


def train_trl(method: str, model, tokenizer, dataset, reward_fn: Callable, settings: TRLSettings | None = None,
              check: Callable | None = None):
    """Train a new LoRA adapter on `model` with TRL's GRPO or RLOO -> (peft_model, history DataFrame).

    `dataset`: a datasets.Dataset (or a dict of columns) with a "prompt" column of formatted prompt strings.
    `check(model, adapter) -> dict`: called every `settings.check_every` steps (its time is not in `seconds`); its
    keys become history columns, filled on the checked steps.
    """
    from datasets import Dataset
    from trl import GRPOTrainer, RLOOTrainer

    settings = settings or TRLSettings()
    args = trl_config(method, settings)
    if isinstance(dataset, dict):
        dataset = Dataset.from_dict(dataset)
    if "prompt" not in dataset.column_names:
        raise ValueError(f"the dataset needs a 'prompt' column; it has {dataset.column_names}")
    peft_config = lora_config(settings)
    trainer_class = GRPOTrainer if method == "grpo" else RLOOTrainer
    clock = _Clock(check, settings.check_every)
    trainer = trainer_class(model=model, reward_funcs=[reward_fn], args=args, train_dataset=dataset,
                            processing_class=tokenizer, peft_config=peft_config,
                            callbacks=[clock, thread_budget_callback()])
    trainer.remove_callback(PrinterCallback)  # the history below replaces a printed dict per step
    trainer.train()
    rows = [row for row in clock.rows if "reward" in row]
    history = pd.DataFrame([{"step": row["step"], "seconds": row["seconds"], "reward": row["reward"],
                             "reward_std": row.get("reward_std"), "kl": row.get("kl"),
                             "length": row.get("completions/mean_length")} for row in rows])
    columns = sorted({key for found in clock.checks.values() for key in found})
    for column in columns:
        history[column] = [clock.checks.get(int(step), {}).get(column, np.nan) for step in history.step]
    return without_autocast_wrapper(trainer.model), history
