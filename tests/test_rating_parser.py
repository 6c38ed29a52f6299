"""The rating parser reads the number a reply gives *as its rating* (issue 26): never an echoed scale, a list
marker, a number of the rated text or a count; a refusal is None; any reply is parsed in well under a second.
The shapes it already read are in tests/test_selfplay.py."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlxf.selfplay.rating_parse import MAX_REPLY_CHARS, parse_rating

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None)


@pytest.mark.parametrize("reply, expected", [
    # the question's template echoed back
    ("Answer with a number from 1 (not at all) to 100 (completely).", None),
    ("[1, 100]", None),
    ("Please rate from 1 (strongly disagree) to 10 (strongly agree).", None),
    ("1 = not at all, 100 = completely. 70", 70.0),
    # refusals
    ("I refuse. 3 reasons:", None),
    ("I decline. 2 sides to this", None),
    # numbers of the rated text, counts
    ("Over 40 million Americans lack insurance. I'd say 70", 70.0),
    ("I'd say 40 million people lack insurance, so 70", 70.0),
    ("9 out of 10 dentists agree", None),
    ("3 out of 4 economists disagree. 25", 25.0),
    ("The bill has 12 sections and 300 pages", None),
    ("About 20 percent of voters care", None),
    # list numbers
    ("1. Agree 2. Disagree", None),
    # a minus in words
    ("I'd rate it minus 20", 1.0),
    ("negative 5", 1.0),
])
def test_the_rating_is_the_number_given_as_the_rating(reply, expected):
    assert parse_rating(reply) == (None if expected is None else pytest.approx(expected)), reply


# Guards, not fixes: shapes the parser read before and must still read under the rule above.
@pytest.mark.parametrize("reply, expected", [
    ("Reasons:\n1. cost\n2. fairness\n3. jobs", None),
    ("1. It is vague.\n2. It is biased.\nRating: 35", 35.0),
    ("I'd say about 70", 70.0),
    ("Rating: 85 because it is fair", 85.0),
    ("70 points", 70.0),
    ("**80**", 80.0),
])
def test_shapes_read_before_are_still_read(reply, expected):
    assert parse_rating(reply) == (None if expected is None else pytest.approx(expected)), reply


NOUNS = ["people", "states", "senators", "million Americans", "years", "reasons", "dentists", "percent of voters",
         "jobs", "cases"]
TEXTS = ["The bill", "Over {n} {noun} lack insurance", "{n} {noun} signed it", "it affects {n} {noun}",
         "{n} out of 10 {noun} agree", "Nearly {n} {noun} marched"]
CUES = ["I'd say {r}", "Rating: {r}", "My rating is {r}.", "I rate it {r}", "{r}", "{r}/100", "I'd give it a {r}"]
TEMPLATES = ["Answer with a number from 1 (not at all) to 100 (completely).", "[1, 100]", "on a scale of 1-100",
             "from 1 to 100", "(1 = not at all, 100 = completely)", "Rate it 1-10."]


@st.composite
def text_then_rating(draw):
    """Sentences of the rated text with numbers in them (counts), then the rating."""
    rating = draw(st.integers(1, 100))
    sentences = [draw(st.sampled_from(TEXTS)).format(n=draw(st.integers(2, 999)), noun=draw(st.sampled_from(NOUNS)))
                 for _ in range(draw(st.integers(1, 3)))]
    return ". ".join(sentences) + ". " + draw(st.sampled_from(CUES)).format(r=rating), float(rating)


@PROPERTY_SETTINGS
@given(text_then_rating())
def test_numbers_of_the_rated_text_are_never_the_rating(case):
    reply, rating = case
    assert parse_rating(reply) == rating, reply


@PROPERTY_SETTINGS
@given(st.lists(st.sampled_from(TEXTS), min_size=1, max_size=3), st.integers(2, 999), st.sampled_from(NOUNS))
def test_a_reply_of_counts_alone_holds_no_rating(texts, n, noun):
    reply = ". ".join(text.format(n=n, noun=noun) for text in texts)
    assert parse_rating(reply) is None, reply


@PROPERTY_SETTINGS
@given(st.lists(st.sampled_from(TEMPLATES), min_size=1, max_size=3), st.sampled_from([". ", " ", "\n"]))
def test_an_echoed_template_is_never_a_rating(templates, separator):
    assert parse_rating(separator.join(templates)) is None


@PROPERTY_SETTINGS
@given(st.sampled_from(TEMPLATES), st.sampled_from(["I'd say {r}", "Rating: {r}", "{r}"]), st.integers(1, 100))
def test_a_rating_after_an_echoed_template_is_read(template, cue, rating):
    if template.endswith("1-10."):  # a scale of 1-10: its ratings are 1..10, read as 10..100
        rating, expected = rating % 10 + 1, (rating % 10 + 1) * 10.0
    else:
        expected = float(rating)
    reply = f"{template}\n{cue.format(r=rating)}"
    assert parse_rating(reply) == expected, reply


# Before the length cap these took 2 to 4 s, and the first and an "I am sorry I cannot" one over 30 s.
@pytest.mark.parametrize("reply", [
    "I refuse to rate " * 62_500,                               # 1 MB refusal without punctuation
    "I cannot " * 111_112,
    "1 " * 500_000,
    "(" * 1_000_000,
    "sorry, " * 150_000 + "Rating: 40",
])
def test_a_one_megabyte_reply_is_parsed_in_well_under_a_second(reply):
    started = time.perf_counter()
    assert parse_rating(reply) is None  # longer than MAX_REPLY_CHARS: not an answer
    assert time.perf_counter() - started < 0.5


# A guard of the cap: adversarial replies just under it stay fast.
@pytest.mark.parametrize("unit", ["I cannot ", "I refuse to rate ", "1 ", "12-", "9/11 ", "I'd say ", "(", "- 5 - "])
def test_a_reply_at_the_length_cap_is_parsed_in_well_under_a_second(unit):
    reply = (unit * (MAX_REPLY_CHARS // len(unit)))[: MAX_REPLY_CHARS - 11] + " Rating: 40"
    assert len(reply) <= MAX_REPLY_CHARS
    started = time.perf_counter()
    parse_rating(reply)
    assert time.perf_counter() - started < 0.5, unit
