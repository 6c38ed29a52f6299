"""Reading an agreement rating (1-100) out of a small chat model's reply, and the `Rating` record every rater returns.

Small models answer "How much do you agree ... 1-100?" in many shapes ("70", "I'd say 70/100", "seventy",
"7/10", "Rating: 85."), and sometimes with no number at all. `parse_rating` reads the shapes it can and returns None
otherwise (the generated rater then falls back to the logprobs: `rlxf.selfplay.generated_rater`).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass

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
    r"|\bscore(?:\s+is)?|\banswer(?:\s+is)?|\bso|\boverall|\bagreement(?:\s+(?:is|of|at|level))?|\bgo\s+with|\bput\s+it\s+at|\bout\s+of|/|:)\s*(?:an?\s+)?"
    r"(?:(?:about|around|roughly|approximately|maybe|perhaps|probably)\s+(?:an?\s+)?)?$"
)
_CUE_AFTER = re.compile(r"^\s*(?:/|out\s+of\b)")

# Hyphens, minus signs, the figure and the en dash are one "-" (a minus before a number, a hyphen inside a word, a
# range between numbers); the em dash and the horizontal bar are punctuation (" - "): never a minus, never a hyphen.
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2212\ufe58\ufe63\uff0d"}
                        | {c: " - " for c in "\u2014\u2015"} | {c: "'" for c in "\u2018\u2019\u02bc"})
_N = r"\d+(?:\.\d+)?"
# The echo of the question's scale ("on a scale of 1-100", "(1 to 10)"): not an answer; remembered as the scale.
_GLOSS = r"(?:\([^()\d]{0,60}\)\s*)?"  # "(not at all)" after an end of the scale
_SCALE_ECHO = re.compile(
    r"(?:(?:on\s+)?(?:a\s+)?scale\s+(?:of|from)\s+|\(\s*|\bfrom\s+)?\b[01]\s*" + _GLOSS
    + r"(?:-|to)\s*(?P<top>10|100)\b\s*" + _GLOSS + r"\)?"
    r"|\[\s*[01]\s*[,;]\s*(?P<top2>10|100)\s*\]"
)
# A key of the scale ("1 = not at all", "100: completely", "(1 = disagree)"): a number that names a level.
_SCALE_KEY = re.compile(r"\b(?:[01]|10|100)\s*(?:=|means\b|is\s+(?:not\s+at\s+all|completely|fully|strongly)\b)")
# "minus 20", "negative 20": a minus sign in words.
_MINUS_WORD = re.compile(r"\b(?:minus|negative)\s+(?=\d)")
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
    r"|\bi\s+(?:must\s+|have\s+to\s+|will\s+)?(?:refuse|decline|pass)\b|\bno\s+comment\b"
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
# Longer replies are not an answer to "how much do you agree?" (and an endpoint may send 4 MB): None, at once.
MAX_REPLY_CHARS = 4_000
# A clause: what lies between these (a decimal point is no break, the number holds it).
_BREAK = r"[.;:!?,()\[\]\"\n]|\s-\s|\bbut\b"
# A number stands alone when nothing but punctuation separates it from its clause's breaks ("40." "- 70 -",
# "**85**"); after it a unit may follow ("70 points", "70 percent", "70 overall").
_STANDS_BEFORE = re.compile(rf"(?:\A|{_BREAK})[^\w\n]*\Z")
_STANDS_AFTER = re.compile(rf"[^\w\n]*?(?:(?:points?|pts|percent|overall)\b[^\w\n]*?)?(?:\Z|{_BREAK})")
# After a cued number: the clause ends, or a word that does not make it a count ("I'd say 70 because ..." but not
# "I'd say 40 million Americans ...").
_AFTER_CUED = re.compile(
    rf"[^\w\n]*?(?:\Z|{_BREAK}|-|(?:points?|pts|percent|overall|because|since|as|for|on|in|out|with|and|or|given"
    r"|due|from|at|which|though|although|mostly|somewhat|partly|agree\w*|disagree\w*|i|it|this|that|here|so|if|to"
    r"|based|considering|while|now|too|personally|honestly|though)\b)"
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
    """Where the reply declines to rate: each refusal phrase to the end of its clause, as (starts, ends).

    The clause ends are found once and looked up by bisection: a search per refusal would rescan the rest of the
    text each time (a long refusal without punctuation took minutes)."""
    starts, ends = [], []
    clause_ends = [end.start() for end in _CLAUSE_END.finditer(text)]
    for refusal in _REFUSAL.finditer(text):
        following = bisect.bisect_left(clause_ends, refusal.end())
        end = clause_ends[following] if following < len(clause_ends) else len(text)
        starts.append(refusal.start())
        ends.append(max(end, ends[-1] if ends else 0))
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

    The rating is the number the reply gives *as its rating*: the first one after a rating phrase ("I'd say",
    "Rating:", "I rate it", "give it a", "so", ...) that no count noun follows ("I'd say 40 million Americans" is not
    one), else the last one that stands alone in its clause ("70.", "- 70 -", "Over 300 people marched. 40" -> 40).
    A number inside the rated text or a count ("9 out of 10 dentists agree", "3 reasons") is neither: None.
    Replies longer than MAX_REPLY_CHARS are None (not an answer; it bounds the work). The shapes:
    - "70", "Rating: 85." -> 70, 85; decimals are kept ("72.5").
    - "70/100", "7/10", "3 out of 5" -> X / Y * 100 (70, 70, 60), only for Y in 4, 5, 10, 20, 100 and 0 <= X <= Y:
      "9/11", "24/7", "50/50", "12/5", "7/0" are not ratings.
    - "100%", "80 percent", "100-percent" -> the number.
    - a range, "between 40 and 60", "40-60", "40 to 60" -> its midpoint (50); only low <= high <= 100.
    - number words up to one hundred ("seventy", "seventy-five", "a hundred"); a lone "one".."nine" only after
      a rating cue ("I'd say five", "rating: two"), next to "out of" or "/", or as the whole reply, because prose
      uses them ("no one agrees", "the two sides") and a false 1 or 2 would be a strong reward.
    - "minus 20", "negative 20" -> -20 (clamped to 1).
    - the question's template echoed back ("from 1 (not at all) to 100 (completely)", "[1, 100]", "1 = not at all")
      and its scale ("on a scale of 1-100", "(1-10)", "1 to 100") are not a rating; if the echoed
      scale is 1-10, a plain number after it is scaled by 10 ("On a scale of 1-10: 7" -> 70); an echo cut off at the
      end of the reply ("I agree with the text on a scale of 1-") holds no rating. A denominator without a numeric
      numerator ("out of 100", "?/100", "X/100", "N/A/100") is a template, not a rating.
    - out-of-range numbers are clamped ("0" -> 1, "-5" -> 1, "−40" -> 1); a plain number above the scale counts only
      as the whole reply or right after a rating cue ("150" -> 100, "I'd say 150" -> 100; "Over 300 people
      marched. 40" -> 40).
    What never counts:
    - a refusal ("I cannot rate this", "I can't.", "I refuse.", "unable to give a rating", "As an AI ...", "I don't have
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
    if len(text) > MAX_REPLY_CHARS:
        return None  # not an answer to "how much do you agree?"; bounds the work (an endpoint may send 4 MB)
    text = unicodedata.normalize("NFKC", text).translate(_DASHES).lower()
    text = _strip_list_items(_words_to_digits(_MINUS_WORD.sub("-", text)))
    scale_top = 100.0
    for echo in _SCALE_ECHO.finditer(text):
        scale_top = float(echo["top"] or echo["top2"])
    text = _TRUNCATED_ECHO.sub(" ", _SCALE_ECHO.sub(" ", text))
    refusals = _refusal_spans(text)
    position, standalone = 0, None
    while (match := _RATING.search(text, position)) is not None:
        kind = next(name for name in _KINDS if match[name] is not None)
        value, how = _match_value(text, kind, match, scale_top, refusals)
        if value is None and kind in ("lo", "lo2"):
            # A rejected range "2024 - 70": with a spaced dash or "to" its first number may still be the rating;
            # a tight "9-5" is one token. Either way the second number gets its own reading.
            second = match.start("hi" if kind == "lo" else "hi2")
            if re.search(r"\s", text[match.end(kind): second]):
                value, how = _match_value(text, "plain", _PLAIN.match(text, match.start(kind)), scale_top, refusals)
        if how == "cued":
            return clamp_rating(value)
        if how == "standalone":
            standalone = value  # the last one stands: "Over 300 people marched. 40" -> 40
        position = match.end(kind) if kind in ("lo", "lo2") else match.end()  # a denominator is never a rating
    return None if standalone is None else clamp_rating(standalone)


def _match_value(text: str, first: str, match: re.Match, scale_top: float,
                 refusals: tuple[list[int], list[int]]) -> tuple[float | None, str | None]:
    """The rating one candidate expression (of kind `first`) gives, unclamped, and how it is given: "cued" (after a
    rating phrase), "standalone" (the whole clause) or None (not a rating: a count, a name, the rated text)."""
    if first in ("date", "time", "thousands"):
        return None, None
    start = match.start("neg") if match["neg"] else match.start(first)
    if _is_identifier(text, start, match.end()) or _SCALE_KEY.match(text, start):
        return None, None
    # Refusal spans start in order and their clause ends never decrease: bisect finds the one before `start`.
    inside = bisect.bisect_right(refusals[0], start) - 1
    if (inside >= 0 and start < refusals[1][inside]) or _DENOMINATOR_BEFORE.search(text, max(0, start - _LOOK_BACK),
                                                                                      start):
        return None, None  # inside a refusal; a denominator whose numerator is not a number ("?/100", "out of 100")
    ended = bisect.bisect_right(refusals[1], start) - 1
    clause = refusals[1][ended] if ended >= 0 else 0
    cued = bool(_CUE_BEFORE.search(text, max(clause, start - _LOOK_BACK), start)) and bool(
        _AFTER_CUED.match(text, match.end()))
    alone = bool(_STANDS_BEFORE.search(text, max(0, match.start() - _LOOK_BACK), match.start())
                 and _STANDS_AFTER.match(text, match.end()))
    if not cued and (refusals[0] or not alone):
        return None, None  # after a refusal only a cued rating counts; "9 out of 10 dentists" is a count
    value = _unscaled_value(text, first, match, scale_top, cued)
    return (value, "cued" if cued else "standalone") if value is not None else (None, None)


def _unscaled_value(text: str, first: str, match: re.Match, scale_top: float, cued: bool) -> float | None:
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
    alone = _NOTHING.fullmatch(text, 0, match.start()) and _NOTHING.fullmatch(text, match.end())
    if value > scale_top and not (cued or alone):
        return None
    return value * (-1.0 if match["neg"] else 1.0) * 100.0 / scale_top


@dataclass(frozen=True)
class Rating:
    """One rating: the value (1-100), the path it came from ("parsed" or "fallback") and the rater's reply."""

    value: float
    path: str
    reply: str
