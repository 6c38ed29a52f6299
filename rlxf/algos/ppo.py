"""LoRA-PPO for causal language models with rewards from any callable (CleanRL-style: read top to bottom).

One PPO step on a batch of (query, response, score):
  1. no-grad forwards of the policy (old log-probs, values, entropy) and of the frozen reference (its log-probs);
  2. the per-token reward is `-kl_coef * KL(token)` everywhere plus the score on the last response token;
  3. GAE turns rewards and values into advantages (whitened) and returns;
  4. `ppo_epochs` passes over shuffled minibatches minimise clipped policy loss + vf_coef * clipped value loss;
  5. the KL controller (fixed, or adaptive after Ziegler et al. 2019) sets the next step's kl_coef.

The policy is a LoRA adapter on a frozen base; the value head is a Linear on the policy's last hidden state (one
shared backbone, one forward for logits and values); the reference is a frozen copy of the starting adapter, or the
base with adapters disabled when PPO starts from a new (zero) adapter. Several trainers can share one PeftModel,
each with its own adapter, reference and value head (e.g. two bots in self-play). Under torchrun or accelerate
(`rlxf.distributed`) each process rolls out its own prompts; gradients, whitening and metrics span all processes.

Metrics of every step (keys of the dicts in `history`, lines of `output_dir/metrics.jsonl`):
  step                      steps done, counting this one
  env/reward_mean, _std     mean and std of the scores that enter PPO (after the missing-EOS penalty)
  env/response_length_mean  mean response length in tokens (up to and including EOS)
  env/missing_eos_frac      fraction of responses without an EOS token
  objective/kl              KL(policy || reference), k1 estimator, summed over the response, mean over the batch
  objective/kl_k3           the same with the k3 estimator (non-negative, lower variance)
  objective/kl_coef         the KL coefficient used in this step's rewards
  objective/entropy         mean per-token entropy of the policy on the responses (nats)
  objective/non_score_reward  -kl_coef * KL summed over the response, mean over the batch
  objective/rlhf_reward     env/reward_mean + objective/non_score_reward (the quantity PPO maximises)
  policy/clipfrac           fraction of tokens where the probability ratio was clipped (mean over updates)
  policy/approxkl           KL(old || new) estimate (k3 of the ratio, CleanRL), mean over updates
  loss/policy, loss/value, loss/total  means over the minibatch updates
  val/mean, val/clipfrac    mean value on response tokens; fraction of clipped value updates
  val/explained_variance    1 - Var(returns - values) / Var(returns) on the rollout
  time/generation_s, time/scoring_s   wall time of generation and of reward_fn (train() only)
  time/update_s             wall time of the PPO step (rollout forwards + all updates); its parts (no GPU sync: on CPU):
  time/rollout_policy_s, _ref_s, time/optimise_s   the policy's and reference's no-grad forwards; the PPO epochs
  time/tokens_per_s         response tokens of the batch / wall time of the whole step
  reward/<key>              the reward's own statistics of the batch (train() only; reward_fn.pop_stats(), if any)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import rlxf.progress as progress
from rlxf.infra.checkpoint import RunStore, load_tensors, restore_rng, set_seed
from rlxf.infra.checks import check_count, check_fields, check_list, check_prompts, check_rewards, loss_error
from rlxf.infra.distributed import average_gradients, is_distributed, masked_moments, mean_over_ranks
from rlxf.infra.identity import data_identity, model_identity, not_identity, settings_identity, weights_hash
from rlxf.infra.memory import reuse_freed_memory
from rlxf.lm.adapters import (
    LORA_TARGET_MODULES,
    adapter_parameters,
    attach_policy,
    attach_reference,
    load_adapters,
    save_adapters,
    set_lora_dropout,
    using_adapter,
)
from rlxf.lm.decode import release_rollout_weights
from rlxf.lm.generation import collate, eos_ids, keeps_logits, padding_id, sample_tokens, token_ids
from rlxf.lm.kernels import training_kernels
from rlxf.lm.logprobs import response_logits, target_logprobs
from rlxf.lm.precision import check_dtype, precision, store_frozen_weights
from rlxf.rewards.base import RewardFunctionError, score_batch  # noqa: F401 (RewardFunctionError: raised in train)


@dataclass
class PPOSettings:
    """Settings of LoRA-PPO; defaults follow the RLHF literature (Ziegler et al. 2019, TRL, CleanRL)."""

    # --- PPO ---
    learning_rate: float = 1e-4
    """AdamW learning rate. TRL's classic 1.41e-5 is for full fine-tuning; LoRA adapters want ~1e-4 to 1e-3."""
    batch_size: int = 16
    """prompts (rollouts) per PPO step"""
    num_minibatches: int = 1
    """minibatches per PPO epoch (TRL's default 1: every epoch is one update on the whole batch)"""
    ppo_epochs: int = 4
    """optimisation passes over each batch"""
    cliprange: float = 0.2
    """clip of the probability ratio in the policy loss"""
    cliprange_value: float = 0.2
    """clip of the value change in the value loss"""
    vf_coef: float = 0.1
    """weight of the value loss in the total loss"""
    gamma: float = 1.0
    """discount over response tokens"""
    lam: float = 0.95
    """GAE lambda"""
    whiten_advantages: bool = True
    """normalise advantages to mean 0, std 1 over the batch's response tokens"""
    max_grad_norm: float | None = 1.0
    """gradient-norm clip of each update (None: no clipping, as in TRL's PPO loop)"""
    # --- KL penalty to the reference policy ---
    kl_estimator: str = "k1"
    """per-token KL estimator folded into the reward: "k1" (log p - log p_ref) or "k3" (non-negative)"""
    adaptive_kl: bool = True
    """adapt kl_coef towards target_kl (Ziegler et al. 2019); False keeps init_kl_coef fixed"""
    init_kl_coef: float = 0.2
    """KL coefficient at the start (the fixed one when adaptive_kl is False)"""
    target_kl: float = 6.0
    """target KL per response (nats, summed over tokens) of the adaptive controller"""
    horizon: int = 10_000
    """horizon of the adaptive controller: larger adapts more slowly"""
    missing_eos_penalty: float | None = None
    """subtracted from the score of a generated reply that has no EOS (train() only); None: no penalty"""
    # --- generation ---
    max_new_tokens: int = 32
    """most tokens generated per reply"""
    temperature: float = 0.7
    """sampling temperature, as in TRL's PPO (small models ramble at 1.0); log-probs use the same temperature"""
    top_k: int = 0
    """sample from the k most likely tokens; 0: off (PPO's log-probs assume the full distribution)"""
    top_p: float = 1.0
    """nucleus sampling; 1.0: off"""
    # --- LoRA ---
    lora_r: int = 8
    """LoRA rank of a new adapter"""
    lora_alpha: int = 16
    """LoRA scaling numerator (scale = alpha / r)"""
    lora_dropout: float = 0.0
    """dropout on the LoRA input during updates only (base-model dropout stays off so that ratios start at 1)"""
    lora_target_modules: str | tuple[str, ...] = LORA_TARGET_MODULES
    """modules that get LoRA: names such as ("q_proj", "v_proj"), or "all-linear" """
    # --- numerics ---
    dtype: str = "auto"
    """compute precision of rollouts, updates and sampling: "auto" (bf16 autocast where the hardware has native
    bf16, else fp32; see rlxf.lm.precision), "fp32" or "bf16". Weights, LoRA, value head and optimizer stay fp32"""
    # --- run ---
    seed: int = 0
    """seed of python, numpy and torch (sampling, LoRA init, minibatch order, prompt order)"""
    checkpoint_every: int = not_identity(50)
    """write a checkpoint every this many steps (and at the end of train()); 0: only at the end"""
    keep_checkpoints: int | None = not_identity(3)
    """keep the newest this many checkpoints (older ones are removed after each save); 0 or None: keep all"""
    output_dir: str | None = not_identity(None)
    """where metrics.jsonl, checkpoint-<step>/ and tensorboard/ go; None: write nothing. A new run moves an earlier
    run found there aside to `<output_dir>.old-<YYYYmmdd-HHMMSS>` (nothing is deleted)"""
    report_to: str = not_identity("none")
    """also send every metrics row to "tensorboard" (`output_dir/tensorboard`), "trackio" or "wandb" """
    progress_bar: bool = not_identity(True)
    """show a tqdm bar in train()"""

    def __post_init__(self) -> None:
        check_fields(self, counts=("top_k", "checkpoint_every"), positive_counts=(
            "batch_size", "num_minibatches", "ppo_epochs", "max_new_tokens", "lora_r", "lora_alpha", "horizon"),
            positive=("learning_rate", "cliprange", "cliprange_value", "temperature", "target_kl", "top_p")
            + (("max_grad_norm",) if self.max_grad_norm is not None else ()),  # None: no clipping
            non_negative=("init_kl_coef", "vf_coef"), unit=("gamma", "lam", "lora_dropout"),
            finite=("missing_eos_penalty",), optional_counts=("keep_checkpoints",), seeds=("seed",))
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"PPOSettings.kl_estimator must be 'k1' or 'k3', got {self.kl_estimator!r}")
        check_dtype(self.dtype, "PPOSettings.dtype")
        if self.num_minibatches > self.batch_size:
            raise ValueError(f"PPOSettings.num_minibatches ({self.num_minibatches}) > batch_size ({self.batch_size})")
        if self.adaptive_kl and self.horizon < self.batch_size:  # 1 - 0.2 * batch / horizon must stay > 0
            raise ValueError(f"PPOSettings.horizon ({self.horizon}) must be >= batch_size ({self.batch_size}), or the "
                             "adaptive KL coefficient can turn negative (the KL penalty would become a bonus)")


