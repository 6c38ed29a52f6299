"""Agreement ratings (1-100) from small chat models: parse the reply, else read the number off the logprobs.

Small models answer "How much do you agree ... 1-100?" in many shapes ("70", "I'd say 70/100", "seventy",
"7/10", "Rating: 85."), and sometimes with no number at all. `parse_rating` reads the shapes it can; when it
finds nothing, `rating_from_logprobs` takes the expected rating under the rater's next-token distribution over
the numbers 1..100. `GeneratedRater` does both, clamps to 1-100, and counts which path each rating took.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from rlxf.lm.adapters import using_adapter
from rlxf.lm.generation import chat_prompt, generate
from rlxf.lm.logprobs import log_distribution
from rlxf.lm.precision import Precision, model_device, precision
from rlxf.selfplay.rating_parse import FALLBACK, PARSED, RATING_MAX, RATING_MIN, Rating, clamp_rating, parse_rating

RATING_TEMPLATE = (
    'How much do you agree with this text on a scale of 1-100?\n\n"{text}"\n\n'
    "Answer with a number from 1 (not at all) to 100 (completely). Answer with a number."
)
RATER_SYSTEM_PROMPT = "You rate texts. You answer with one number from 1 to 100."


# ------------------------------------------------------------------------------------------------ logprob fallback


def _add_special_tokens(tokenizer, text: str) -> bool:
    """Add special tokens unless the text already starts with BOS (a chat template writes it itself)."""
    bos = getattr(tokenizer, "bos_token", None)
    return not (bos and text.startswith(bos))


def number_token_ids(tokenizer, text: str) -> tuple[list[int], list[list[int]]]:
    """The prompt's token ids and, for each number 1..100, the ids that continue the prompt with it.

    The numbers are tokenized in context (prompt + number) so that a tokenizer that merges across the boundary is
    scored on the tokens it would really emit; where the prompt's own tokens change, the number alone is used.
    """
    special = _add_special_tokens(tokenizer, text)
    prompt_ids = tokenizer(text, add_special_tokens=special)["input_ids"]
    joined = tokenizer([text + str(n) for n in range(1, 101)], add_special_tokens=special)["input_ids"]
    numbers = []
    for n, ids in zip(range(1, 101), joined, strict=True):
        if ids[: len(prompt_ids)] == prompt_ids and len(ids) > len(prompt_ids):
            numbers.append(ids[len(prompt_ids):])
        else:
            numbers.append(tokenizer(str(n), add_special_tokens=False)["input_ids"])
    return prompt_ids, numbers


def digit_continuation_mask(tokenizer, size: int) -> torch.Tensor:
    """True for the token ids whose text starts with a digit: tokens that would make a number longer."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(min(size, len(tokenizer)))))
    mask = torch.zeros(size, dtype=torch.bool)
    mask[: len(tokens)] = torch.tensor([bool(t) and t[0].isdigit() for t in tokens])
    return mask


def _continuation_logprobs(model, prompt_ids: list[int], numbers: list[list[int]], pad_id: int,
                           use_cache: bool, batch_size: int) -> torch.Tensor:
    """Log-softmax after the prompt and after each prefix of each number -> [100, max_len + 1, vocab].

    The whole next-token distribution (`log_distribution`, rlxf.lm.logprobs' precision rule): P(a digit follows)
    sums over the vocabulary.
    """
    device = model_device(model)
    length = max(len(ids) for ids in numbers)
    continuation = torch.full((len(numbers), length), pad_id, dtype=torch.long)
    continuation_mask = torch.zeros_like(continuation)
    for i, ids in enumerate(numbers):
        continuation[i, : len(ids)], continuation_mask[i, : len(ids)] = torch.tensor(ids), 1
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    out = model(input_ids=prompt, use_cache=True) if use_cache else None
    cache = getattr(out, "past_key_values", None)
    if cache is not None and hasattr(cache, "batch_repeat_interleave"):
        # One forward of the prompt, its KV cache copied to all 100 rows, then only the number tokens.
        cache.batch_repeat_interleave(len(numbers))
        mask = torch.cat([torch.ones(len(numbers), len(prompt_ids), dtype=torch.long), continuation_mask], dim=1)
        rest = model(input_ids=continuation.to(device), attention_mask=mask.to(device), past_key_values=cache,
                     use_cache=True).logits
        first = out.logits[:, -1:].expand(len(numbers), 1, -1)
        return log_distribution(torch.cat([first, rest], dim=1))
    # Without a (repeatable) cache, every number as a full sequence (right padding keeps the prompt's positions).
    chunks = []
    for start in range(0, len(numbers), batch_size):
        rows = continuation[start: start + batch_size]
        ids = torch.cat([prompt.cpu().expand(len(rows), -1), rows], dim=1)
        mask = torch.cat([torch.ones(len(rows), len(prompt_ids), dtype=torch.long),
                          continuation_mask[start: start + batch_size]], dim=1)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        chunks.append(log_distribution(logits[:, len(prompt_ids) - 1:]))
    return torch.cat(chunks)


