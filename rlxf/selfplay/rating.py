"""Agreement ratings (1-100) from small chat models: parse the reply, else read the number off the logprobs.

Small models answer "How much do you agree ... 1-100?" in many shapes ("70", "I'd say 70/100", "seventy",
"7/10", "Rating: 85."), and sometimes with no number at all. `parse_rating` reads the shapes it can; when it
finds nothing, `rating_from_logprobs` takes the expected rating under the rater's next-token distribution over
the numbers 1..100. `Rater` does both, clamps to 1-100, and counts which path each rating took.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rlxf.adapters import using_adapter
from rlxf.generation import chat_prompt, generate

RATING_TEMPLATE = (
    'How much do you agree with this text on a scale of 1-100?\n\n"{text}"\n\n'
    "Answer with a number from 1 (not at all) to 100 (completely). Answer with a number."
)
RATING_MIN, RATING_MAX = 1.0, 100.0
PARSED, FALLBACK = "parsed", "fallback"

# ------------------------------------------------------------------------------------------------ parsing

_SMALL = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_WORD_VALUE = {w: i for i, w in enumerate(_SMALL)} | {w: 10 + i for i, w in enumerate(_TEENS)} | {
    w: 20 + 10 * i for i, w in enumerate(_TENS)}
_WORD_NUMBER = re.compile(
    r"\b(?:(?P<hundred>(?:(?:a|one)[\s-]+)?hundred)"
    rf"|(?P<tens>{'|'.join(_TENS)})(?:[\s-]+(?P<unit>{'|'.join(_SMALL[1:])}))?"
    rf"|(?P<teen>{'|'.join(_TEENS)})"
    rf"|(?P<small>{'|'.join(_SMALL)}))\b"
)
# A lone "one".."nine" is common in prose ("no one", "two sides"): it counts only after a rating cue,
# next to "out of"/"/", or as the whole reply.
_CUE_BEFORE = re.compile(
    r"(?:\bsay|\bgive[s]?(?:\s+(?:it|this|that))?|\brate(?:\s+(?:it|this|that))?|\brating(?:\s+is)?"
    r"|\bscore(?:\s+is)?|\bout\s+of|/|:)\s*(?:an?\s+)?$"
)
_CUE_AFTER = re.compile(r"^\s*(?:/|out\s+of\b)")

_N = r"\d+(?:\.\d+)?"
# The echo of the question's scale ("on a scale of 1-100", "(1 to 10)"): not an answer; remembered as the scale.
_SCALE_ECHO = re.compile(
    r"(?:(?:on\s+)?(?:a\s+)?scale\s+(?:of|from)\s+|\(\s*)?\b[01]\s*(?:-|–|—|to)\s*(?P<top>10|100)\b\s*\)?"
)
# The same echo cut off by the token budget ("... on a scale of 1-"): its "1" is not a rating either.
_TRUNCATED_ECHO = re.compile(r"(?:on\s+)?(?:a\s+)?scale\s+(?:of|from)\s+[01]\s*(?:(?:-|–|—|to)\s*\d{0,2})?\s*$")
# A reply that opens a numbered list ("1. 100", "1. The minimum wage ...") has an enumeration "1.", not a rating.
_LIST_MARKER = re.compile(r"^(?:\s*1[.)]\s+(?=\S))+")
# Leftmost match wins; at one position the alternatives are tried in this order.
_RATING = re.compile(
    rf"between\s+(?P<lo>{_N})\s*(?:and|to|-|–|—)\s*(?P<hi>{_N})"
    rf"|(?P<lo2>{_N})\s*(?:-|–|—|to)\s*(?P<hi2>{_N})"
    rf"|(?P<num>{_N})\s*(?:/|out\s+of)\s*(?P<den>{_N})"
    rf"|(?P<pct>{_N})\s*(?:%|percent\b)"
    rf"|(?P<neg>(?<![\w.])-)?(?P<plain>{_N})"
)


def clamp_rating(value: float) -> float:
    """A rating clamped to the scale 1..100."""
    return float(min(RATING_MAX, max(RATING_MIN, value)))


def _word_value(match: re.Match) -> int:
    if match["hundred"]:
        return 100
    if match["tens"]:
        return _WORD_VALUE[match["tens"]] + (_WORD_VALUE[match["unit"]] if match["unit"] else 0)
    return _WORD_VALUE[match["teen"] or match["small"]]


def _words_to_digits(text: str) -> str:
    """Number words up to one hundred written as digits (a lone small word only where it reads as a rating)."""
    whole = re.sub(r"[^\w\s-]", "", text).strip()
    pieces, last = [], 0
    for match in _WORD_NUMBER.finditer(text):
        if match["small"] and not (whole == match[0] or _CUE_BEFORE.search(text[: match.start()])
                                   or _CUE_AFTER.match(text[match.end():])):
            continue
        pieces += [text[last: match.start()], str(_word_value(match))]
        last = match.end()
    return "".join(pieces) + text[last:]


def parse_rating(text: str) -> float | None:
    """The rating (1-100) in a rater's reply, or None when it holds no number.

    Rules (the first rating-like expression from the left wins):
    - "70", "Rating: 85." -> 70, 85; decimals are kept ("72.5").
    - "70/100", "7/10", "3 out of 5" -> X / Y * 100 (70, 70, 60); a zero denominator is skipped.
    - "100%", "80 percent" -> the number.
    - a range, "between 40 and 60", "40-60", "40 to 60" -> its midpoint (50): the rater's central value.
    - number words up to one hundred ("seventy", "seventy-five", "a hundred"); a lone "one".."nine" only after
      a rating cue ("I'd say five", "rating: two"), next to "out of" or "/", or as the whole reply, because prose
      uses them ("no one agrees", "the two sides") and a false 1 or 2 would be a strong reward.
    - the question's scale echoed back ("on a scale of 1-100", "(1-10)") is not a rating; if the echoed scale is
      1-10, a plain number after it is scaled by 10 ("On a scale of 1-10: 7" -> 70); an echo cut off at the end
      of the reply ("I agree with the text on a scale of 1-") holds no rating.
    - a numbered list's opening "1. " / "1) " is an enumeration, not a rating ("1. 100" -> 100; "1. I agree." -> None,
      so the logprob fallback decides); a lone "1." stays 1.
    - out-of-range numbers are clamped: "150" -> 100, "0" -> 1, "-5" -> 1.
    """
    if not isinstance(text, str):
        raise ValueError(f"parse_rating expects the rater's reply as a str, got {type(text).__name__}")
    text = _LIST_MARKER.sub("", _words_to_digits(text.lower()))
    scale_top = 100.0
    for echo in _SCALE_ECHO.finditer(text):
        scale_top = float(echo["top"])
    text = _TRUNCATED_ECHO.sub(" ", _SCALE_ECHO.sub(" ", text))
    for match in _RATING.finditer(text):
        if match["lo"] is not None or match["lo2"] is not None:
            low, high = float(match["lo"] or match["lo2"]), float(match["hi"] or match["hi2"])
            return clamp_rating((low + high) / 2 * 100.0 / scale_top)
        if match["num"] is not None:
            denominator = float(match["den"])
            if denominator == 0:
                continue
            return clamp_rating(float(match["num"]) / denominator * 100.0)
        if match["pct"] is not None:
            return clamp_rating(float(match["pct"]))
        value = float(match["plain"]) * (-1.0 if match["neg"] else 1.0)
        return clamp_rating(value * 100.0 / scale_top)
    return None


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
    """Log-softmax after the prompt and after each prefix of each number -> [100, max_len + 1, vocab]."""
    device = next(model.parameters()).device
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
        return torch.log_softmax(torch.cat([first, rest], dim=1).float(), dim=-1)
    # Without a (repeatable) cache, every number as a full sequence (right padding keeps the prompt's positions).
    chunks = []
    for start in range(0, len(numbers), batch_size):
        rows = continuation[start: start + batch_size]
        ids = torch.cat([prompt.cpu().expand(len(rows), -1), rows], dim=1)
        mask = torch.cat([torch.ones(len(rows), len(prompt_ids), dtype=torch.long),
                          continuation_mask[start: start + batch_size]], dim=1)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        chunks.append(torch.log_softmax(logits[:, len(prompt_ids) - 1:].float(), dim=-1))
    return torch.cat(chunks)


@torch.no_grad()
def number_distribution(model, tokenizer, prompt: str, *, chat: bool = True, use_cache: bool = True,
                        batch_size: int = 25) -> torch.Tensor:
    """P(the reply starts with the number n), n = 1..100, renormalised over the 100 numbers -> tensor [100].

    Each number is scored on its full token sequence (tokenizers that split "100" into "1", "0", "0" included):
    log P(n) = sum of the log-probs of its tokens + log P(the next token does not continue it with a digit), so
    that "7" does not also collect the mass of "70".."79". `chat=True` wraps the prompt with `chat_prompt` (as
    `rlxf.generation.generate` does). `use_cache=False` scores full sequences without the KV cache (slower;
    `batch_size` rows at a time): a reference, and what happens anyway for a model that returns no cache.
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


