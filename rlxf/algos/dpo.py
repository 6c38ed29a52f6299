"""Direct Preference Optimisation with TRL 1.16's DPOTrainer on a LoRA adapter, and DPO's implicit reward.

DPO (Rafailov et al. 2023) trains the policy directly on preference pairs: with the log-probability ratios
h(y) = log pi(y|x) - log pi_ref(y|x) of the chosen and the rejected reply,

    loss = -log sigmoid(beta * (h(chosen) - h(rejected)))          (`dpo_loss`, TRL's loss_type "sigmoid")

and beta * h(y) is the reward the policy implicitly optimises (`implicit_rewards`): its pairwise accuracy on held-out
pairs can be set beside a Bradley-Terry reward model's. The reference is the starting policy: the base with the
new adapter disabled, as TRL does for a PEFT model. A pair is tokenised as TRL tokenises it (`dpo_token_ids`): the
EOS token appended to each reply as text, the reply starting where the tokenised prompt and prompt + reply diverge,
and prompt + reply cut to `max_length` from the end (TRL's "keep_start"); pairs whose prompt alone fills
`max_length` are left out by TRL, and here too. Prompts and replies are best shortened first (`shorten`), prompts
keeping their end and replies their start, so that the cut rarely happens.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from rlxf.infra.threads import thread_budget_callback
from rlxf.infra.tracking import check_report_to
from rlxf.lm.adapters import LORA_TARGET_MODULES, check_target_modules, lora_config
from rlxf.lm.logprobs import token_logprobs
from rlxf.lm.precision import check_dtype, trainer_precision_kwargs, training_precision, without_autocast_wrapper
from rlxf.rewards.base import RewardFunction
from rlxf.rewards.bradley_terry import check_pairs


def check_beta(beta: float, name: str = "beta") -> float:
    """`beta` if it is a finite number > 0 (DPO's inverse temperature); an error naming `name` otherwise."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"{name} must be a finite number > 0 (DPO's KL strength; typical 0.01-1), got {beta!r}")
    return float(beta)


@dataclass
class DPOSettings:
    """How to train a LoRA adapter with TRL's DPOTrainer (`train_dpo`)."""

    beta: float = 0.1
    """strength of the implicit KL penalty to the reference (larger: stay closer); TRL's default"""
    steps: int = 20
    """optimizer steps"""
    batch_size: int = 4
    """preference pairs per device per step"""
    gradient_accumulation_steps: int = 1
    """micro-batches summed per optimizer step"""
    learning_rate: float = 5e-5
    """AdamW learning rate of the LoRA adapter (constant)"""
    max_length: int = 256
    """tokens of prompt + reply; longer sequences lose their end (TRL's keep_start)"""
    lora_r: int = 8
    """LoRA rank"""
    lora_alpha: int = 16
    """LoRA alpha"""
    lora_dropout: float = 0.0
    """LoRA dropout (TRL disables model dropout in DPO by default)"""
    lora_target_modules: str | tuple[str, ...] = LORA_TARGET_MODULES
    """modules with LoRA (names, or "all-linear")"""
    seed: int = 0
    """seed of data order and LoRA initialisation"""
    dtype: str = "auto"
    """compute precision: "auto" (bf16 mixed precision where the hardware has native bf16, else fp32;
    rlxf.lm.precision), "fp32" or "bf16"; master weights and optimizer states stay fp32"""
    report_to: str = "none"
    """where the trainer also logs: "none", "tensorboard", "trackio" or "wandb" (transformers' `report_to`)"""
    output_dir: str | None = None
    """TRL's output directory (nothing is saved but its logs); None: a temporary directory"""

    def __post_init__(self) -> None:
        check_beta(self.beta, "DPOSettings.beta")
        for name in ("steps", "batch_size", "gradient_accumulation_steps", "lora_r", "lora_alpha"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DPOSettings.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.max_length < 4:
            raise ValueError(f"DPOSettings.max_length must be >= 4 tokens, got {self.max_length}")
        if not self.learning_rate > 0:
            raise ValueError(f"DPOSettings.learning_rate must be > 0, got {self.learning_rate}")
        self.lora_target_modules = check_target_modules("DPOSettings", self.lora_target_modules)
        check_dtype(self.dtype, "DPOSettings.dtype")
        check_report_to(self.report_to, "DPOSettings.report_to")


@dataclass
class DPOResult:
    """What `train_dpo` returns."""

    model: torch.nn.Module
    """a PeftModel whose adapter "default" is the DPO policy; adapter None is the reference"""
    history: pd.DataFrame
    """one row per step: step, loss, rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies"""
    seconds: float
    n_pairs: int
    settings: DPOSettings = field(repr=False)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
    """DPO's per-pair loss from sequence log-probabilities: -log sigmoid(beta * (h(chosen) - h(rejected)))."""
    beta = check_beta(beta)
    as_tensor = [torch.as_tensor(x, dtype=torch.float64) for x in (policy_chosen, policy_rejected, ref_chosen,
                                                                  ref_rejected)]
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = as_tensor
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)