@torch.no_grad()
def number_distribution(model, tokenizer, prompt: str, *, chat: bool = True, use_cache: bool = True,
                        batch_size: int = 25, dtype: str | Precision = "auto") -> torch.Tensor:
    """P(the reply starts with the number n), n = 1..100, renormalised over the 100 numbers -> tensor [100].

    Each number is scored on its full token sequence (tokenizers that split "100" into "1", "0", "0" included):
    log P(n) = sum of the log-probs of its tokens + log P(the next token does not continue it with a digit), so
    that "7" does not also collect the mass of "70".."79". `chat=True` wraps the prompt with `chat_prompt` (as
    `rlxf.lm.generation.generate` does). `use_cache=False` scores full sequences without the KV cache (slower;
    `batch_size` rows at a time): a reference, and what happens anyway for a model that returns no cache.
    `dtype`: the compute precision of the forwards (rlxf.lm.precision); log-probabilities are taken in fp32.
    """
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
    text = chat_prompt(tokenizer, prompt) if chat else prompt
    prompt_ids, numbers = number_token_ids(tokenizer, text)
    if not prompt_ids:
        raise ValueError("the prompt tokenizes to no tokens: the logprob fallback needs a non-empty prompt")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    try:
        with precision(dtype, model_device(model)).autocast():
            logprobs = _continuation_logprobs(model, prompt_ids, numbers, pad_id or 0, use_cache, batch_size).cpu()
    finally:
        model.train(was_training)
    digit = digit_continuation_mask(tokenizer, logprobs.shape[-1])
    scores = torch.empty(len(numbers))
    for i, ids in enumerate(numbers):
        token_logprob = sum(float(logprobs[i, k, token]) for k, token in enumerate(ids))
        p_longer = float(logprobs[i, len(ids)].exp()[digit].sum())
        scores[i] = token_logprob + math.log(max(1.0 - p_longer, 1e-30))
    return torch.softmax(scores, dim=0)


def rating_from_logprobs(model, tokenizer, prompt: str, *, chat: bool = True, use_cache: bool = True,
                         dtype: str | Precision = "auto") -> float:
    """The expected rating sum(n * P(n)) under `number_distribution`: the fallback when a reply has no number."""
    probabilities = number_distribution(model, tokenizer, prompt, chat=chat, use_cache=use_cache, dtype=dtype)
    return clamp_rating(float((probabilities * torch.arange(1, 101, dtype=probabilities.dtype)).sum()))


# ------------------------------------------------------------------------------------------------ the rater


