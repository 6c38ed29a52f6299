"""Checks of the arguments of the trainers' public calls: each error names the parameter and what was expected."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def check_count(value, parameter: str) -> int:
    """An int >= 0 (not a bool, not 2.5) for a count such as `steps` or `rounds`; the error names `parameter`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{parameter}: expected an int >= 0, got {value!r}")
    return int(value)


def check_optional_count(value, parameter: str) -> int | None:
    """None, or an int >= 0 (e.g. `keep_checkpoints`); the error names `parameter`."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
        raise ValueError(f"{parameter} must be None or an int >= 0, got {value!r}")
    return value


def check_list(value, parameter: str) -> Sequence:
    """A list-like of samples, not a str (a str is a sequence of characters: one prompt is `[prompt]`)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        hint = f" {value[:40]!r} (wrap one item in a list)" if isinstance(value, str) else ""
        raise ValueError(f"{parameter}: expected a list (one entry per sample), got {type(value).__name__}{hint}")
    return value


def check_prompts(prompts, parameter: str) -> list[str]:
    """A non-empty list of prompt strings."""
    if isinstance(prompts, (str, bytes)):
        raise ValueError(f"{parameter}: expected a list of prompt strings, got {type(prompts).__name__} "
                         f"{prompts[:40]!r} (wrap one prompt in a list)")
    prompts = check_list(prompts, parameter)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"{parameter}: expected a non-empty list of strings")
    return list(prompts)


def check_rewards(rewards, n: int, source: str, step: int, note: str = "") -> torch.Tensor:
    """Rewards as a float32 tensor of `n` finite values from a sequence or a 1-D tensor or array; anything else (a
    dict, a set, a (2, 2) tensor) stops the run naming `step` and `source`."""
    if rewards is None or isinstance(rewards, (str, bytes, int, float)):
        raise ValueError(f"step {step}: {source} gave {type(rewards).__name__} {rewards!r}; expected a list of "
                         f"{n} floats, one per response")
    if isinstance(rewards, (torch.Tensor, np.ndarray)) and rewards.ndim != 1:
        raise ValueError(f"step {step}: {source} gave a {type(rewards).__name__} of shape {tuple(rewards.shape)}; "
                         f"expected one dimension of {n} rewards, one per response (it is not flattened)")
    if not isinstance(rewards, (torch.Tensor, np.ndarray, Sequence)):
        why = " (unordered: which reward is whose?)" if isinstance(rewards, (set, frozenset, dict)) else ""
        raise ValueError(f"step {step}: {source} gave a {type(rewards).__name__}{why}; expected a list or a 1-D "
                         f"tensor of {n} floats, one per response in order")
    values = rewards.detach().cpu().tolist() if isinstance(rewards, torch.Tensor) else list(rewards)
    if len(values) != n:
        raise ValueError(f"step {step}: {source} has {len(values)} rewards for {n} responses")
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError) as error:
        raise ValueError(f"step {step}: {source} has a reward that is not a number: {error}") from error
    scores = torch.tensor(values, dtype=torch.float32)  # 1e39 is finite in float64, inf in float32
    bad = [i for i, v in enumerate(scores.tolist()) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"step {step}: non-finite reward {values[bad[0]]} for sample {bad[0]} from {source} "
                         f"({len(bad)} of {n}; rewards are float32); stopped. {note}".rstrip())
    return scores

def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_seed(value, parameter: str) -> int:
    """A seed: an int in [0, 2**32 - 1] (numpy's range; -1, 2**40 and 1.5 are not seeds)."""
    if not _is_int(value) or not 0 <= value < 2**32:
        raise ValueError(f"{parameter} must be an int in [0, 2**32 - 1], got {value!r}")
    return int(value)


def check_fields(settings, *, counts=(), positive_counts=(), positive=(), non_negative=(), unit=(), finite=(),
                 optional_counts=(), seeds=()) -> None:
    """The numeric fields of a settings dataclass: `counts` ints >= 0, `positive_counts` ints > 0 (2.5 or True is no
    count), `positive` finite numbers > 0, `non_negative` finite >= 0, `unit` in [0, 1], `finite` finite or None,
    `optional_counts` None or ints >= 0, `seeds` seeds. The error names the class, the field and what was expected."""
    where = type(settings).__name__
    for name in seeds:
        check_seed(getattr(settings, name), f"{where}.{name}")
    for name in optional_counts:
        check_optional_count(getattr(settings, name), f"{where}.{name}")

    def number(name: str) -> float:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{where}.{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{where}.{name} must be finite, got {value!r}: it enters the loss, which would be nan")
        return value

    for name in (*counts, *positive_counts):
        value = getattr(settings, name)
        minimum = 1 if name in positive_counts else 0
        if not _is_int(value) or value < minimum:
            raise ValueError(f"{where}.{name} must be an int >= {minimum} (a count), got {value!r}")
    for name in positive:
        if not number(name) > 0:
            raise ValueError(f"{where}.{name} must be > 0, got {getattr(settings, name)!r}")
    for name in non_negative:
        if not number(name) >= 0:
            raise ValueError(f"{where}.{name} must be >= 0, got {getattr(settings, name)!r}")
    for name in unit:
        if not 0.0 <= number(name) <= 1.0:
            raise ValueError(f"{where}.{name} must be in [0, 1], got {getattr(settings, name)!r}")
    for name in finite:
        if getattr(settings, name) is not None:
            number(name)


def loss_error(step: int, where: str, policy_loss: float, value_loss: float, settings, scores: torch.Tensor) -> str:
    """Why a PPO loss is not finite: each non-finite term with the settings behind it, and the rewards' scale."""
    terms = {"the policy loss": (policy_loss, "advantages from the rewards and the KL penalty (init_kl_coef="
                                              f"{settings.init_kl_coef}); learning_rate={settings.learning_rate}"),
             "the value loss": (value_loss, f"returns from the rewards and the KL penalty; vf_coef={settings.vf_coef}"),
             "vf_coef x value loss": (settings.vf_coef * value_loss, f"vf_coef={settings.vf_coef}")}
    bad = [f"{name} is {value} ({source})" for name, (value, source) in terms.items() if not math.isfinite(value)]
    largest = float(scores.abs().max()) if scores.numel() else 0.0
    scale = (f"; the rewards reach {largest:g}: their squares overflow float32 (about 3e38) in the value loss and "
             "the advantage whitening, so scale reward_fn's output down" if largest > 1e15 else "")
    return f"step {step}: non-finite loss in {where}: {'; '.join(bad) or 'the sum of the terms'}{scale}; stopped"