# ---------------------------------------------------------------------------------------------- the PPO pieces
# Small pure functions on [batch, response_len] tensors; `mask` is 1 on real response tokens.


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over the positions where mask is 1 (over all positions, or along `dim`)."""
    total = (x * mask).sum() if dim is None else (x * mask).sum(dim)
    count = mask.sum() if dim is None else mask.sum(dim)
    return total / count.clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of x over the positions where mask is 1."""
    mean = masked_mean(x, mask)
    count = mask.sum()
    return masked_mean((x - mean) ** 2, mask) * count / (count - 1).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """x normalised to unit variance (and zero mean if shift_mean) over the masked positions; 0 elsewhere."""
    mean, var = masked_moments(x, mask) if is_distributed() else (masked_mean(x, mask), masked_var(x, mask))
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    return (whitened if shift_mean else whitened + mean) * mask


def gae(values: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation over right-padded responses -> (advantages, returns)."""
    values, rewards = values * mask, rewards * mask  # the value after the last token is 0: the episode ends
    last_advantage = torch.zeros_like(values[:, 0])
    advantages = torch.zeros_like(values)
    for t in reversed(range(values.shape[1])):
        next_value = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(values[:, t])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_advantage = delta + gamma * lam * last_advantage
        advantages[:, t] = last_advantage
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(logprobs, old_logprobs, advantages, mask, cliprange: float):
    """Clipped surrogate loss -> (loss, clipfrac, approx_kl)."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean((ratio - 1) - log_ratio, mask)  # k3 of KL(old || new), CleanRL
    return loss, clipfrac, approx_kl


def value_loss(values, old_values, returns, mask, cliprange_value: float):
    """Clipped value loss 0.5 * max((v - R)^2, (v_clipped - R)^2) -> (loss, clipfrac)."""
    values_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped = (values - returns) ** 2
    clipped = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clipfrac


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate log p - log p_ref (unbiased, can be negative)."""
    return logp - ref_logp


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate (r - 1) - log r with r = p_ref / p (unbiased, never negative; Schulman 2020)."""
    log_r = ref_logp - logp
    return torch.expm1(log_r) - log_r


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at every position (nats)."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) over masked positions (1: perfect, 0: no better than a constant)."""
    var_returns = masked_var(returns, mask)
    return float("nan") if var_returns == 0 else float(1 - masked_var(returns - values, mask) / var_returns)


class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        """Keep the coefficient."""


class AdaptiveKLController:
    """Proportional controller of the KL coefficient towards a target KL (Ziegler et al. 2019)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        """Raise the coefficient when KL is above target, lower it when below, by at most 20% per horizon."""
        if n_steps > self.horizon:  # 1 - 0.2 * n_steps / horizon could go below 0: the penalty would become a bonus
            raise ValueError(f"a step of {n_steps} samples with the adaptive KL horizon {self.horizon}: the horizon "
                             "(PPOSettings.horizon) must be >= the batch size, or the KL coefficient can turn negative")
        proportional_error = float(np.clip(current_kl / self.target - 1, -0.2, 0.2))
        self.value *= 1 + proportional_error * n_steps / self.horizon


# ---------------------------------------------------------------------------------------------------- the trainer


class PPOTrainer:
    """PPO on one LoRA adapter of a causal LM, with a value head on the shared backbone and a frozen reference.

    `policy_model`: a transformers causal LM (a new LoRA adapter is added) or a PeftModel; if the PeftModel already
    has `adapter_name` (e.g. an SFT adapter), PPO starts from it. `ref_adapter`: "auto" (a frozen copy named
    "<adapter_name>_ref" when starting from an existing adapter, else the base with adapters disabled, which equals
    a new zero-initialised LoRA), None (always the base with adapters disabled), or an adapter name (used if it
    exists, else created as a frozen copy of the starting adapter). Only this adapter and the value head train.
    Seeds python, numpy and torch from `settings.seed`.

    A run is identified by its fingerprint (`fingerprint`, rlxf.infra.identity: the settings that change results, the
    base model's name, architecture and a sample of its weights, the adapter names and starting weights, and in train()
    the prompts, batch size and reward by content); checkpoints store it, resuming another run's is an error.
    """

    def __init__(self, policy_model, tokenizer, settings: PPOSettings | None = None, *, adapter_name: str = "default",
                 ref_adapter: str | None = "auto"):
        self.settings = settings = settings if settings is not None else PPOSettings()
        self.tokenizer, self.adapter_name = tokenizer, adapter_name
        set_seed(settings.seed)
        self.model, started_from_existing = attach_policy(policy_model, adapter_name, settings)
        # A new adapter is a function of the seed; an existing one (e.g. an SFT adapter) is identified by its weights.
        start = weights_hash(adapter_parameters(self.model, adapter_name)) if started_from_existing else "new"
        self.ref_adapter = attach_reference(self.model, adapter_name, ref_adapter, started_from_existing)
        self.model.set_adapter(adapter_name)  # peft: the active adapter trains, all others freeze
        self.model.eval()  # dropout off everywhere: old and new log-probs must agree before the first update
        self.device = next(self.model.parameters()).device
        if self.device.type == "cpu":
            reuse_freed_memory()  # no page faults for every step's new tensors (rlxf.infra.memory)
        # One precision for sampling, rollout and update forwards: the ratio is exactly 1 before the first update.
        self.precision = store_frozen_weights(self.model, precision(settings.dtype, self.device))

        self.pad_id, self.eos_ids = padding_id(tokenizer), eos_ids(self.model, tokenizer)
        if self.pad_id is None or not self.eos_ids:
            raise ValueError("tokenizer needs an eos_token (and a pad_token, or eos is used for padding)")

        hidden_size = self.model.get_base_model().config.get_text_config().hidden_size
        self.value_head = nn.Linear(hidden_size, 1).to(self.device)
        nn.init.zeros_(self.value_head.weight)  # values start at 0: no random baseline noise in the first step
        nn.init.zeros_(self.value_head.bias)
        self.policy_params = [p for _, p in adapter_parameters(self.model, adapter_name)]
        if not self.policy_params:
            raise ValueError(f"adapter {adapter_name!r} has no trainable parameters")
        self.optimizer = torch.optim.AdamW([*self.policy_params, *self.value_head.parameters()],
                                           lr=settings.learning_rate, eps=1e-5, weight_decay=0.0,
                                           fused=self.device.type in ("cpu", "cuda") or None)  # one kernel, all
        self.kl_ctl = (AdaptiveKLController(settings.init_kl_coef, settings.target_kl, settings.horizon)
                       if settings.adaptive_kl else FixedKLController(settings.init_kl_coef))
        self._logits_to_keep = keeps_logits(self.model)
        self.step_count, self.history = 0, []
        self.store = RunStore(settings.output_dir, state_file="trainer_state.json", kind="PPO", unit="step",
                              owner="PPOSettings", metrics_file="metrics.jsonl",
                              keep_checkpoints=settings.keep_checkpoints, report_to=settings.report_to)
        self.fingerprint = self.store.fingerprint = {
            "kind": "PPO", "settings": settings_identity(settings), "model": model_identity(self.model),
            "adapter": {"name": adapter_name, "reference": self.ref_adapter, "start": start}}

    def _forward(self, batch: dict, index: torch.Tensor | None = None, with_entropy: bool = False):
        """One forward of the active adapter -> (logprobs, values, entropy) on the response positions."""
        rows = slice(None) if index is None else index
        input_ids = batch["input_ids"][rows]
        r_len = batch["response_mask"].shape[1]
        extra = {"logits_to_keep": r_len + 1} if self._logits_to_keep else {}
        with self.precision.autocast(), training_kernels(self.model, self.device.type):  # the same kernels always
            out = self.model(input_ids=input_ids, attention_mask=batch["attention_mask"][rows], use_cache=False,
                             position_ids=batch["position_ids"][rows], output_hidden_states=True, **extra)
        # Position t predicts token t+1: the response is predicted by the r_len positions before its end.
        hidden = out.hidden_states[-1][:, -(r_len + 1):-1].float()
        logprobs = target_logprobs(out.logits, input_ids[:, -r_len:], self.settings.temperature)
        values = self.value_head(hidden).squeeze(-1)
        entropy = (entropy_from_logits(response_logits(out.logits, r_len, self.settings.temperature))
                   if with_entropy else None)
        return logprobs, values, entropy

    def _ppo_step(self, queries: list[torch.Tensor], responses: list[torch.Tensor], scores: torch.Tensor,
                  timings: dict[str, float]) -> dict:
        """Rollout forwards, KL-shaped rewards, GAE, clipped PPO updates; logs and returns the metrics."""
        settings, step = self.settings, self.step_count + 1
        start = time.perf_counter()
        self.model.set_adapter(self.adapter_name)
        self.model.eval()  # dropout off (someone may have switched the shared model to train mode)
        batch = {k: v.to(self.device) for k, v in collate(queries, responses, self.pad_id).items()}
        mask = batch["response_mask"]
        scores = scores.to(self.device)
        n = len(queries)

        # 1. rollout statistics: one policy forward (log-probs + values + entropy), one reference forward
        set_lora_dropout(self.model, self.adapter_name, False)
        with torch.no_grad():
            old_logprobs, old_values, entropy = self._forward(batch, with_entropy=True)
            t_policy = time.perf_counter()
            with using_adapter(self.model, self.ref_adapter):
                ref_logprobs, _, _ = self._forward(batch)
            t_ref = time.perf_counter()
            old_values = old_values * mask

            # 2. per-token reward: KL penalty on every token, the score on the last one
            kl1, kl3 = kl_k1(old_logprobs, ref_logprobs) * mask, kl_k3(old_logprobs, ref_logprobs) * mask
            kl = kl1 if settings.kl_estimator == "k1" else kl3
            kl_coef = self.kl_ctl.value
            rewards = -kl_coef * kl
            last = mask.sum(1).long() - 1
            rewards[torch.arange(n, device=self.device), last] += scores

            # 3. advantages and returns
            advantages, returns = gae(old_values, rewards, mask, settings.gamma, settings.lam)
            if settings.whiten_advantages:
                advantages = masked_whiten(advantages, mask)

        # 4. PPO epochs over shuffled minibatches (the rollout weights go stale now: not held through the update)
        set_lora_dropout(self.model, self.adapter_name, True)
        release_rollout_weights(self.model)
        optimise_start = time.perf_counter()
        stats = {"pg": [], "vf": [], "total": [], "clipfrac": [], "approxkl": [], "vf_clipfrac": []}
        for epoch in range(settings.ppo_epochs):
            for minibatch, index in enumerate(torch.randperm(n).tensor_split(min(settings.num_minibatches, n))):
                index = index.to(self.device)
                logprobs, values, _ = self._forward(batch, index)
                m = mask[index]
                pg_loss, clipfrac, approx_kl = policy_loss(logprobs, old_logprobs[index], advantages[index], m,
                                                           settings.cliprange)
                vf_loss, vf_clipfrac = value_loss(values, old_values[index], returns[index], m,
                                                  settings.cliprange_value)
                loss = pg_loss + settings.vf_coef * vf_loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(loss_error(step, f"epoch {epoch}, minibatch {minibatch}", pg_loss.item(),
                                                        vf_loss.item(), settings, scores) + f"; {self.store.note()}")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                gradients = average_gradients(self.optimizer.param_groups[0]["params"])
                if settings.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(gradients, settings.max_grad_norm)
                self.optimizer.step()
                for key, value in zip(stats, (pg_loss, vf_loss, loss, clipfrac, approx_kl, vf_clipfrac), strict=True):
                    stats[key].append(value.item())
        optimise_s = time.perf_counter() - optimise_start
        if not all(bool(p.isfinite().all()) for p in self.optimizer.param_groups[0]["params"]):
            raise FloatingPointError(f"step {step}: the update made weights non-finite (learning_rate="
                                     f"{settings.learning_rate}, max_grad_norm={settings.max_grad_norm}); stopped.")
        set_lora_dropout(self.model, self.adapter_name, False)
        self.optimizer.zero_grad(set_to_none=True)  # free the gradient memory between steps

        # 5. the KL controller sets the next step's coefficient (from the KL of all processes' rollouts)
        self.kl_ctl.update(mean_over_ranks({"kl": float(kl.sum(1).mean())})["kl"], n)

        update_s = time.perf_counter() - start
        total_s = update_s + timings.get("time/generation_s", 0.0) + timings.get("time/scoring_s", 0.0)
        non_score = float((-kl_coef * kl).sum(1).mean())
        metrics = mean_over_ranks({
            "step": step,
            "env/reward_mean": float(scores.mean()),
            "env/reward_std": float(scores.std()) if n > 1 else 0.0,
            "env/response_length_mean": float(mask.sum(1).mean()),
            "env/missing_eos_frac": float(np.mean([not self._has_eos(r) for r in responses])),
            "objective/kl": float(kl1.sum(1).mean()),
            "objective/kl_k3": float(kl3.sum(1).mean()),
            "objective/kl_coef": float(kl_coef),
            "objective/entropy": float(masked_mean(entropy, mask)),
            "objective/non_score_reward": non_score,
            "objective/rlhf_reward": float(scores.mean()) + non_score,
            "policy/clipfrac": float(np.mean(stats["clipfrac"])),
            "policy/approxkl": float(np.mean(stats["approxkl"])),
            "loss/policy": float(np.mean(stats["pg"])),
            "loss/value": float(np.mean(stats["vf"])),
            "loss/total": float(np.mean(stats["total"])),
            "val/mean": float(masked_mean(old_values, mask)),
            "val/clipfrac": float(np.mean(stats["vf_clipfrac"])),
            "val/explained_variance": explained_variance(old_values, returns, mask),
            **timings,
            "time/update_s": update_s,
            "time/rollout_policy_s": t_policy - start, "time/rollout_ref_s": t_ref - t_policy,
            "time/optimise_s": optimise_s,
            "time/tokens_per_s": float(mask.sum()) / max(total_s, 1e-9),
        })
        return metrics

    def _record(self, metrics: dict) -> dict:
        """Keep a step's metrics row (history, metrics file, tracker); write a checkpoint when one is due."""
        step = self.step_count = metrics["step"]
        self.history.append(metrics)
        self.store.log(metrics, step, fresh=step == 1)  # step 1: a new run
        every = self.settings.checkpoint_every
        if self.settings.output_dir is not None and every and step % every == 0:
            self.save_checkpoint()
        return metrics

    # --- public API ---------------------------------------------------------------------------------------------

    def step(self, queries: Sequence, responses: Sequence, rewards: Sequence[float] | torch.Tensor) -> dict:
        """One PPO step on given queries and responses (token-id tensors/lists or strings) and their rewards (used as
        given: no missing-EOS penalty) -> its metrics (no time/generation_s, time/scoring_s). A trainer's first step
        starts a new run (an earlier run in output_dir is moved aside, see `train`)."""
        queries, responses = check_list(queries, "step(queries=...)"), check_list(responses, "step(responses=...)")
        if not queries:
            raise ValueError("step(queries=...): the batch is empty; expected at least one (query, response, reward)")
        if len(queries) != len(responses):
            raise ValueError(f"step(): {len(queries)} queries but {len(responses)} responses")
        queries = [token_ids(self.tokenizer, q, "queries", i, special_tokens=True) for i, q in enumerate(queries)]
        responses = [token_ids(self.tokenizer, r, "responses", i, special_tokens=False)
                     for i, r in enumerate(responses)]
        scores = check_rewards(rewards, len(queries), "step(rewards=...)", self.step_count + 1, self.store.note())
        if self.step_count == 0:
            self.store.start_fresh()
        return self._record(self._ppo_step(queries, responses, scores, timings={}))

    @torch.no_grad()
    def generate(self, prompts: Sequence[str]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
        """Sample one reply per prompt -> (queries, responses, texts).

        Batched, with the KV cache and left padding; each reply stops at EOS.
        """
        settings = self.settings
        queries = [token_ids(self.tokenizer, p, "prompts", i, special_tokens=True) for i, p in enumerate(prompts)]
        self.model.set_adapter(self.adapter_name)
        self.model.eval()
        set_lora_dropout(self.model, self.adapter_name, False)
        responses = sample_tokens(self.model, queries, max_new_tokens=settings.max_new_tokens,
                                  temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
                                  pad_id=self.pad_id, eos_ids=self.eos_ids, dtype=self.precision)
        return queries, responses, self.tokenizer.batch_decode(responses, skip_special_tokens=True)

    def train(self, prompts: Sequence[str], reward_fn: Callable[[list[str], list[str]], Sequence[float]],
              steps: int, *, batch_size: int | None = None, resume: bool | str | Path = False) -> list[dict]:
        """Generate, score with `reward_fn(prompts, completions) -> rewards`, step; until `steps` steps are done ->
        the history (one metrics dict per step, including the resumed ones).

        `resume`: False starts a new run; True continues from the latest valid checkpoint in output_dir (a corrupt
        one is skipped with a warning naming the file); a path from that checkpoint; "auto" from the latest valid
        checkpoint if it has this run's fingerprint, else a new run (a re-run notebook picks up where it stopped, a
        changed setting starts afresh). A new run moves an earlier run's directory aside (`rlxf.infra.checkpoint`).
        Resuming (True or a path) another run raises `RunMismatch` saying what differs.
        """
        prompts = check_prompts(prompts, "train(prompts=...)")
        if not callable(reward_fn):
            raise ValueError(f"train(reward_fn=...): expected a callable, got {type(reward_fn).__name__}")
        steps = check_count(steps, "train(steps=...)")
        batch_size = (self.settings.batch_size if batch_size is None
                      else check_count(batch_size, "train(batch_size=...)"))
        if batch_size < max(self.settings.num_minibatches, 1):
            raise ValueError(f"train(batch_size=...): must be >= num_minibatches ({self.settings.num_minibatches}), "
                             f"got {batch_size}")
        self.fingerprint = self.store.fingerprint = {**self.fingerprint, "data": data_identity(prompts, batch_size,
                                                                                               reward_fn)}
        with self.store.session():
            self.store.begin(resume, self.step_count, self.load_checkpoint)
            loop = progress.steps(steps, initial=self.step_count, desc="ppo", show=self.settings.progress_bar)
            for _ in loop:
                metrics = self._record(self._train_step(prompts, reward_fn, batch_size))
                loop.show(reward=f"{metrics['env/reward_mean']:.3f}", kl=f"{metrics['objective/kl']:.3f}")
            if self.store.output_dir is not None and self.step_count and not self.store.saved_at(self.step_count):
                self.save_checkpoint()  # the end of train() is always a checkpoint
        return self.history

    def _train_step(self, prompts: Sequence[str], reward_fn: Callable, batch_size: int) -> dict:
        """Generate the next batch's replies, score them, one PPO step -> its metrics (with the reward's own
        statistics of this batch as `reward/<key>` when `reward_fn` has `pop_stats() -> dict of numbers`)."""
        batch_prompts = self._prompt_batch(prompts, batch_size)
        start = time.perf_counter()
        queries, responses, texts = self.generate(batch_prompts)
        generated = time.perf_counter()
        scores, reward_stats = score_batch(reward_fn, batch_prompts, texts, step=self.step_count + 1,
                                           note=self.store.note())
        scored = time.perf_counter()
        if self.settings.missing_eos_penalty is not None:
            no_eos = torch.tensor([not self._has_eos(r) for r in responses])
            scores = scores - self.settings.missing_eos_penalty * no_eos.float()
        metrics = self._ppo_step(queries, responses, scores, {"time/generation_s": generated - start,
                                                              "time/scoring_s": scored - generated})
        return {**metrics, **{f"reward/{key}": value for key, value in reward_stats.items()}}

    # --- checkpoints --------------------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Write adapter(s), value head, optimizer, RNG states, KL coefficient, step, history and checksums atomically;
        then remove checkpoints beyond `keep_checkpoints`."""
        return self.store.save(self.step_count, self.checkpoint_state(), self.write_checkpoint_files)

    def load_checkpoint(self, path: str | Path | None = None) -> Path:
        """Restore everything `save_checkpoint` wrote (default: the latest valid checkpoint in output_dir), after
        checking the checksums (a corrupt file is named) and the run's fingerprint (`RunMismatch`)."""
        path, state = self.store.load(path)
        self.restore_checkpoint(path, state)
        restore_rng(path)
        self.store.loaded(path, self.history)
        return path

    def checkpoint_state(self) -> dict:
        """The JSON part of a checkpoint: step, KL coefficient, adapter names, settings, history."""
        return {"step": self.step_count, "kl_coef": self.kl_ctl.value, "adapter_name": self.adapter_name,
                "ref_adapter": self.ref_adapter, "config": dataclasses.asdict(self.settings), "history": self.history}

    def write_checkpoint_files(self, directory: Path) -> None:
        """The tensor part of a checkpoint into `directory`: adapter(s), value head, optimizer."""
        save_adapters(self.model, (self.adapter_name, self.ref_adapter), directory / "adapters")
        torch.save(self.value_head.state_dict(), directory / "value_head.pt")
        torch.save(self.optimizer.state_dict(), directory / "optimizer.pt")

    def restore_checkpoint(self, directory: Path, state: dict) -> None:
        """Load what `checkpoint_state` and `write_checkpoint_files` wrote into `directory` (RNG states aside)."""
        if (state["adapter_name"], state["ref_adapter"]) != (self.adapter_name, self.ref_adapter):
            raise ValueError(f"{directory} holds adapter {state['adapter_name']!r} / reference "
                             f"{state['ref_adapter']!r}, this trainer has {self.adapter_name!r} / {self.ref_adapter!r}")
        value_head = load_tensors(directory / "value_head.pt", map_location=self.device)
        optimizer = load_tensors(directory / "optimizer.pt", map_location=self.device)
        load_adapters(self.model, (self.adapter_name, self.ref_adapter), directory / "adapters")
        self.value_head.load_state_dict(value_head)
        self.optimizer.load_state_dict(optimizer)
        self.kl_ctl.value, self.step_count, self.history = state["kl_coef"], state["step"], state["history"]

    def _prompt_batch(self, prompts: Sequence[str], batch_size: int) -> list[str]:
        """The prompts of the next step: passes over a fresh seeded permutation, a function of the step (resumable)."""
        n, first, seed = len(prompts), self.step_count * batch_size, self.settings.seed
        return [prompts[int(torch.randperm(n, generator=torch.Generator().manual_seed(seed + k // n))[k % n])]
                for k in range(first, first + batch_size)]

    def _has_eos(self, response: torch.Tensor) -> bool:
        return any(int(t) in self.eos_ids for t in response)