def shorten(tokenizer, text: str, max_tokens: int, *, keep: str) -> str:
    """`text` cut to its first (keep="start") or last (keep="end") `max_tokens` tokens, decoded back to text."""
    if keep not in ("start", "end"):
        raise ValueError(f"keep must be 'start' or 'end', got {keep!r}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens] if keep == "start" else ids[-max_tokens:], skip_special_tokens=True)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def dpo_token_ids(tokenizer, prompt: str, chosen: str, rejected: str, max_length: int | None = None
                  ) -> tuple[list[int], list[int], list[int]]:
    """(prompt_ids, chosen_ids, rejected_ids) as TRL's DPOTrainer makes them from non-conversational text.

    With `max_length`, each reply is cut so that prompt + reply keeps its first `max_length` tokens.
    """
    eos = tokenizer.eos_token or ""
    chosen, rejected = (c if c.endswith(eos) else c + eos for c in (chosen, rejected))
    prompt_ids = tokenizer(prompt)["input_ids"]
    with_chosen = tokenizer(prompt + chosen)["input_ids"]
    with_rejected = tokenizer(prompt + rejected)["input_ids"]
    n = min(_common_prefix(prompt_ids, with_chosen), _common_prefix(prompt_ids, with_rejected))
    chosen_ids, rejected_ids = with_chosen[n:], with_rejected[n:]
    if max_length is not None:
        room = max(max_length - n, 0)
        chosen_ids, rejected_ids = chosen_ids[:room], rejected_ids[:room]
    return prompt_ids[:n], chosen_ids, rejected_ids


