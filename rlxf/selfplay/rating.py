"""Agreement ratings (1-100) from small chat models: parse the reply, else read the number off the logprobs.

Small models answer "How much do you agree ... 1-100?" in many shapes ("70", "I'd say 70/100", "seventy",
"7/10", "Rating: 85."), and sometimes with no number at all. `parse_rating` reads the shapes it can; when it
finds nothing, `rating_from_logprobs` takes the expected rating under the rater's next-token distribution over
the numbers 1..100. `Rater` does both, clamps to 1-100, and counts which path each rating took.
"""

from __future__ import annotations

import bisect
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rlxf.adapters import using_adapter
from rlxf.generation import chat_prompt, generate

RATING_TEMPLATE = (
    'How much do you agree with this text on a scale of 1-100?\n\n"{text}"\n\n'
    "Answer with a number from 1 (not at all) to 100 (completely). Answer with a number."
)
RATER_SYSTEM_PROMPT = "You rate texts. You answer with one number from 1 to 100."
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
# A rating cue right before a number ("I'd say 70", "rating: 70", "give it a 7"). A lone "one".."nine" is common in
# prose ("no one", "two sides"): it counts only after such a cue, next to "out of"/"/", or as the whole reply.
_CUE_BEFORE = re.compile(
    r"(?:\bsay|\bgive[s]?(?:\s+(?:it|this|that))?|\brate(?:\s+(?:it|this|that))?|\brating(?:\s+is)?"
    r"|\bscore(?:\s+is)?|\bout\s+of|/|:)\s*(?:an?\s+)?$"
)
_CUE_AFTER = re.compile(r"^\s*(?:/|out\s+of\b)")

# Hyphens, minus signs, the figure and the en dash are one "-" (a minus before a number, a hyphen inside a word, a
# range between numbers); the em dash and the horizontal bar are punctuation (" - "): never a minus, never a hyphen.
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2212\ufe58\ufe63\uff0d"}
                        | {c: " - " for c in "\u2014\u2015"} | {c: "'" for c in "\u2018\u2019\u02bc"})