def rating_from_logprobs(model, tokenizer, prompt: str, *, chat: bool = True, use_cache: bool = True) -> float:
    """The expected rating sum(n * P(n)) under `number_distribution`: the fallback when a reply has no number."""
    probabilities = number_distribution(model, tokenizer, prompt, chat=chat, use_cache=use_cache)
    return clamp_rating(float((probabilities * torch.arange(1, 101, dtype=probabilities.dtype)).sum()))


# ------------------------------------------------------------------------------------------------ the rater


@dataclass(frozen=True)
class Rating:
    """One rating: the value (1-100), the path it came from ("parsed" or "fallback") and the rater's reply."""

    value: float
    path: str
    reply: str


class Rater:
    """Asks a rater how much it agrees with a text (1-100): generate, parse, fall back to logprobs, clamp.

    `reply_fn(prompt, adapter) -> str` writes the rater's reply to the rating prompt; `fallback_fn(prompt,
    adapter) -> float` gives a rating when the reply holds no number (None: such a reply is a ValueError).
    `adapter` names who rates (a LoRA adapter of a shared base model) and is passed through. `Rater.from_model`
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
                   use_cache: bool = True) -> Rater:
        """A rater that answers greedily with `model` (under the rating bot's adapter) and falls back to logprobs."""

        def reply_fn(prompt: str, adapter: str | None) -> str:
            with using_adapter(model, adapter):
                return generate(model, tokenizer, [prompt], max_new_tokens=max_new_tokens, do_sample=False)[0]

        def fallback_fn(prompt: str, adapter: str | None) -> float:
            with using_adapter(model, adapter):
                return rating_from_logprobs(model, tokenizer, prompt, use_cache=use_cache)

        return cls(reply_fn, fallback_fn, template=template)

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
            raise ValueError(f"the rater's reply {reply!r} holds no rating and this Rater has no logprob fallback")
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
        return f"Rater(parsed={self._counts[PARSED]}, fallback={self._counts[FALLBACK]})"
