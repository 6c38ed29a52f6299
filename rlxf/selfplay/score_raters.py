"""Raters that compute the agreement rating (1-100) from a score instead of asking the rating bot for a number.

At 135M parameters the generated rating of `rlxf.selfplay.generated_rater.GeneratedRater` carries no signal (about
10-15 whatever the text). Two alternatives with the same interface (`rate(text, adapter) -> Rating`, `stats`,
`reset_stats`, `restore_stats`, `normalise`, `prompt`), so `SelfPlayEnv`, `TwoBotDebate` and `SelfPlayTrainer`
take either:

  LikelihoodRatioRater  s = mean per-token log pi_rater(text) - log pi_reference(text), the reference being the other
                        bot's adapter ("other") or the average of both bots' token probabilities ("mix");
                        rating = 100 * sigmoid((s - centre) / scale), with centre and scale fitted on real tweets
  ClassifierRater       rating = 100 * P(the rating bot's party | text) from a party classifier (notebook 02/03)

Both clamp to 1..100 and count their ratings under one path name ("likelihood", "classifier") in `stats`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from rlxf.lm.generation import encode_text
from rlxf.lm.logprobs import token_logprobs
from rlxf.lm.precision import Precision
from rlxf.selfplay.generated_rater import GeneratedRater
from rlxf.selfplay.rating_parse import FALLBACK, PARSED, RATING_MAX, RATING_MIN, Rating, clamp_rating

LIKELIHOOD, CLASSIFIER = "likelihood", "classifier"
REFERENCES = ("other", "mix")


def sigmoid_rating(score: float, centre: float, scale: float) -> float:
    """100 * sigmoid((score - centre) / scale), clamped to 1..100: 50 at the centre, rising with the score."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale}")
    z = (float(score) - float(centre)) / scale
    # The two forms of the sigmoid keep exp() from overflowing far from the centre.
    value = 100.0 / (1.0 + math.exp(-z)) if z >= 0 else 100.0 * math.exp(z) / (1.0 + math.exp(z))
    return clamp_rating(value)