_N = r"\d+(?:\.\d+)?"
# The echo of the question's scale ("on a scale of 1-100", "(1 to 10)"): not an answer; remembered as the scale.
_SCALE_ECHO = re.compile(
    r"(?:(?:on\s+)?(?:a\s+)?scale\s+(?:of|from)\s+|\(\s*)?\b[01]\s*(?:-|to)\s*(?P<top>10|100)\b\s*\)?"
)
# The same echo cut off by the token budget ("... on a scale of 1-"): its "1" is not a rating either.
_TRUNCATED_ECHO = re.compile(r"(?:on\s+)?(?:a\s+)?scale\s+(?:of|from)\s+[01]\s*(?:(?:-|to)\s*\d{0,2})?\s*$")
# A reply that opens a numbered list ("1. 100", "1. The minimum wage ...") has an enumeration "1.", not a rating.
_LIST_MARKER = re.compile(r"^(?:\s*1[.)]\s+(?=\S))+")
# Later items of a list: "2." / "3)" opening a line, or an inline "2) " before a word (read only in sequence 1, 2, ...).
_LIST_ITEM = re.compile(r"(?m)^[ \t]*(?P<line>\d{1,2})[.)][ \t]+(?=\S)|(?<=\s)(?P<inline>\d{1,2})\)[ \t]+(?=[^\W\d])")
# Refusals: the reply declines to rate ("I cannot rate this", "As an AI ...", "N/A", "I can't.").
_REFUSAL = re.compile(
    r"\bas\s+an?\s+(?:ai|artificial\s+intelligence|(?:large\s+)?language\s+model|llm|assistant|chatbot)\b"
    r"|\b(?:cannot|can\s*not|can't|could\s+not|couldn't|won't|will\s+not|unable\s+to|not\s+able\s+to|refuse\s+to"
    r"|decline\s+to|prefer\s+not\s+to)\b(?:\s*(?=[.,;:!?]|$)|(?:\s+\S+){0,3}?\s+(?:rate|rating|ratings|score|say|give"
    r"|provide|assign|answer|evaluate|assess|judge|express|share|offer|determine|decide|quantify|comment|comply|help"
    r"|number|opinion|opinions|take\s+sides|endorse)\b)"
    r"|\b(?:do\s+not|don't)\s+have\s+(?:any\s+)?(?:personal\s+)?(?:opinions?|beliefs?|views?|feelings?|preferences?)\b"
    r"|\bno\s+(?:personal\s+)?(?:opinions?|rating)\b|\bn/a\b|\bnot\s+applicable\b"
    r"|\bi(?:'m|\s+am)\s+sorry\b|^\W*sorry\b|\bnot\s+(?:possible|appropriate)\s+(?:for\s+me\s+)?to\b"
)
# A refusal covers its clause: up to the next sentence or clause break.
_CLAUSE_END = re.compile(r"[.;:!?](?!\d)|\n|,|\bbut\b")
# A word that names the number after it: "Section 230", "Article 5", "Prop 8", "Title 42", "top 10", "#1".
_LABEL_BEFORE = re.compile(
    r"(?:\b(?:section|article|title|chapter|amendment|proposition|prop|measure|bill|act|clause|paragraph|page|volume"
    r"|item|figure|table|step|phase|stage|question|version|rule|resolution|code|route|highway|interstate|district"
    r"|ward|precinct|room|flight|form|schedule|appendix|annex|exhibit|case|docket|psalm|verse|covid|war|ww|day|year"
    r"|grade|type|generation|top)|\b(?:sec|art|ch|para|pp?|vol|fig|ver|v|h\.?\s?r)\.?|#|§)[ \t]*\Z"
)
_SCALE_TOPS = (4.0, 5.0, 10.0, 20.0, 100.0)
# Leftmost match wins; at one position the alternatives are tried in this order.
_RATING = re.compile(
    r"(?P<date>\d{1,2}/\d{1,2}/\d{2,4}|\d{4}-\d{1,2}-\d{1,2})"
    r"|(?P<time>\d{1,2}:\d{2})"
    r"|(?P<thousands>\d{1,3}(?:,\d{3})+(?:\.\d+)?)"
    rf"|between[ \t]+(?P<lo>{_N})[ \t]*(?:and|to|-)[ \t]*(?P<hi>{_N})"
    rf"|(?P<lo2>{_N})[ \t]*(?:-|to)[ \t]*(?P<hi2>{_N})"
    rf"|(?P<num>{_N})[ \t]*(?:/|out[ \t]+of)[ \t]*(?P<den>{_N})"
    rf"|(?P<pct>{_N})[ \t]*-?[ \t]*(?:%|percent\b|per[ \t]+cent\b)"
    rf"|(?P<neg>(?<![\w.])-)?(?P<plain>{_N})"
)
_YEAR = re.compile(r"(?:19|20)\d\d")
_DENOMINATOR_BEFORE = re.compile(r"(?:/|\bout\s+of)[ \t]*\Z")
_FRACTION_AFTER = re.compile(r"[ \t]*(?:/|out\s+of\b)")
# The words before a number that can make it a cue, a label or a denominator fit in this many characters (it keeps
# the parser linear in the length of the reply).
_LOOK_BACK = 40
_NOTHING = re.compile(r"[^\w-]*")
_KINDS = ("date", "time", "thousands", "lo", "lo2", "num", "pct", "plain")
_PLAIN = re.compile(rf"(?P<neg>-)?(?P<plain>{_N})")


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
        cue_before = _CUE_BEFORE.search(text, max(0, match.start() - _LOOK_BACK), match.start())
        if match["small"] and not (whole == match[0] or cue_before
                                   or _CUE_AFTER.match(text[match.end():])):
            continue
        pieces += [text[last: match.start()], str(_word_value(match))]
        last = match.end()
    return "".join(pieces) + text[last:]


def _strip_list_items(text: str) -> str:
    """Remove a numbered list's enumeration: items "1.", "2.", "3)" ... in sequence, and a repeated opening "1."."""
    expected, cuts = 1, []
    for item in _LIST_ITEM.finditer(text):
        if int(item["line"] or item["inline"]) == expected:
            cuts.append(item.span())
            expected += 1
    for start, end in reversed(cuts):
        text = text[:start] + " " + text[end:]
    return _LIST_MARKER.sub("", text)