class GeneratedRater:
    """Asks a rater how much it agrees with a text (1-100): generate, parse, fall back to logprobs, clamp.

    `reply_fn(prompt, adapter) -> str` writes the rater's reply to the rating prompt; `fallback_fn(prompt,
    adapter) -> float` gives a rating when the reply holds no number (None: such a reply is a ValueError).
    `adapter` names who rates (a LoRA adapter of a shared base model) and is passed through. `GeneratedRater.from_model`
    builds both from a model; plain callables make a deterministic rater for tests.
    """

    def __init__(self, reply_fn: Callable[[str, str | None], str],
                 fallback_fn: Callable[[str, str | None], float] | None = None, *, template: str = RATING_TEMPLATE):
        if "{text}" not in template:
            raise ValueError("template must contain the placeholder {text}")
        self.reply_fn, self.fallback_fn, self.template = reply_fn, fallback_fn, template
        self.reset_stats()

    @classmethod
    def from_model(cls, model, tokenizer, *, max_new_tokens: int = 12, template: str = RATING_TEMPLATE,
                   use_cache: bool = True, dtype: str | Precision = "auto") -> GeneratedRater:
        """A rater that answers greedily with `model` (under the rating bot's adapter) and falls back to logprobs;
        both in the compute precision `dtype` (rlxf.lm.precision)."""

        def reply_fn(prompt: str, adapter: str | None) -> str:
            with using_adapter(model, adapter):
                return generate(model, tokenizer, [prompt], max_new_tokens=max_new_tokens, do_sample=False,
                                dtype=dtype)[0]

        def fallback_fn(prompt: str, adapter: str | None) -> float:
            with using_adapter(model, adapter):
                return rating_from_logprobs(model, tokenizer, prompt, use_cache=use_cache, dtype=dtype)

        return cls(reply_fn, fallback_fn, template=template)

    @classmethod
    def from_endpoint(cls, url: str, model_name: str, *, max_tokens: int = 12, template: str = RATING_TEMPLATE,
                      **judge_kwargs) -> GeneratedRater:
        """A rater behind an OpenAI-compatible endpoint, through `rlxf.rewards.judge.HTTPJudge`'s hardened client
        (key from `$RLXF_JUDGE_API_KEY`, https:// or localhost only, no redirects, wall-clock deadlines).

        One rater for both bots (the adapter that would rate is ignored). There is no logprob fallback (an endpoint's
        chat API gives no next-token distribution over 1..100 here): a reply without a number, or a call that still
        fails after the client's retries, is an error naming the reply or the reason.
        """
        from rlxf.rewards.judge import HTTPJudge

        if not model_name:
            raise ValueError(f"rater_url is {url!r} but rater_endpoint_model is empty: name the model it serves")
        client = HTTPJudge(url, model_name, max_tokens=max_tokens, system_prompt=RATER_SYSTEM_PROMPT, **judge_kwargs)

        def reply_fn(prompt: str, adapter: str | None) -> str:
            reply = client.generate([prompt])[0]
            if reply.text is None:
                raise RuntimeError(f"the rater endpoint failed ({reply.error}): {reply.detail}")
            return reply.text

        rater = cls(reply_fn, None, template=template)
        rater.client = client
        return rater

    def prompt(self, text: str) -> str:
        """The rating question about `text`."""
        return self.template.format(text=text)

    def rate(self, text: str, adapter: str | None = None) -> Rating:
        """The rating of `text` by the rater (`adapter`: who rates), parsed from its reply or else from logprobs."""
        if not isinstance(text, str):
            raise ValueError(f"the text to rate must be a str, got {type(text).__name__}")
        prompt = self.prompt(text)
        reply = self.reply_fn(prompt, adapter)
        if not isinstance(reply, str):
            raise ValueError(f"the rater's reply_fn returned {type(reply).__name__}, expected str")
        value = parse_rating(reply)
        if value is not None:
            self._counts[PARSED] += 1
            return Rating(value, PARSED, reply)
        if self.fallback_fn is None:
            raise ValueError(f"the rater's reply {reply!r} holds no rating and this GeneratedRater has no logprob "
                             "fallback")
        value = float(self.fallback_fn(prompt, adapter))
        if not math.isfinite(value):
            raise ValueError(f"the logprob fallback gave a non-finite rating {value} for the reply {reply!r}")
        self._counts[FALLBACK] += 1
        return Rating(clamp_rating(value), FALLBACK, reply)

    @property
    def stats(self) -> dict:
        """Counts of ratings by path and the parse rate (parsed / total; NaN before the first rating)."""
        total = self._counts[PARSED] + self._counts[FALLBACK]
        return {PARSED: self._counts[PARSED], FALLBACK: self._counts[FALLBACK], "total": total,
                "parse_rate": self._counts[PARSED] / total if total else float("nan")}

    def reset_stats(self) -> None:
        """Start counting from zero."""
        self._counts = {PARSED: 0, FALLBACK: 0}

    def restore_stats(self, counts: dict) -> None:
        """Continue counting from saved counts (`{PARSED: n, FALLBACK: m}`, as in `stats`): a resumed run."""
        self._counts = {PARSED: int(counts[PARSED]), FALLBACK: int(counts[FALLBACK])}

    @staticmethod
    def normalise(rating: float) -> float:
        """A rating 1..100 as a PPO reward in [-1, 1]: (r - 50.5) / 49.5, so 1 -> -1, 100 -> 1, 50.5 (neutral) -> 0."""
        rating = float(rating)
        if not RATING_MIN <= rating <= RATING_MAX:
            raise ValueError(f"a rating must be in [1, 100] to normalise, got {rating}")
        return (rating - 50.5) / 49.5

    def __repr__(self) -> str:
        via = f"{self.client!r}, " if getattr(self, "client", None) is not None else ""
        return f"GeneratedRater({via}parsed={self._counts[PARSED]}, fallback={self._counts[FALLBACK]})"