def _check_text(text) -> str:
    if not isinstance(text, str):
        raise ValueError(f"the text to rate must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"the text to rate is empty ({text!r}): there is nothing to score")
    return text


class ScoreRater:
    """Base of the raters that compute a rating (no reply is generated): one path name, counted in `stats`.

    `empty_rating`: the rating of an empty (or all-whitespace) text, which has nothing to score, e.g. `RATING_MIN`
    for a bot's empty reply during self-play; None: rating an empty text is a ValueError.
    """

    path = "score"

    def __init__(self, adapters: Sequence[str], *, empty_rating: float | None = None):
        if empty_rating is not None and not (isinstance(empty_rating, (int, float))
                                             and RATING_MIN <= empty_rating <= RATING_MAX):
            raise ValueError(f"empty_rating must be None or a number in [1, 100], got {empty_rating!r}")
        self.empty_rating = None if empty_rating is None else float(empty_rating)
        adapters = list(adapters)
        if len(adapters) != 2 or adapters[0] == adapters[1] or not all(isinstance(a, str) and a for a in adapters):
            raise ValueError(f"adapters must be the two bots' different adapter names, got {adapters!r}")
        self.adapters = adapters
        self.reset_stats()

    def _check_adapter(self, adapter) -> str:
        if adapter not in self.adapters:
            raise ValueError(f"adapter {adapter!r} is not one of this rater's bots {self.adapters}: name who rates")
        return adapter

    def other(self, adapter: str) -> str:
        """The other bot's adapter."""
        return self.adapters[1 - self.adapters.index(self._check_adapter(adapter))]

    def ratings(self, texts: Sequence[str], adapter: str) -> list[float]:
        """The ratings (1-100) of `texts` by `adapter`, in one batch; not counted in `stats`."""
        raise NotImplementedError(f"{type(self).__name__} must implement ratings()")

    def rate(self, text: str, adapter: str | None = None) -> Rating:
        """The rating of `text` by the bot `adapter` (its reply field is empty: nothing is generated)."""
        self._check_adapter(adapter)
        if self.empty_rating is not None and isinstance(text, str) and not text.strip():
            value = self.empty_rating
        else:
            value = self.ratings([_check_text(text)], adapter)[0]
        self._count += 1
        return Rating(value, self.path, "")

    def prompt(self, text: str) -> str:
        """What is scored: the text itself (no rating question is asked)."""
        return text

    @property
    def stats(self) -> dict:
        """Counts by path as `GeneratedRater.stats` has them (parsed, fallback 0) and under `path`; parse_rate NaN."""
        return {PARSED: 0, FALLBACK: 0, self.path: self._count, "total": self._count, "parse_rate": float("nan")}

    def reset_stats(self) -> None:
        """Start counting from zero."""
        self._count = 0

    def restore_stats(self, counts: dict) -> None:
        """Continue counting from saved counts (`{path: n}`, as in `stats`): a resumed run."""
        if self.path not in counts:
            raise ValueError(f"the saved rater counts {counts} have no {self.path!r} count: they were written by "
                             f"another kind of rater than {type(self).__name__}")
        self._count = int(counts[self.path])

    normalise = staticmethod(GeneratedRater.normalise)


class LikelihoodRatioRater(ScoreRater):
    """Rates a text by how much more likely the rating bot finds it than the other bot (or the mix of both).

    s(text) = mean over the text's tokens of log pi_rater(t) - log pi_reference(t), each token given the tokens before
    it; the text follows one start token (BOS, else EOS: the document separator), without a chat template, as the
    party adapters were trained on plain tweets. `reference="other"`: the other bot's adapter; `"mix"`: the log of
    the average of both bots' token probabilities (s is then >= -log 2 ... <= log 2 per token). The rating is
    `sigmoid_rating(s, centre[rater], scale[rater])`: set centre and scale with `fit` on real texts of both parties,
    or pass them as {adapter: value}. Forwards run batched under the compute precision `dtype` (rlxf.lm.precision),
    without
    gradients, `max_tokens` tokens of each text at most.
    """

    path = LIKELIHOOD

    def __init__(self, model, tokenizer, adapters: Sequence[str] = ("democrat", "republican"), *,
                 reference: str = "other", centre: Mapping[str, float] | None = None,
                 scale: Mapping[str, float] | None = None, max_tokens: int = 96, batch_size: int = 16,
                 dtype: str | Precision = "auto", empty_rating: float | None = None):
        super().__init__(adapters, empty_rating=empty_rating)
        if reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
        peft_config = getattr(model, "peft_config", None)
        missing = [a for a in self.adapters if not isinstance(peft_config, dict) or a not in peft_config]
        if missing:
            known = sorted(peft_config) if isinstance(peft_config, dict) else "none (not a PeftModel)"
            raise ValueError(f"the model lacks the adapter(s) {missing}; adapters on it: {known}")
        for name, value in (("max_tokens", max_tokens), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"LikelihoodRatioRater {name} must be an int >= 1, got {value!r}")
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise ValueError("the tokenizer has neither a BOS nor an EOS token to start the scored text with")
        self.model, self.tokenizer, self.reference = model, tokenizer, reference
        self.max_tokens, self.batch_size, self.dtype = max_tokens, batch_size, dtype
        self._start = torch.tensor([start], dtype=torch.long)
        self.centre = self.scale = None
        if (centre is None) != (scale is None):
            raise ValueError("give both centre and scale, or neither (then call fit)")
        if centre is not None:
            self._set_calibration(centre, scale)

    def _set_calibration(self, centre: Mapping[str, float], scale: Mapping[str, float]) -> None:
        for what, values in (("centre", centre), ("scale", scale)):
            if not isinstance(values, Mapping) or set(values) != set(self.adapters):
                raise ValueError(f"{what} must map each of {self.adapters} to a number, got {values!r}")
        for adapter in self.adapters:
            if not math.isfinite(float(centre[adapter])):
                raise ValueError(f"centre[{adapter!r}] must be finite, got {centre[adapter]}")
            if not (math.isfinite(float(scale[adapter])) and float(scale[adapter]) > 0):
                raise ValueError(f"scale[{adapter!r}] must be a finite number > 0, got {scale[adapter]}: the scores "
                                 "of the fitting texts do not vary")
        self.centre = {a: float(centre[a]) for a in self.adapters}
        self.scale = {a: float(scale[a]) for a in self.adapters}

    def logprobs(self, texts: Sequence[str]) -> dict[str, list[np.ndarray]]:
        """Per-token log-probabilities of each text under each bot's adapter (what `scores` averages)."""
        texts = [_check_text(t) for t in texts]
        responses = [encode_text(self.tokenizer, t, special_tokens=False)[: self.max_tokens] for t in texts]
        empty = [t for t, r in zip(texts, responses, strict=True) if len(r) == 0]
        if empty:
            raise ValueError(f"the text {empty[0]!r} tokenizes to no tokens: there is nothing to score")
        return {adapter: token_logprobs(self.model, self.tokenizer, [self._start] * len(texts), responses,
                                        adapter=adapter, batch_size=self.batch_size, dtype=self.dtype)
                for adapter in self.adapters}

    def scores(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The log-likelihood ratio s of each text for each rating bot -> {adapter: array [len(texts)]}."""
        logp = self.logprobs(texts)
        out = {}
        for adapter in self.adapters:
            own, other = logp[adapter], logp[self.other(adapter)]
            if self.reference == "other":
                rows = [a - b for a, b in zip(own, other, strict=True)]
            else:  # log of the mean of both bots' probabilities, per token
                rows = [a - (np.logaddexp(a, b) - math.log(2.0)) for a, b in zip(own, other, strict=True)]
            out[adapter] = np.array([float(row.mean()) for row in rows])
        return out

    def fit(self, texts_by_party: Mapping[str, Sequence[str]]) -> dict:
        """Set centre and scale per rating bot from real texts of both parties -> {adapter: {centre, scale, ...}}.

        `texts_by_party` maps each bot's adapter name to texts of ITS party. For the rating bot r, with the scores
        s_r of its own party's texts and of the other party's: centre = the midpoint of the two means (a text
        halfway between a typical own-party and a typical other-party text is rated 50: indifferent), scale = their
        pooled standard deviation (within-party spread; one scale is then one typical within-party difference).
        """
        if not isinstance(texts_by_party, Mapping) or set(texts_by_party) != set(self.adapters):
            got = sorted(texts_by_party) if isinstance(texts_by_party, Mapping) else type(texts_by_party).__name__
            raise ValueError(f"fit needs texts of each bot's party keyed by {self.adapters}, got {got}")
        for adapter, texts in texts_by_party.items():
            if isinstance(texts, str) or len(texts) < 2:
                raise ValueError(f"fit needs at least 2 texts of {adapter!r}'s party, got {texts!r:.80}")
        parties = list(self.adapters)
        all_texts = [t for party in parties for t in texts_by_party[party]]
        scores = self.scores(all_texts)
        n_first = len(texts_by_party[parties[0]])
        centre, scale, report = {}, {}, {}
        for adapter in self.adapters:
            by_party = {parties[0]: scores[adapter][:n_first], parties[1]: scores[adapter][n_first:]}
            own, other = by_party[adapter], by_party[self.other(adapter)]
            pooled = ((len(own) - 1) * own.var(ddof=1) + (len(other) - 1) * other.var(ddof=1)) / (
                len(own) + len(other) - 2)
            centre[adapter], scale[adapter] = (own.mean() + other.mean()) / 2, math.sqrt(pooled)
            report[adapter] = {"centre": float(centre[adapter]), "scale": float(scale[adapter]),
                               "mean_own": float(own.mean()), "mean_other": float(other.mean()),
                               "n_own": len(own), "n_other": len(other)}
        self._set_calibration(centre, scale)
        return report

    def _check_fitted(self) -> None:
        if self.centre is None:
            raise ValueError("this LikelihoodRatioRater has no centre and scale: call fit(texts_by_party) on real "
                             "texts of both parties first (or pass centre= and scale=)")

    def ratings(self, texts: Sequence[str], adapter: str) -> list[float]:
        """The ratings (1-100) of `texts` by `adapter`: `sigmoid_rating` of their scores; not counted in `stats`."""
        self._check_adapter(adapter)
        self._check_fitted()
        return [sigmoid_rating(s, self.centre[adapter], self.scale[adapter]) for s in self.scores(texts)[adapter]]

    def identity(self) -> dict:
        """What makes this rater's ratings what they are (for a run's fingerprint)."""
        self._check_fitted()
        return {"kind": LIKELIHOOD, "reference": self.reference, "max_tokens": self.max_tokens,
                "centre": self.centre, "scale": self.scale, "empty_rating": self.empty_rating}

    def __repr__(self) -> str:
        fitted = "unfitted" if self.centre is None else f"centre={self.centre}, scale={self.scale}"
        return f"LikelihoodRatioRater(reference={self.reference!r}, {fitted}, ratings={self._count})"


class ClassifierRater(ScoreRater):
    """Rates a text 100 * P(the rating bot's party | text) under a party classifier (e.g. notebook 02's).

    `labels` maps each bot's adapter name to its party's class index or label name in the classifier.
    """

    path = CLASSIFIER

    def __init__(self, model, tokenizer, labels: Mapping[str, int | str], *, batch_size: int = 32,
                 max_length: int = 96, empty_rating: float | None = None, dtype: str | Precision = "auto"):
        from rlxf.rewards.classifiers import ClassifierReward

        if not isinstance(labels, Mapping):
            raise ValueError(f"labels must map each bot's adapter name to its party's label, got {labels!r}")
        super().__init__(list(labels), empty_rating=empty_rating)
        self.labels = dict(labels)
        self.rewards = {adapter: ClassifierReward(model, tokenizer, label=label, batch_size=batch_size,
                                                  max_length=max_length, name=f"p_{adapter}", dtype=dtype)
                        for adapter, label in self.labels.items()}

    def probabilities(self, texts: Sequence[str], adapter: str) -> np.ndarray:
        """P(`adapter`'s party | text) for each text."""
        texts = [_check_text(t) for t in texts]
        return np.asarray(self.rewards[self._check_adapter(adapter)]([""] * len(texts), texts), dtype=float)

    def ratings(self, texts: Sequence[str], adapter: str) -> list[float]:
        """The ratings (1-100) of `texts` by `adapter`: 100 * P(its party), clamped; not counted in `stats`."""
        return [clamp_rating(100.0 * p) for p in self.probabilities(texts, adapter)]

    def identity(self) -> dict:
        """What makes this rater's ratings what they are (for a run's fingerprint)."""
        return {"kind": CLASSIFIER, "labels": {a: str(label) for a, label in self.labels.items()},
                "empty_rating": self.empty_rating}

    def __repr__(self) -> str:
        return f"ClassifierRater(labels={self.labels}, ratings={self._count})"


# ------------------------------------------------------------------------------------------------ choosing a rater

RATER_CHOICES = ("generated", "likelihood", "classifier", "auto")
SIGNAL_AUC = 0.7
"""the AUC (own party's held-out tweets rated above the other's) a rater needs for both bots to be chosen by "auto" """
LARGE_BASE_PARAMETERS = 1_000_000_000
"""from this base-model size on, "auto" keeps the generated rating (large chat models can answer the question)"""


def rate_all(rater: GeneratedRater | ScoreRater, texts: Sequence[str], adapter: str | None) -> list[float]:
    """The ratings (1-100) of `texts` by `adapter`: batched for a `ScoreRater`, one reply per text for a
    `GeneratedRater` (whose `stats` then count the parse paths)."""
    if isinstance(rater, ScoreRater):
        return rater.ratings(list(texts), adapter)
    if isinstance(rater, GeneratedRater):
        return [rater.rate(text, adapter=adapter).value for text in texts]
    raise ValueError(f"rater must be a GeneratedRater or a ScoreRater, got {type(rater).__name__}")


def choose_rater(requested: str, aucs: Mapping[str, Mapping[str, float]], *, endpoint: bool = False,
                 base_parameters: int = 0) -> tuple[str, str]:
    """The rater self-play uses and why -> (name, reason).

    `requested`: one of `RATER_CHOICES`; `aucs`: {rater name: {bot: AUC}} of the raters that were measured (a rater
    asked for by name must be among them). "auto" keeps "generated" with a rating endpoint or a base model of at
    least `LARGE_BASE_PARAMETERS`; else it takes the rater whose smaller AUC over the two bots is largest, if that
    is at least `SIGNAL_AUC`, and "generated" when none reaches it.
    """
    if requested not in RATER_CHOICES:
        raise ValueError(f"rater must be one of {RATER_CHOICES}, got {requested!r}")
    if requested != "auto":
        if requested not in aucs:
            raise ValueError(f"rater={requested!r} was asked for but is not available here (measured: {sorted(aucs)})"
                             + ("; the classifier needs notebook 02's party classifier" if requested == CLASSIFIER
                                else ""))
        return requested, "asked for"
    if endpoint:
        return "generated", "auto: a rating endpoint is set"
    if base_parameters >= LARGE_BASE_PARAMETERS:
        return "generated", f"auto: the base model has {base_parameters / 1e9:.1f}B parameters (>= 1B)"
    worst = {name: min(by_bot.values()) for name, by_bot in aucs.items() if by_bot}
    if not worst:
        return "generated", "auto: no rater was measured"
    best = max(worst, key=worst.get)
    if worst[best] >= SIGNAL_AUC:
        return best, f"auto: AUC >= {SIGNAL_AUC} for both bots (lowest {worst[best]:.2f})"
    return "generated", f"auto: no rater reaches AUC {SIGNAL_AUC} for both bots (best lowest AUC {worst[best]:.2f})"