def _refusal_spans(text: str) -> tuple[list[int], list[int]]:
    """Where the reply declines to rate: each refusal phrase to the end of its clause, as (starts, ends)."""
    starts, ends = [], []
    for refusal in _REFUSAL.finditer(text):
        end = _CLAUSE_END.search(text, refusal.end())
        starts.append(refusal.start())
        ends.append(max(end.start() if end else len(text), ends[-1] if ends else 0))
    return starts, ends


def _is_identifier(text: str, start: int, end: int) -> bool:
    """The number text[start:end] belongs to a name or quantity: glued to letters ("COVID-19", "H1N1", "1990s",
    "5-star"), labelled ("Section 230", "#1"), or money ("$15")."""
    before, after = text[start - 1: start], text[end: end + 1]
    if before.isalpha() or (before and before in "_$€£¥") or after.isalpha() or after == "_":
        return True
    if before == "-" and text[start - 2: start - 1].isalnum():
        return True
    if after == "-" and text[end + 1: end + 2].isalpha():
        return True
    return bool(_LABEL_BEFORE.search(text, max(0, start - _LOOK_BACK), start))


def parse_rating(text: str) -> float | None:
    """The rating (1-100) in a rater's reply, or None when it holds no rating (the logprob fallback then decides).

    What counts (the first rating-like expression from the left that passes the rules below wins):
    - "70", "Rating: 85." -> 70, 85; decimals are kept ("72.5").
    - "70/100", "7/10", "3 out of 5" -> X / Y * 100 (70, 70, 60), only for Y in 4, 5, 10, 20, 100 and 0 <= X <= Y:
      "9/11", "24/7", "50/50", "12/5", "7/0" are not ratings.
    - "100%", "80 percent", "100-percent" -> the number.
    - a range, "between 40 and 60", "40-60", "40 to 60" -> its midpoint (50); only low <= high <= 100.
    - number words up to one hundred ("seventy", "seventy-five", "a hundred"); a lone "one".."nine" only after
      a rating cue ("I'd say five", "rating: two"), next to "out of" or "/", or as the whole reply, because prose
      uses them ("no one agrees", "the two sides") and a false 1 or 2 would be a strong reward.
    - the question's scale echoed back ("on a scale of 1-100", "(1-10)", "1 to 100") is not a rating; if the echoed
      scale is 1-10, a plain number after it is scaled by 10 ("On a scale of 1-10: 7" -> 70); an echo cut off at the
      end of the reply ("I agree with the text on a scale of 1-") holds no rating. A denominator without a numeric
      numerator ("out of 100", "?/100", "X/100", "N/A/100") is a template, not a rating.
    - out-of-range numbers are clamped ("0" -> 1, "-5" -> 1, "−40" -> 1); a plain number above the scale counts only
      as the whole reply or right after a rating cue ("150" -> 100, "I'd say 150" -> 100; "Over 300 people
      marched. 40" -> 40).
    What never counts:
    - a refusal ("I cannot rate this", "I can't.", "unable to give a rating", "As an AI ...", "I don't have
      opinions", "N/A", "I'm sorry"): no number in its clause is read, and once a reply refuses, a number elsewhere
      counts only as an explicit rating (after a cue such as "I'd say" / "rating:", a fraction, "between ...");
      "I cannot rate this out of 100." -> None, "As an AI I have no opinion, but I'd say 60" -> 60.
    - a year (19xx, 20xx, plain or as a range end): "In 2024 I would say 40" -> 40.
    - a list's enumeration: "1. " / "1) " opening the reply, then "2.", "3)" ... in sequence ("1. 100" -> 100;
      "1. I agree." -> None; "Two points: 1) vague 2) biased. 30" -> 30); a lone "1." stays 1.
    - a number that is part of a name or a quantity: glued to letters directly or by a hyphen ("COVID-19", "H1N1",
      "F-35", "1990s", "2nd", "5-star"), after a naming word ("Section 230", "Article 5", "Prop 8", "top 10", "#1"),
      money ("$15"), a date, a time of day: "COVID-19 policies: 30" -> 30.
    - a number with thousands separators ("1,000", "12,500"): a count, never a rating on a 1-100 scale (nor 1).
    Dashes: hyphens, U+2212 minus, the figure and the en dash read as "-" (a minus before a number: "−40" -> 1, a
    hyphen inside a word, a range between numbers); the em dash is punctuation ("Agree—70" -> 70).
    """
    if not isinstance(text, str):
        raise ValueError(f"parse_rating expects the rater's reply as a str, got {type(text).__name__}")
    text = _strip_list_items(_words_to_digits(unicodedata.normalize("NFKC", text).translate(_DASHES).lower()))
    scale_top = 100.0
    for echo in _SCALE_ECHO.finditer(text):
        scale_top = float(echo["top"])
    text = _TRUNCATED_ECHO.sub(" ", _SCALE_ECHO.sub(" ", text))
    refusals = _refusal_spans(text)
    position = 0
    while (match := _RATING.search(text, position)) is not None:
        kind = next(name for name in _KINDS if match[name] is not None)
        value = _match_value(text, kind, match, scale_top, refusals)
        if value is None and kind in ("lo", "lo2"):
            # A rejected range "2024 - 70": with a spaced dash or "to" its first number may still be the rating;
            # a tight "9-5" is one token. Either way the second number gets its own reading.
            second = match.start("hi" if kind == "lo" else "hi2")
            if re.search(r"\s", text[match.end(kind): second]):
                value = _match_value(text, "plain", _PLAIN.match(text, match.start(kind)), scale_top, refusals)
        if value is not None:
            return clamp_rating(value)
        position = match.end(kind) if kind in ("lo", "lo2") else match.end()  # a denominator is never a rating
    return None


