"""Reward objects: every reward source behind one signature, `reward_fn(prompts, completions, **kwargs) -> list[float]`.

The same object serves `rlxf.ppo` (positional `reward_fn(prompts, completions)`) and TRL's GRPO/RLOO trainers,
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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from rlxf.classifier import load_saved_classifier, predict_logits
from rlxf.data.mona import TEXT_TEMPLATE as MONA_TEXT_TEMPLATE  # one template for the data and the reward
from rlxf.data.mona import model_text

MONA_METADATA_FIELDS = ("country", "arr_type", "econ_class")


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
            f"prompts and completions differ in length ({len(prompts)} vs {len(completions)}): one prompt per completion"
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r})"


class ClassifierReward(RewardFunction):
    """A text classifier's view of each completion: one label's probability or logit, or a binary neutrality.

    `output`: "probability" (P(label), in [0, 1]), "logit" (the label's raw logit; IMDB positive logit as the
    sentiment yardstick), or "neutrality" (binary classifiers only: 1 - |P(0) - P(1)|, in [0, 1], 1 when the
    classifier cannot tell the classes apart: e.g. Democrat vs Republican).
    `label` is a class index or a name from `model.config.label2id`. With `include_prompt` the classifier reads
    prompt + completion; by default only the completion.
    """

    OUTPUTS = ("probability", "logit", "neutrality")

    def __init__(
        self,
        model,
        tokenizer,
        *,
        label: int | str = 1,
        output: str = "probability",
        include_prompt: bool = False,
        batch_size: int = 32,
        max_length: int = 512,
        name: str | None = None,
    ):
        if output not in self.OUTPUTS:
            raise ValueError(f"output must be one of {self.OUTPUTS}, got {output!r}")
        num_labels = int(model.config.num_labels)
        if output == "neutrality" and num_labels != 2:
            raise ValueError(f"output='neutrality' needs a binary classifier; this one has {num_labels} labels")
        self.label = self._label_index(model, label, num_labels)
        self.model, self.tokenizer = model, tokenizer
        self.output, self.include_prompt = output, include_prompt
        self.batch_size, self.max_length = batch_size, max_length
        self.model.eval()
        super().__init__(name or f"classifier_{output}" + ("" if output == "neutrality" else f"_{label}"))

    @classmethod
    def from_saved(cls, directory, *, device=None, **kwargs):
        """The reward on a classifier written by `rlxf.classifier.save_classifier` (loaded once, here)."""
        model, tokenizer = load_saved_classifier(directory, device=device)
        return cls(model, tokenizer, **kwargs)

    @staticmethod
    def _label_index(model, label: int | str, num_labels: int) -> int:
        if isinstance(label, str):
            label2id = {str(k): int(v) for k, v in (getattr(model.config, "label2id", None) or {}).items()}
            if label not in label2id:
                raise ValueError(f"label {label!r} is not one of the model's labels {sorted(label2id)}")
            return label2id[label]
        if not isinstance(label, (int, np.integer)) or not 0 <= label < num_labels:
            raise ValueError(f"label must be a class index in 0..{num_labels - 1} or a label name, got {label!r}")
        return int(label)

    def texts(self, prompts: list[str], completions: list[str], **kwargs) -> list[str]:
        """The texts the classifier reads."""
        if self.include_prompt:
            return [p + c for p, c in zip(prompts, completions, strict=True)]
        return list(completions)

    def logits(self, prompts: Sequence, completions: Sequence, **kwargs) -> np.ndarray:
        """All classes' logits, shape (n, num_labels)."""
        prompts, completions = check_batch(prompts, completions)
        texts = self.texts(prompts, completions, **kwargs)
        return predict_logits(self.model, self.tokenizer, texts, batch_size=self.batch_size, max_length=self.max_length)

    def probabilities(self, prompts: Sequence, completions: Sequence, **kwargs) -> np.ndarray:
        """All classes' probabilities, shape (n, num_labels): e.g. columns p_dem, p_rep of the party classifier."""
        logits = self.logits(prompts, completions, **kwargs)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def score(self, prompts: list[str], completions: list[str], **kwargs) -> np.ndarray:
        if self.output == "logit":
            return self.logits(prompts, completions, **kwargs)[:, self.label]
        proba = self.probabilities(prompts, completions, **kwargs)
        if self.output == "neutrality":
            return 1.0 - np.abs(proba[:, 0] - proba[:, 1])
        return proba[:, self.label]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.__name__!r}, model={type(self.model).__name__}, "
            f"label={self.label}, output={self.output!r})"
        )


