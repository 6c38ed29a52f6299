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
    """Rewards as a float32 tensor of `n` finite values; anything else stops the run naming `step` and `source`."""
    if rewards is None or isinstance(rewards, (str, bytes, int, float)):
        raise ValueError(f"step {step}: {source} gave {type(rewards).__name__} {rewards!r}; expected a list of "
                         f"{n} floats, one per response")
    try:
        values = rewards.detach().cpu().flatten().tolist() if isinstance(rewards, torch.Tensor) else list(rewards)
    except TypeError as error:
        raise ValueError(f"step {step}: {source} gave a {type(rewards).__name__}; expected a list of {n} floats, "
                         "one per response") from error
    if len(values) != n:
        raise ValueError(f"step {step}: {source} has {len(values)} rewards for {n} responses")
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError) as error:
        raise ValueError(f"step {step}: {source} has a reward that is not a number: {error}") from error
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"step {step}: non-finite reward {values[bad[0]]} for sample {bad[0]} from {source} "
                         f"({len(bad)} of {n}); stopped. {note}".rstrip())
    return torch.tensor(values, dtype=torch.float32)
