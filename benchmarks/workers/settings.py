"""The benchmark's settings, shared by the driver (`benchmarks/ppo_vs_trl.py`) and its workers; no heavy imports."""

from __future__ import annotations

from dataclasses import dataclass

TRL_VERSION = "1.12.0"
CRITICS = ("full", "lora")  # TRL's value model: all weights train, or LoRA + head


@dataclass
class BenchSettings:
    """The task and PPO settings shared by both libraries."""

    model: str = "smollm2-135m-instruct"
    """policy base and reward-model base: an rlxf model name (`tiny-llama` for a quick check) or a directory"""
    updates: int = 8
    """PPO updates per run (the first is a warm-up, left out of the timing medians)"""
    threads: int = 2
    """torch / OpenMP threads of every run"""
    seed: int = 0
    """seed of repeat 0; repeat r uses seed + r for both libraries"""
    batch_size: int = 4
    """prompts (rollouts) per update"""
    num_minibatches: int = 1
    """minibatches per PPO epoch"""
    ppo_epochs: int = 4
    """optimisation passes over each batch"""
    learning_rate: float = 1e-4
    """AdamW learning rate, constant (TRL's default linear decay is switched off)"""
    max_new_tokens: int = 32
    """most tokens generated per reply"""
    temperature: float = 0.7
    """sampling temperature (also divides the logits of the PPO log-probs, in both libraries)"""
    kl_coef: float = 0.05
    """fixed KL coefficient (TRL's default; rlxf's adaptive controller is switched off)"""
    lora_r: int = 8
    """LoRA rank of the policy adapter"""
    lora_alpha: int = 16
    """LoRA scaling numerator"""
    lora_target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    """modules that get LoRA"""
    trl_critics: tuple[str, ...] = ("full", "lora")
    """TRL's separate value model, one TRL run per entry in every repeat: "full" (TRL's documented setup, all weights
    train) or "lora" (LoRA on the same modules + its head)"""
    dtype: str = "fp32"
    """compute precision of both libraries: "fp32", or "bf16" autocast over fp32 weights (the driver resolves "auto")"""
    eval_samples: int = 4
    """samples per prompt in the before/after evaluation"""

    def __post_init__(self) -> None:
        self.lora_target_modules, self.trl_critics = tuple(self.lora_target_modules), tuple(self.trl_critics)
        for name in ("updates", "threads", "batch_size", "num_minibatches", "ppo_epochs", "max_new_tokens",
                     "lora_r", "lora_alpha", "eval_samples"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)!r}")
        if self.updates < 2:
            raise ValueError(f"--updates must be >= 2 (the first update is a warm-up), got {self.updates}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(f"--batch-size ({self.batch_size}) must be a multiple of --num-minibatches "
                             f"({self.num_minibatches}) (TRL needs equal minibatches)")
        if not (self.learning_rate > 0 and self.temperature > 0 and self.kl_coef >= 0):
            raise ValueError("--lr and --temperature must be > 0 and --kl-coef >= 0")
        critics = self.trl_critics
        if not critics or set(critics) - set(CRITICS) or len(set(critics)) < len(critics):
            raise ValueError(f"--trl-critics must be distinct entries of {','.join(CRITICS)}, got "
                             f"{','.join(critics)!r}")
        if self.dtype not in ("fp32", "bf16"):
            raise ValueError(f"dtype must be 'fp32' or 'bf16' (resolved from --dtype), got {self.dtype!r}")
