"""The reward_fn protocol: every reward source behind one signature.

`reward_fn(prompts, completions, **kwargs) -> list[float]`.

The same object serves `rlxf.algos.ppo` (positional `reward_fn(prompts, completions)`) and TRL's GRPO/RLOO trainers,
which call `f(prompts=..., completions=..., completion_ids=..., trainer_state=..., <extra dataset columns>...)`
and name the reward after `f.__name__`. Reward objects are plain callables (never `nn.Module`, which TRL would
treat as a reward *model*), hold their model loaded once, and score in batches without gradients on its device.

Inputs, checked on every call:
- `prompts` and `completions` are lists of equal length (else ValueError); an empty list returns [].
- each element is a str (else TypeError naming the index); a conversational element (TRL's list of
  `{"role", "content"}` messages) is read as the content of its last message.
- an empty completion is scored as the model scores it (for BERT-like tokenizers: just `[CLS] [SEP]`); it is not
  rejected, because a policy can and does produce empty replies and the reward must say what they are worth.
  Only a classifier whose tokenizer adds no special tokens cannot score "" (no tokens at all): ValueError.

A reward may also report on the batch it just scored: `pop_stats() -> {name: number}` (e.g. a judge's fallbacks);
`score_batch`, how trainers call a reward_fn, collects it (PPO logs it as `reward/<name>`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from rlxf.infra.checks import check_rewards
from rlxf.infra.identity import callable_name, identity_of


def check_texts(texts: Sequence[str], what: str) -> list[str]:
    """A list of strings, or a TypeError naming the first bad index."""
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, got a single str (wrap it in a list)")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{index}] must be a str, got {type(text).__name__}")
    return texts


def _as_text(value, index: int, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(m, Mapping) for m in value):
        content = value[-1].get("content")
        if isinstance(content, str):
            return content
    raise TypeError(f"{what}[{index}] must be a str (or a list of chat messages), got {type(value).__name__}")


def check_batch(prompts: Sequence, completions: Sequence) -> tuple[list[str], list[str]]:
    """Prompts and completions as equal-length lists of strings (see the module docstring for the rules)."""
    for what, values in (("prompts", prompts), ("completions", completions)):
        if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__"):
            raise TypeError(f"{what} must be a list (or array) of strings, got {type(values).__name__}")
    prompts, completions = list(prompts), list(completions)
    if len(prompts) != len(completions):
        raise ValueError(
            f"prompts and completions differ in length ({len(prompts)} vs {len(completions)}): "
            "one prompt per completion"
        )
    return (
        [_as_text(p, i, "prompts") for i, p in enumerate(prompts)],
        [_as_text(c, i, "completions") for i, c in enumerate(completions)],
    )


class RewardFunction:
    """Base class: checks the batch, then `score(prompts, completions, **kwargs)` does the work."""

    def __init__(self, name: str):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a reward needs a non-empty name (TRL logs it as rewards/<name>), got {name!r}")
        self.__name__ = name

    def __call__(self, prompts: Sequence, completions: Sequence, **kwargs) -> list[float]:
        prompts, completions = check_batch(prompts, completions)
        if not completions:
            return []
        scores = self.score(prompts, completions, **kwargs)
        return [float(s) for s in scores]

    def score(self, prompts: list[str], completions: list[str], **kwargs) -> Sequence[float]:
        raise NotImplementedError

    def identity(self) -> dict:
        """What makes the scores what they are, for a run's fingerprint: the name and the public attributes (models
        by a sample of their weights, rewards by their own identity; see rlxf.infra.identity.identity_of)."""
        return {"name": self.__name__, **{key: identity_of(value) for key, value in vars(self).items()
                                          if not key.startswith("_")}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r})"


class CombinedReward(RewardFunction):
    """Several rewards on the same batch, combined as a (weighted) mean: sum(w_i * r_i) / sum(w_i)."""

    def __init__(self, rewards: Sequence[Callable], weights: Sequence[float] | None = None, name: str = "combined"):
        rewards = list(rewards)
        if not rewards:
            raise ValueError("CombinedReward needs at least one reward")
        for index, reward in enumerate(rewards):
            if not callable(reward):
                raise TypeError(f"rewards[{index}] is not callable: {type(reward).__name__}")
        weights = [1.0] * len(rewards) if weights is None else [float(w) for w in weights]
        if len(weights) != len(rewards):
            raise ValueError(f"{len(weights)} weights for {len(rewards)} rewards: give one weight per reward")
        if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {weights}")
        self.rewards, self.weights = rewards, np.asarray(weights)
        super().__init__(name)

    def components(self, prompts: Sequence, completions: Sequence, **kwargs) -> dict[str, list[float]]:
        """Each reward's scores by its name (for logging what the combination is made of)."""
        prompts, completions = check_batch(prompts, completions)
        out = {}
        for index, reward in enumerate(self.rewards):
            name = getattr(reward, "__name__", f"reward_{index}")
            scores = [float(s) for s in reward(prompts=prompts, completions=completions, **kwargs)]
            if len(scores) != len(completions):
                raise ValueError(f"reward {name!r} returned {len(scores)} scores for {len(completions)} completions")
            out[name if name not in out else f"{name}_{index}"] = scores
        return out

    def score(self, prompts: list[str], completions: list[str], **kwargs) -> np.ndarray:
        table = np.asarray(list(self.components(prompts, completions, **kwargs).values()))
        return self.weights @ table / self.weights.sum()

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{getattr(r, '__name__', '?')}*{w:g}" for r, w in zip(self.rewards, self.weights, strict=True)
        )
        return f"CombinedReward(name={self.__name__!r}, {parts})"