class ExperienceReward(ClassifierReward):
    """P(MET | country, arrangement type, classification, proposed condition) from a trained MONA classifier.

    The completion is the proposed condition; the rest comes per prompt, either from keyword lists `country`,
    `arr_type`, `econ_class` (GRPO passes extra dataset columns this way) or, when those are absent, from the
    `metadata` mapping prompt -> {"country": ..., "arr_type": ..., "econ_class": ...} given at construction.
    The classifier reads `template` filled in (default: the data's `MONA_TEXT_TEMPLATE`); the completion is
    stripped of surrounding whitespace, as the data's conditions are.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        met_label: int | str = 1,
        metadata: Mapping[str, Mapping[str, str]] | None = None,
        template: str = MONA_TEXT_TEMPLATE,
        batch_size: int = 32,
        max_length: int = 256,
        name: str = "experience_p_met",
    ):
        for key in (*MONA_METADATA_FIELDS, "condition"):
            if "{" + key + "}" not in template:
                raise ValueError(f"template must contain the field {{{key}}}, got {template!r}")
        self.template = template
        self.metadata = dict(metadata) if metadata is not None else None
        super().__init__(
            model, tokenizer, label=met_label, output="probability", batch_size=batch_size, max_length=max_length,
            name=name,
        )

    def _fields(self, prompts: list[str], kwargs: dict) -> list[dict[str, str]]:
        given = [key for key in MONA_METADATA_FIELDS if kwargs.get(key) is not None]
        if given:
            missing = [key for key in MONA_METADATA_FIELDS if key not in given]
            if missing:
                raise ValueError(f"ExperienceReward got metadata keyword(s) {given} but not {missing}: give all three")
            rows = []
            for key in MONA_METADATA_FIELDS:
                values = kwargs[key]
                if isinstance(values, str) or len(values) != len(prompts):
                    raise ValueError(f"keyword {key!r} must be a list with one entry per prompt ({len(prompts)})")
            for index in range(len(prompts)):
                row = {key: kwargs[key][index] for key in MONA_METADATA_FIELDS}
                for key, value in row.items():
                    if not isinstance(value, str):
                        raise TypeError(f"{key}[{index}] must be a str, got {type(value).__name__}")
                rows.append(row)
            return rows
        if self.metadata is None:
            raise ValueError(
                "ExperienceReward needs country/arr_type/econ_class per prompt: pass them as keyword lists "
                "or give a prompt -> metadata mapping at construction"
            )
        rows = []
        for index, prompt in enumerate(prompts):
            row = self.metadata.get(prompt)
            if row is None:
                raise ValueError(f"prompts[{index}] ({prompt[:60]!r}...) is not in the metadata mapping")
            missing = [key for key in MONA_METADATA_FIELDS if not isinstance(row.get(key), str)]
            if missing:
                raise ValueError(f"metadata for prompts[{index}] lacks string field(s) {missing}")
            rows.append(row)
        return rows

    def texts(self, prompts: list[str], completions: list[str], **kwargs) -> list[str]:
        """The classifier inputs: the template filled with each prompt's metadata and the completion."""
        rows = self._fields(prompts, kwargs)
        return [
            model_text(row["country"], row["arr_type"], row["econ_class"], completion.strip(), template=self.template)
            for row, completion in zip(rows, completions, strict=True)
        ]


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
        parts = ", ".join(f"{getattr(r, '__name__', '?')}*{w:g}" for r, w in zip(self.rewards, self.weights, strict=True))
        return f"CombinedReward(name={self.__name__!r}, {parts})"