def _match_value(text: str, first: str, match: re.Match, scale_top: float,
                 refusals: tuple[list[int], list[int]]) -> float | None:
    """The rating one candidate expression (of kind `first`) gives, unclamped; None when it is not a rating."""
    if first in ("date", "time", "thousands"):
        return None
    start = match.start("neg") if match["neg"] else match.start(first)
    if _is_identifier(text, start, match.end()):
        return None
    # Refusal spans start in order and their clause ends never decrease: bisect finds the one before `start`.
    inside = bisect.bisect_right(refusals[0], start) - 1
    if (inside >= 0 and start < refusals[1][inside]) or _DENOMINATOR_BEFORE.search(text, max(0, start - _LOOK_BACK),
                                                                                      start):
        return None  # inside a refusal; a denominator whose numerator is not a number ("?/100", "out of 100")
    ended = bisect.bisect_right(refusals[1], start) - 1
    clause = refusals[1][ended] if ended >= 0 else 0
    cued = bool(_CUE_BEFORE.search(text, max(clause, start - _LOOK_BACK), start))
    explicit = cued or first in ("lo", "num")
    if refusals[0] and not explicit:
        return None
    if first in ("lo", "lo2"):
        low, high = float(match["lo"] or match["lo2"]), float(match["hi"] or match["hi2"])
        if _YEAR.fullmatch(match["lo"] or match["lo2"]) or _YEAR.fullmatch(match["hi"] or match["hi2"]):
            return None
        if not low <= high <= scale_top or _FRACTION_AFTER.match(text, match.end()):
            return None  # not a range: "9-5", "100-200", "1 - 24/7"
        return (low + high) / 2 * 100.0 / scale_top
    if first == "num":
        numerator, denominator = float(match["num"]), float(match["den"])
        if denominator not in _SCALE_TOPS or not 0 <= numerator <= denominator:
            return None
        return numerator * (100.0 / denominator)  # exact for the scale tops: 7/100 -> 7.0
    if first == "pct":
        return float(match["pct"])
    if _YEAR.fullmatch(match["plain"]):
        return None
    value = float(match["plain"])
    alone = _NOTHING.fullmatch(text, 0, start) and _NOTHING.fullmatch(text, match.end())
    if value > scale_top and not (cued or alone):
        return None
    return value * (-1.0 if match["neg"] else 1.0) * 100.0 / scale_top


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

    @classmethod
    def from_endpoint(cls, url: str, model_name: str, *, max_tokens: int = 12, template: str = RATING_TEMPLATE,
                      **judge_kwargs) -> Rater:
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
        via = f"{self.client!r}, " if getattr(self, "client", None) is not None else ""
        return f"Rater({via}parsed={self._counts[PARSED]}, fallback={self._counts[FALLBACK]})"