def sequence_logps(model, tokenizer, pairs, *, adapter: str | None, max_length: int, batch_size: int = 8,
                   dtype: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Summed log-probabilities of each pair's chosen and rejected reply under `adapter` (None: the reference)."""
    pairs = check_pairs(pairs)
    queries, chosen, rejected = [], [], []
    for index, pair in enumerate(pairs):
        prompt_ids, chosen_ids, rejected_ids = dpo_token_ids(tokenizer, pair["prompt"], pair["chosen"],
                                                             pair["rejected"], max_length)
        if not chosen_ids or not rejected_ids:
            raise ValueError(f"pairs[{index}]: the prompt alone fills max_length={max_length} tokens; shorten it")
        queries.append(torch.tensor(prompt_ids))
        chosen.append(torch.tensor(chosen_ids))
        rejected.append(torch.tensor(rejected_ids))
    logps = token_logprobs(model, tokenizer, queries + queries, chosen + rejected, adapter=adapter,
                           batch_size=batch_size, dtype=dtype)
    sums = np.array([float(x.sum()) for x in logps])
    return sums[: len(pairs)], sums[len(pairs):]


def implicit_rewards(model, tokenizer, pairs, *, beta: float, adapter: str | None = "default",
                     ref_adapter: str | None = None, max_length: int = 256, batch_size: int = 8,
                     dtype: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """DPO's implicit reward beta * (log pi - log pi_ref) of each pair's chosen and rejected reply."""
    beta = check_beta(beta)
    kwargs = dict(max_length=max_length, batch_size=batch_size, dtype=dtype)
    policy = sequence_logps(model, tokenizer, pairs, adapter=adapter, **kwargs)
    reference = sequence_logps(model, tokenizer, pairs, adapter=ref_adapter, **kwargs)
    return beta * (policy[0] - reference[0]), beta * (policy[1] - reference[1])


def dpo_config(settings: DPOSettings, scratch: str):
    """TRL's DPOConfig for `settings`: rlxf.lm.precision, no gradient checkpointing, constant LR, no saving."""
    from trl import DPOConfig

    return DPOConfig(
        output_dir=settings.output_dir or scratch, max_steps=settings.steps, beta=settings.beta,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps, learning_rate=settings.learning_rate,
        lr_scheduler_type="constant", warmup_steps=0, max_length=settings.max_length, logging_steps=1,
        save_strategy="no", report_to=settings.report_to, seed=settings.seed,
        # TRL's defaults are bf16=True and gradient checkpointing on: the machine decides here (rlxf.lm.precision).
        **trainer_precision_kwargs(training_precision(settings.dtype)),
        gradient_checkpointing=False, activation_checkpointing=False, dataloader_pin_memory=False,
    )


def train_dpo(model, tokenizer, pairs, settings: DPOSettings) -> DPOResult:
    """Train a new LoRA adapter ("default") on `model` with TRL's DPOTrainer; the reference is `model` as given.

    `pairs`: mappings with `prompt` (the policy's formatted prompt), `chosen` and `rejected` replies.
    """
    from datasets import Dataset
    from trl import DPOTrainer

    pairs = check_pairs(pairs)
    if not pairs:
        raise ValueError("pairs is empty: expected at least one preference pair")
    dataset = Dataset.from_dict({key: [p[key] for p in pairs] for key in ("prompt", "chosen", "rejected")})
    with tempfile.TemporaryDirectory(prefix="rlxf-dpo-") as scratch:
        trainer = DPOTrainer(model=model, args=dpo_config(settings, scratch), train_dataset=dataset,
                             processing_class=tokenizer, peft_config=lora_config(settings),
                             callbacks=[thread_budget_callback()])
        if len(trainer.train_dataset) < len(pairs):
            print(f"DPO: TRL left out {len(pairs) - len(trainer.train_dataset)} of {len(pairs)} pairs whose prompt "
                  f"alone fills max_length={settings.max_length}")
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    keys = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")
    history = pd.DataFrame([{"step": row["step"], **{k: row[k] for k in keys if k in row}}
                            for row in trainer.state.log_history if "loss" in row])
    trained = without_autocast_wrapper(trainer.model)
    trained.eval()
    return DPOResult(trained, history, seconds, len(trainer.train_dataset), settings)


class MappedPromptReward(RewardFunction):
    """A reward model that reads each prompt in its own format: `reward(prompt_map[prompt], completion)`.

    The policy sees chat-formatted prompts; a reward model trained on HH-RLHF text reads "Human: ... Assistant: ".
    """

    def __init__(self, reward, prompt_map: dict[str, str], name: str = "mapped_reward"):
        if not callable(reward):
            raise TypeError(f"reward must be callable, got {type(reward).__name__}")
        self.reward, self.prompt_map = reward, dict(prompt_map)
        super().__init__(name)

    def score(self, prompts: list[str], completions: list[str], **kwargs):
        missing = [p for p in prompts if p not in self.prompt_map]
        if missing:
            raise KeyError(f"{self.__name__}: {len(missing)} prompt(s) have no mapped form, e.g. {missing[0][:80]!r}")
        return self.reward([self.prompt_map[p] for p in prompts], completions)