class ConstantReward(RewardFunction):
    """The same reward for every completion: a control run.

    PPO with a constant reward still feels its per-token KL penalty (and whatever the sampling does), so a control
    run at the same steps and KL coefficient shows what changes without any feedback at all (e.g. reply length);
    a real reward's effect is the difference to the control, not to the starting point.
    """

    def __init__(self, value: float = 0.0, name: str = "constant"):
        if not np.isfinite(value):
            raise ValueError(f"ConstantReward needs a finite value, got {value!r}")
        self.value = float(value)
        super().__init__(name)

    def score(self, prompts: list[str], completions: list[str], **kwargs) -> np.ndarray:
        return np.full(len(completions), self.value)


class RewardFunctionError(RuntimeError):
    """reward_fn raised; the message names the step, the original error is chained (`__cause__`)."""


def score_batch(reward_fn: Callable, prompts: list[str], completions: list[str], *, step: int,
                note: str = "") -> tuple[torch.Tensor, dict[str, float]]:
    """A trainer's call of `reward_fn(prompts, completions)` at `step` -> (the rewards, checked, as a float tensor;
    the reward's statistics of this batch from `reward_fn.pop_stats()`, {} without that method).

    A reward_fn that raises becomes `RewardFunctionError`, bad rewards or stats a ValueError, naming the step and
    the reward (`note`: where the stopped run can resume from)."""
    name = callable_name(reward_fn)
    try:
        raw = reward_fn(list(prompts), list(completions))
    except Exception as error:
        raise RewardFunctionError(f"step {step}: reward_fn {name!r} raised {type(error).__name__}: {error}. "
                                  f"{note}".rstrip()) from error
    scores = check_rewards(raw, len(completions), "reward_fn", step, note)
    stats = reward_fn.pop_stats() if callable(getattr(reward_fn, "pop_stats", None)) else {}
    if not isinstance(stats, Mapping) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in stats.items()):
        raise ValueError(f"step {step}: {name}.pop_stats() must return a dict of str -> number, got {stats!r}")
    return scores, {key: float(value) for key, value in stats.items()}
