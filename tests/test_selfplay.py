"""Self-play: rating parsing, the logprob fallback, the GeneratedRater, the two-bot environment, transcripts."""

from __future__ import annotations

import json
import math
import re
import time
from types import SimpleNamespace

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from peft import LoraConfig, get_peft_model
from torch import nn

from rlxf.data.prompts import LEADING_PROMPTS, POLITICAL_QUESTIONS
from rlxf.lm.adapters import save_adapter, using_adapter
from rlxf.lm.generation import chat_prompt
from rlxf.lm.models import load_causal_lm
from rlxf.selfplay import (
    Bot,
    Reply,
    SelfPlayEnv,
    TwoBotDebate,
    play_episode,
    read_transcripts,
    run_episode,
    write_transcripts,
)
from rlxf.selfplay.generated_rater import GeneratedRater, number_distribution, number_token_ids, rating_from_logprobs
from rlxf.selfplay.rating_parse import FALLBACK, PARSED, parse_rating

# ------------------------------------------------------------------------------------------------ parse_rating


@pytest.mark.parametrize("reply, expected", [
    ("I'd say 70/100", 70.0),
    ("seventy", 70.0),
    ("Seventy-five.", 75.0),
    ("seventy five", 75.0),
    ("A hundred percent!", 100.0),
    ("100%", 100.0),
    ("7/10", 70.0),
    ("three out of five", 60.0),
    ("Rating: 85.", 85.0),
    ("85", 85.0),
    ("I rate it 72.5", 72.5),
    ("between 40 and 60", 50.0),
    ("40-60", 50.0),
    ("-5", 1.0),
    ("0", 1.0),
    ("150", 100.0),
    ("One.", 1.0),
    ("I'd give it a five", 5.0),
    ("On a scale of 1-100, I would say 70", 70.0),
    ("On a scale of 1 to 10: 7", 70.0),
    ("My rating is 85 - mostly agree", 85.0),
    ("7/0 no, 80", 80.0),
    ("1. 100", 100.0),
    ("1) 70 - mostly agree", 70.0),
    ("1.", 1.0),
    ("1.5", 1.5),
])
def test_parse_rating_tricky_replies(reply, expected):
    assert parse_rating(reply) == pytest.approx(expected)


@pytest.mark.parametrize("reply", ["I agree.", "", "No one agrees with the two sides here.", "It depends.",
                                   "I agree with the text on a scale of 1-", "On a scale of 1 to 1",
                                   "1. 1. The minimum wage", "1. I agree with the text."])
def test_parse_rating_without_a_number_is_none(reply):
    assert parse_rating(reply) is None


def test_parse_rating_rejects_non_text():
    with pytest.raises(ValueError, match="expects the rater's reply as a str"):
        parse_rating(70)


# Replies measured to hand out free reward before the parser learned refusals, years, identifiers and dashes.
@pytest.mark.parametrize("reply, expected", [
    ("I cannot rate this out of 100.", None),
    ("N/A/100", None),
    ("?/100", None),
    ("X/100", None),
    ("I can't.", None),
    ("I can't give one.", None),
    ("As an AI, I have no opinions on a scale of 1-100.", None),
    ("I'm sorry, but I am unable to provide a rating.", None),
    ("I don't have personal opinions. 70", None),  # a refusal, then a bare number: not an explicit rating
    ("As an AI I have no opinion, but I'd say 60", 60.0),  # ... an explicit one after the refusal counts
    ("I can't agree more: 100", 100.0),  # "can't agree" is not a refusal to rate
    ("In 2024 I would say 40", 40.0),
    ("From 2020-2024, 40", 40.0),
    ("In 2024 - 70", 70.0),
    ("COVID-19 policies: 30", 30.0),
    ("COVID 19 policies: 30", 30.0),
    ("H1N1 vaccines, 55", 55.0),
    ("Section 230 reform: 25", 25.0),
    ("Title IX", None),
    ("The 1990s were different. 35", 35.0),
    ("The 2nd Amendment. 70", 70.0),
    ("A 5-star idea", None),
    ("A $15 minimum wage? 65", 65.0),
    ("After 9/11 things changed; 45", 45.0),
    ("24/7 news: 20", 20.0),
    ("50/50", None),
    ("the #1 issue, 22", 22.0),
    ("1,000", None),  # thousands separators mark a count, never a rating on a 1-100 scale (nor 1)
    ("1,000 people marched. 30", 30.0),
    ("Over 300 people marched. 40", 40.0),  # above the scale and neither the whole reply nor cued: not a rating
    ("I'd say 150", 100.0),
    ("−40", 1.0),  # U+2212 minus
    ("–40", 1.0),  # en dash as minus
    ("40–60", 50.0),
    ("Agree—70", 70.0),  # em dash: punctuation
    ("100-percent", 100.0),
    ("Two points: 1) vague 2) biased. 30", 30.0),
    ("1. I agree.\n2. 70", 70.0),
    ("70. Mostly agree", 70.0),
    ("12/05/2023: rating 44", 44.0),
])
def test_parse_rating_gives_no_free_reward(reply, expected):
    assert parse_rating(reply) == (None if expected is None else pytest.approx(expected))


def test_parse_rating_is_linear_in_the_reply_length():
    # Up to the length cap (MAX_REPLY_CHARS, 4,000 characters: longer replies are None, tests/test_rating_parser.py).
    long_reply = "In 2024, COVID-19 and one of 300 people. I cannot rate it. " * 66 + "Rating: 40"  # 3.9k chars
    started = time.perf_counter()
    assert parse_rating(long_reply) == 40.0
    assert time.perf_counter() - started < 0.5  # about 0.02 s; a quadratic parser took minutes


# Property tests: generated replies embed one rating among distractors (hypothesis; derandomized so CI is stable).
RATING_PHRASES = ["{r}", "{r}.", "{r}%", "I'd say {r}", "Rating: {r}", "My rating is {r}.", "I rate it {r}",
                  "{r}/100", "{r} out of 100", "I would give it a {r}", "On a scale of 1-100, I'd say {r}"]
DISTRACTORS = ["In 2024", "since 1999", "From 2020-2024", "COVID-19 policies", "H1N1", "Section 230", "Title IX",
               "F-35 jets", "the 1990s", "the 2nd Amendment", "5-star hotels", "a $15 minimum wage", "after 9/11",
               "24/7 news", "1,000 people", "Article 5", "the #1 issue", "the top 10 issues", "GPT-4", "Prop 8",
               "Route 66", "on 12/05/2023", "at 10:30", "?/100", "out of 100", "It's 50/50"]
REFUSALS = ["I cannot rate this.", "I can't.", "As an AI, I have no opinions.", "N/A", "Unable to rate",
            "I'm unable to give a rating out of 100.", "I'm sorry, but I cannot provide a rating on a scale of 1-100",
            "As an AI language model I don't have personal opinions", "I won't rate that", "N/A/100"]
SEPARATORS = [". ", "; ", ", ", "\n", " - ", " — ", ": ", "! "]
PROPERTY_SETTINGS = settings(max_examples=400, deadline=None, derandomize=True, database=None)


@st.composite
def replies_with_a_rating(draw, refusals: bool):
    rating = draw(st.integers(1, 100))
    pieces = draw(st.lists(st.sampled_from(DISTRACTORS + (REFUSALS if refusals else [])), max_size=4))
    if refusals:
        pieces.append(draw(st.sampled_from(REFUSALS)))
    pieces = draw(st.permutations(pieces))
    at = draw(st.integers(0, len(pieces)))
    pieces.insert(at, draw(st.sampled_from(RATING_PHRASES)).format(r=rating))
    reply = "".join(piece + draw(st.sampled_from(SEPARATORS)) for piece in pieces[:-1]) + pieces[-1]
    if draw(st.booleans()):
        reply = draw(st.sampled_from(["1. ", "1) "])) + reply
    # A line that opens with the rating as "1. ..." (or "2. ..." after "1.") reads as a numbered list by rule.
    assume(not re.search(rf"(?m)^{rating}[.)]\s+\S", reply))
    return reply, float(rating)


@PROPERTY_SETTINGS
@given(replies_with_a_rating(refusals=False))
def test_parse_rating_finds_the_rating_among_distractors(case):
    reply, rating = case
    assert parse_rating(reply) == rating, reply


@PROPERTY_SETTINGS
@given(replies_with_a_rating(refusals=True))
def test_parse_rating_with_a_refusal_gives_the_rating_or_none(case):
    reply, rating = case
    assert parse_rating(reply) in (rating, None), reply


@PROPERTY_SETTINGS
@given(st.lists(st.sampled_from(REFUSALS + ["Title IX", "I really can't say", "No rating."]), min_size=1, max_size=4),
       st.sampled_from(SEPARATORS))
def test_parse_rating_of_a_refusal_without_a_number_is_none(pieces, separator):
    assert parse_rating(separator.join(pieces)) is None


@PROPERTY_SETTINGS
@given(st.text(alphabet=st.sampled_from(list("0123456789 -−–—/.,:%$#()\nabcnoutfyersp")), max_size=40))
def test_parse_rating_is_none_or_on_the_scale(reply):
    rating = parse_rating(reply)
    assert rating is None or 1.0 <= rating <= 100.0


# ------------------------------------------------------------------------------------------------ logprob fallback


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = load_causal_lm("tiny-llama")
    return model, tokenizer


def test_tiny_tokenizer_splits_numbers_into_several_tokens(tiny):
    _, tokenizer = tiny
    _, numbers = number_token_ids(tokenizer, chat_prompt(tokenizer, "Rate it."))
    assert len(numbers) == 100 and len(numbers[99]) == 3 and len(numbers[6]) == 1  # "100" is "1","0","0"


def test_number_distribution_scores_full_token_sequences(tiny):
    model, tokenizer = tiny
    prompt = "How much do you agree with this text on a scale of 1-100? Answer with a number."
    probabilities = number_distribution(model, tokenizer, prompt, dtype="fp32")
    assert probabilities.shape == (100,) and probabilities.sum().item() == pytest.approx(1.0, abs=1e-5)
    # The cached path (one prompt forward, cache repeated) equals scoring every full sequence.
    uncached = number_distribution(model, tokenizer, prompt, use_cache=False, dtype="fp32")
    torch.testing.assert_close(probabilities, uncached, atol=1e-5, rtol=1e-4)
    # Independent check of P(7) / P(70) / P(100) from full forwards: tokens' probabilities times P(no more digits).
    text = chat_prompt(tokenizer, prompt)
    digit = torch.tensor([t[0].isdigit() for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))])

    def log_p(number: int) -> float:
        ids = tokenizer(text + str(number), add_special_tokens=False)["input_ids"]
        start = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        total = sum(float(logp[k - 1, ids[k]]) for k in range(start, len(ids)))
        return total + math.log(1 - float(logp[-1].exp()[: len(digit)][digit].sum()))

    assert math.log(probabilities[6] / probabilities[69]) == pytest.approx(log_p(7) - log_p(70), abs=1e-3)
    assert math.log(probabilities[99] / probabilities[69]) == pytest.approx(log_p(100) - log_p(70), abs=1e-3)
    rating = rating_from_logprobs(model, tokenizer, prompt, dtype="fp32")
    assert rating == pytest.approx(float((probabilities * torch.arange(1, 101)).sum()), rel=1e-4)
    assert 1.0 <= rating <= 100.0


class BigramLM(nn.Module):
    """A language model whose next-token logits depend only on the last token (a table): probabilities we can
    compute by hand."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(logits)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return SimpleNamespace(logits=self.table[input_ids], past_key_values=None)


def test_rating_from_logprobs_is_the_expected_rating(tiny):
    _, tokenizer = tiny
    prompt = "Rating="
    prompt_ids, numbers = number_token_ids(tokenizer, prompt)
    (seven,), (four, two) = numbers[6], numbers[41]
    vocab, eos = len(tokenizer), tokenizer.eos_token_id
    table = torch.full((vocab, vocab), -1e4)
    table[:, eos] = 0.0  # after any other token: end
    table[prompt_ids[-1]] = -1e4
    table[prompt_ids[-1], seven], table[prompt_ids[-1], four] = math.log(0.75), math.log(0.25)
    table[four] = -1e4
    table[four, two] = 0.0  # "4" is always followed by "2": the number is 42, never 4
    model = BigramLM(table)
    probabilities = number_distribution(model, tokenizer, prompt, chat=False)
    assert probabilities[6].item() == pytest.approx(0.75) and probabilities[41].item() == pytest.approx(0.25)
    assert rating_from_logprobs(model, tokenizer, prompt, chat=False) == pytest.approx(0.75 * 7 + 0.25 * 42)


# ------------------------------------------------------------------------------------------------ GeneratedRater


def fixed_rater(replies: dict[str | None, str], fallback: float | None = None) -> GeneratedRater:
    """A deterministic rater: each adapter (who rates) always answers the same text."""
    fallback_fn = None if fallback is None else (lambda p, a: fallback)
    return GeneratedRater(lambda prompt, adapter: replies[adapter], fallback_fn)


def test_rater_parses_falls_back_and_counts():
    rater = fixed_rater({"dem": "Rating: 85.", "rep": "I am not sure."}, fallback=130.0)
    assert "How much do you agree with this text on a scale of 1-100?" in rater.prompt("Tax cuts now")
    assert "Answer with a number." in rater.prompt("Tax cuts now")
    parsed = rater.rate("Tax cuts now", adapter="dem")
    assert (parsed.value, parsed.path, parsed.reply) == (85.0, PARSED, "Rating: 85.")
    fallback = rater.rate("Tax cuts now", adapter="rep")
    assert (fallback.value, fallback.path) == (100.0, FALLBACK)  # clamped
    rater.rate("More tax cuts", adapter="dem")
    assert rater.stats == {"parsed": 2, "fallback": 1, "total": 3, "parse_rate": pytest.approx(2 / 3)}
    rater.reset_stats()
    assert rater.stats["total"] == 0 and math.isnan(rater.stats["parse_rate"])


def test_rater_without_fallback_refuses_a_reply_without_number():
    with pytest.raises(ValueError, match="holds no rating"):
        fixed_rater({None: "I agree."}).rate("text")
    with pytest.raises(ValueError, match="placeholder"):
        GeneratedRater(lambda p, a: "1", template="no placeholder")


def test_normalise_maps_the_scale_to_minus_one_one():
    normalise = GeneratedRater.normalise
    assert normalise(1) == -1.0 and normalise(100) == 1.0 and normalise(50.5) == 0.0
    with pytest.raises(ValueError, match=r"in \[1, 100\]"):
        GeneratedRater.normalise(0)


# ------------------------------------------------------------------------------------------------ environment


def fake_bots() -> list[Bot]:
    """Deterministic bots: each reply names the speaker and echoes the start of what it answers."""
    return [Bot("dem", lambda prompt: f"dem says no to: {prompt[:20]}", adapter="dem"),
            Bot("rep", lambda prompt: f"rep says yes to: {prompt[:20]}", adapter="rep")]


def test_reset_and_step_contract():
    env = SelfPlayEnv(fake_bots(), fixed_rater({"dem": "80", "rep": "I'd say 30/100"}), max_exchanges=3)
    assert isinstance(env, gymnasium.Env)
    observation, info = env.reset(seed=3)
    assert isinstance(observation, str) and observation in POLITICAL_QUESTIONS
    assert env.observation_space.contains(observation) and isinstance(info, dict)
    assert info["agent"] == "dem" and info["other"] == "rep" and info["transcript"] == []
    result = env.step("We need universal healthcare.")
    assert len(result) == 5
    observation, reward, terminated, truncated, info = result
    assert isinstance(observation, str) and isinstance(reward, float)
    assert terminated is False and truncated is False
    # The agent's reward is the OTHER bot's rating of its reply; the agent rates the other's reply back.
    assert info["rating"] == 30.0 and reward == pytest.approx(GeneratedRater.normalise(30.0))
    assert info["opponent_turn"]["speaker"] == "rep" and info["opponent_turn"]["rating_by_other"] == 80.0
    assert observation == "rep says yes to: We need universal he"  # the other's reply is the next observation
    assert info["parse_path"] == PARSED and info["ratings"] == [30.0, 80.0]


def test_speakers_alternate_and_episode_truncates_at_max_exchanges():
    env = SelfPlayEnv(fake_bots(), fixed_rater({"dem": "80", "rep": "30"}), max_exchanges=3, normalise_reward=False)
    observation, _ = env.reset(seed=0)
    rewards, flags = [], []
    for k in range(3):
        observation, reward, terminated, truncated, info = env.step(f"dem turn {k}")
        rewards.append(reward)
        flags.append((terminated, truncated))
    assert rewards == [30.0, 30.0, 30.0]
    assert flags == [(False, False), (False, False), (False, True)]
    transcript = info["transcript"]
    assert [row["speaker"] for row in transcript] == ["dem", "rep"] * 3
    assert [row["exchange"] for row in transcript] == [0, 0, 1, 1, 2, 2]
    assert [row["rating_by_other"] for row in transcript] == [30.0, 80.0] * 3
    assert transcript[2]["prompt"] == transcript[1]["reply"]  # each turn answers the previous one
    with pytest.raises(RuntimeError, match="call reset"):
        env.step("one more")


def test_neutral_streak_terminates_the_episode():
    env = SelfPlayEnv(fake_bots(), fixed_rater({"dem": "50", "rep": "fifty"}), max_exchanges=10, stop_streak=3)
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step("first")
    assert (terminated, truncated) == (False, False)
    _, _, terminated, truncated, info = env.step("second")  # the agent's rating is the third neutral one in a row
    assert (terminated, truncated) == (True, False)
    assert info["opponent_turn"] is None and len(info["transcript"]) == 3
    env_off = SelfPlayEnv(fake_bots(), fixed_rater({"dem": "50", "rep": "90"}), max_exchanges=2, stop_streak=2)
    env_off.reset(seed=0)
    assert env_off.step("a")[2:4] == (False, False) and env_off.step("b")[2:4] == (False, True)


def test_leading_prompts_switch():
    rater = fixed_rater({"dem": "60", "rep": "40"})
    plain = SelfPlayEnv(fake_bots(), rater, leading_prompts=False)
    plain.reset(seed=0)
    observation, *_, info = plain.step("Cut taxes.")
    assert observation == info["opponent_turn"]["reply"] and info["opponent_turn"]["leading_prompt"] is None
    leading = SelfPlayEnv(fake_bots(), rater, leading_prompts=True)
    leading.reset(seed=0)
    observation, *_, info = leading.step("Cut taxes.")
    reply, question = observation.rsplit("\n\n", 1)
    assert reply == info["opponent_turn"]["reply"] and question in LEADING_PROMPTS
    assert info["opponent_turn"]["prompt"].startswith("Cut taxes.\n\n")
    assert info["opponent_turn"]["leading_prompt"] in LEADING_PROMPTS


def test_reset_options_seed_and_bad_input():
    env = SelfPlayEnv(fake_bots(), fixed_rater({"dem": "60", "rep": "40"}))
    assert env.reset(seed=5)[0] == env.reset(seed=5)[0]
    assert len({env.reset(seed=s)[0] for s in range(40)}) > 1
    observation, info = env.reset(options={"agent": "rep", "issue": "Is pizza a vegetable?"})
    assert observation == "Is pizza a vegetable?" and info["agent"] == "rep"
    _, reward, *_ = env.step("Yes.")
    assert reward == pytest.approx(GeneratedRater.normalise(60.0))  # now dem rates the agent rep
    with pytest.raises(ValueError, match="unknown options"):
        env.reset(options={"speaker": "dem"})
    with pytest.raises(ValueError, match="options\\['agent'\\] must be one of"):
        env.reset(options={"agent": "green"})
    env.reset()
    with pytest.raises(ValueError, match="action must be the agent's reply as a str"):
        env.step(42)
    with pytest.raises(ValueError, match="two Bot objects with different names"):
        SelfPlayEnv(fake_bots()[:1], fixed_rater({}))
    with pytest.raises(ValueError, match="max_exchanges must be >= 1"):
        SelfPlayEnv(fake_bots(), fixed_rater({}), max_exchanges=0)


def test_passes_gymnasium_env_checker():
    env = SelfPlayEnv(fake_bots(), fixed_rater({"dem": "60", "rep": "40"}), render_mode="ansi")
    check_env(env, skip_render_check=False)
    env.reset(seed=0)
    env.step("hello")
    assert "dem (rated 40.0 by the other): hello" in env.render()


def test_debate_transcripts_roundtrip_as_json_lines(tmp_path):
    debate = TwoBotDebate(fake_bots(), fixed_rater({"dem": "60", "rep": "40"}), max_exchanges=2)
    transcripts = debate.run(3, seed=0)
    assert len(transcripts) == 3 and [len(t) for t in transcripts] == [4, 4, 4]
    assert [t[0]["speaker"] for t in transcripts] == ["dem", "rep", "dem"]  # the bots take turns opening
    assert transcripts[1][0]["prompt"] == transcripts[1][0]["issue"]
    for row in transcripts[0]:
        assert {"exchange", "speaker", "prompt", "reply", "rating_by_other", "parse_path"} <= set(row)
    path = write_transcripts(tmp_path / "out" / "transcripts.jsonl", transcripts)
    assert len(path.read_text().splitlines()) == 12
    assert read_transcripts(path) == transcripts
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:2: not valid JSON"):
        read_transcripts(bad)
    bad.write_text(json.dumps({"episode": 0, "speaker": "dem"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: a transcript line needs the keys"):
        read_transcripts(bad)
    with pytest.raises(FileNotFoundError, match="no transcript file"):
        read_transcripts(tmp_path / "missing.jsonl")


def test_run_episode_with_a_policy_function():
    env = SelfPlayEnv(fake_bots(), fixed_rater({"dem": "60", "rep": "40"}), max_exchanges=2)
    transcript = run_episode(env, lambda observation: observation.upper(), seed=1, options={"issue": "why?"})
    assert transcript[0]["reply"] == "WHY?" and transcript[2]["reply"] == transcript[1]["reply"].upper()


# ------------------------------------------------------------------------------------------------ real tiny model


def two_bot_model():
    """tiny-llama with LoRA adapters "dem" and "rep" (random, so the two bots differ)."""
    model, tokenizer = load_causal_lm("tiny-llama")
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(model, config, adapter_name="dem")
    model.add_adapter("rep", LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                        init_lora_weights=False))
    return model, tokenizer


def test_token_ids_of_replies_reach_the_caller_as_data():
    ids = {"dem": (torch.tensor([1, 2]), torch.tensor([3])), "rep": (torch.tensor([4]), torch.tensor([5, 6]))}
    bots = [Bot(name, lambda prompt, name=name: Reply(f"{name}: {prompt[:10]}", *ids[name]), adapter=name)
            for name in ("dem", "rep")]
    env = SelfPlayEnv(bots, fixed_rater({"dem": "60", "rep": "40"}), max_exchanges=2)
    transcript, replies = play_episode(env, bots[0].reply_fn, seed=0)
    assert [row["reply"] for row in transcript] == [reply.text for reply in replies]  # the transcript holds text
    for row, reply in zip(transcript, replies, strict=True):
        assert torch.equal(reply.query, ids[row["speaker"]][0]) and torch.equal(reply.response, ids[row["speaker"]][1])


def test_using_adapter_restores_the_active_adapter_and_trainability():
    model, _ = two_bot_model()
    model.set_adapter("dem")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".dem." in n for n in trainable)
    with using_adapter(model, "rep"):
        assert model.active_adapter == "rep"
    assert model.active_adapter == "dem"
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable
    with pytest.raises(ValueError, match="adapter 'green' is not on this model"):
        with using_adapter(model, "green"):
            pass


def test_episode_with_real_adapters_and_model_rater():
    model, tokenizer = two_bot_model()
    bots = [Bot.from_adapter(name, model, tokenizer, name, max_new_tokens=6) for name in ("dem", "rep")]
    rater = GeneratedRater.from_model(model, tokenizer, max_new_tokens=4)
    env = SelfPlayEnv(bots, rater, max_exchanges=1)
    transcript = run_episode(env, bots[0].reply_fn, seed=0)
    assert [row["speaker"] for row in transcript] == ["dem", "rep"]
    for row in transcript:
        assert 1.0 <= row["rating_by_other"] <= 100.0 and row["parse_path"] in (PARSED, FALLBACK)
    assert rater.stats["total"] == 2
    # The two adapters are different raters: their logprob ratings of the same text differ.
    prompt = rater.prompt(transcript[0]["reply"])
    with using_adapter(model, "dem"):
        dem = rating_from_logprobs(model, tokenizer, prompt)
    with using_adapter(model, "rep"):
        rep = rating_from_logprobs(model, tokenizer, prompt)
    assert dem != pytest.approx(rep, abs=1e-6)


# ------------------------------------------------------------------------------------------------ PPO on one of two


def test_ppo_step_for_dem_changes_only_dems_adapter():
    from rlxf.algos.ppo import PPOSettings, PPOTrainer

    model, tokenizer = two_bot_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    settings = PPOSettings(batch_size=2, ppo_epochs=2, max_new_tokens=4, learning_rate=1e-2, progress_bar=False)
    trainer = PPOTrainer(model, tokenizer, settings, adapter_name="dem")
    env = SelfPlayEnv(fake_bots(), fixed_rater({"dem": "70", "rep": "20"}))
    observations = [env.reset(seed=s)[0] for s in (0, 1)]
    queries = [chat_prompt(tokenizer, o) for o in observations]
    responses = ["We should compromise.", "No way."]
    rewards = [GeneratedRater.normalise(90.0), GeneratedRater.normalise(10.0)]
    trainer.step(queries, responses, rewards)
    after = {name: p.detach() for name, p in trainer.model.named_parameters()}
    # Frozen base weights may be stored in bf16 (rlxf.lm.precision.store_frozen_weights): compare in that dtype.
    changed = {name for name, p in before.items()
               if name in after and not torch.equal(p.to(after[name].dtype), after[name])}
    assert changed, "the PPO step changed no parameter"
    assert all(".dem." in name for name in changed), f"parameters other than dem's changed: {sorted(changed)}"
    rep = [name for name in before if ".rep." in name]
    assert rep and all(torch.equal(before[name], after[name]) for name in rep)


# ------------------------------------------------------------------------------------------------ two-bot PPO


def selfplay_trainer(output_dir=None, rater=None, **overrides):
    from rlxf.algos.ppo import PPOSettings
    from rlxf.selfplay import SelfPlaySettings, SelfPlayTrainer

    torch.set_num_threads(1)
    model, tokenizer = two_bot_model()
    ppo = PPOSettings(batch_size=2, ppo_epochs=2, max_new_tokens=4, learning_rate=1e-2, progress_bar=False)
    settings = dict(rounds=3, debates_per_round=2, max_exchanges=1, rating_max_new_tokens=3, progress_bar=False,
                    output_dir=None if output_dir is None else str(output_dir))
    return SelfPlayTrainer(model, tokenizer, ppo, SelfPlaySettings(**{**settings, **overrides}), names=("dem", "rep"),
                           rater=rater)


def without_times(history):
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in history]


def test_selfplay_round_updates_each_bot_only_through_its_own_step():
    trainer = selfplay_trainer()
    _, turns = trainer.play_round()
    assert [len(turns[name]) for name in ("dem", "rep")] == [2, 2]  # 2 debates x 1 exchange each
    for acting, other in (("dem", "rep"), ("rep", "dem")):
        before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        queries, responses, rewards = zip(*turns[acting], strict=True)
        trainer.trainers[acting].step(list(queries), list(responses), list(rewards))
        changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())}
        assert changed and all(f".{acting}." in n for n in changed), sorted(changed)[:4]
        assert not any(f".{other}" in n or "_ref." in n for n in changed)  # other bot and both references frozen


def test_selfplay_trainer_writes_transcripts_history_and_snapshots(tmp_path):
    from rlxf.selfplay import list_snapshots, read_history

    trainer = selfplay_trainer(tmp_path, snapshot_every=2)
    history = trainer.train()
    assert [row["round"] for row in history] == [1, 2, 3] and read_history(tmp_path) == history
    for row in history:
        assert row["turns"] == 4 and 0.0 <= row["parse_rate"] <= 1.0
        assert {"dem/rating_received", "rep/rating_received", "dem/objective/kl", "rep/env/reward_mean"} <= set(row)
        assert row["dem/rating_received"] == pytest.approx(row["rep/rating_given"])  # rep rates dem's replies
    transcripts = read_transcripts(tmp_path / "transcripts.jsonl")
    assert len(transcripts) == 6 and [t[0]["round"] for t in transcripts] == [1, 1, 2, 2, 3, 3]
    assert [t[0]["speaker"] for t in transcripts] == ["dem", "rep"] * 3  # the bots take turns opening
    assert list(list_snapshots(tmp_path)) == [0, 2, 3]  # before training, every 2 rounds, the end
    assert (list_snapshots(tmp_path)[3] / "dem" / "adapter_model.safetensors").is_file()
    assert trainer.trainers["dem"].step_count == trainer.trainers["rep"].step_count == 3


def test_selfplay_resume_gives_the_same_run(tmp_path):
    straight = selfplay_trainer(tmp_path / "straight")
    expected = straight.train()
    first = selfplay_trainer(tmp_path / "resumed")
    first.train(rounds=2)
    with (tmp_path / "resumed" / "transcripts.jsonl").open("a") as handle:
        handle.write('{"a line of a round after the checkpoint": 1}\n')  # an interrupted round's leftovers
    second = selfplay_trainer(tmp_path / "resumed")
    resumed = second.train(resume=True)
    assert without_times(resumed) == without_times(expected)
    assert (tmp_path / "resumed" / "transcripts.jsonl").read_text() == (
        tmp_path / "straight" / "transcripts.jsonl").read_text()
    for name, param in straight.model.named_parameters():
        assert torch.equal(param, dict(second.model.named_parameters())[name]), name


def test_selfplay_neutral_streak_stops_training():
    trainer = selfplay_trainer(rater=fixed_rater({"dem": "50", "rep": "fifty"}), stop_streak=6, rounds=5)
    history = trainer.train()
    assert len(history) == 2 and trainer.stopped_at == 2  # 4 neutral ratings per round: the 6th comes in round 2
    assert history[-1]["longest_neutral_streak"] == 8 and history[-1]["neutral_frac"] == 1.0


def test_selfplay_rejects_bad_settings():
    from rlxf.algos.ppo import PPOSettings
    from rlxf.selfplay import SelfPlaySettings, SelfPlayTrainer

    with pytest.raises(ValueError, match="debates_per_round must be an int >= 1"):
        SelfPlaySettings(debates_per_round=0)
    with pytest.raises(ValueError, match="stop_streak must be None or an int >= 1"):
        SelfPlaySettings(stop_streak=0)
    model, tokenizer = two_bot_model()
    with pytest.raises(ValueError, match=r"lacks the adapter\(s\) \['green'\]"):
        SelfPlayTrainer(model, tokenizer, PPOSettings(), names=("dem", "green"))
    with pytest.raises(FileNotFoundError, match="no checkpoint-<round> directory"):
        selfplay_trainer("/nonexistent/rlxf-selfplay").load_checkpoint()


# ------------------------------------------------------------------------------------------------ memory


def test_peak_memory_sees_an_allocation():
    from rlxf.infra.memory import peak_memory

    small = peak_memory("rlxf.infra.memory:hold", {"megabytes": 0})
    large = peak_memory("rlxf.infra.memory:hold", {"megabytes": 300})
    assert large["result"] == 300 and small["measure"] == large["measure"]
    if large["measure"] in ("VmHWM", "ru_maxrss"):  # pytest's own big process must not leak into the child's peak
        assert 250 * 2**20 < large["peak_bytes"] - small["peak_bytes"] < 400 * 2**20
    with pytest.raises(RuntimeError, match="(?s)hold.*failed.*megabytes must be an int"):
        peak_memory("rlxf.infra.memory:hold", {"megabytes": -1})
    with pytest.raises(ValueError, match="module:function"):
        peak_memory("rlxf.infra.memory.hold")


def test_memory_probe_runs_both_shapes(tmp_path):
    from rlxf.algos.ppo import PPOSettings
    from rlxf.infra.memory import peak_memory
    from rlxf.selfplay import SelfPlaySettings, probe_arguments

    model, _ = two_bot_model()
    dirs = [tmp_path / name for name in ("dem", "rep")]
    for name, directory in zip(("dem", "rep"), dirs, strict=True):
        save_adapter(model, name, directory)
    # the run's own settings, output_dir and tracker included: the probe writes nothing and reports nowhere
    ppo = PPOSettings(max_new_tokens=4, ppo_epochs=1, batch_size=2, dtype="fp32", output_dir=str(tmp_path / "run"))
    selfplay = SelfPlaySettings(rounds=5, debates_per_round=2, max_exchanges=1, rating_max_new_tokens=3,
                                output_dir=str(tmp_path / "run"))
    settings = probe_arguments("tiny-llama", dirs, ppo, selfplay, names=("dem", "rep"))
    two = peak_memory("rlxf.selfplay:memory_probe", {"bots": 2, **settings})
    one = peak_memory("rlxf.selfplay:memory_probe", {"bots": 1, **settings})
    assert two["result"] == {"bots": 2, "turns": 4, "steps": 2} and one["result"] == {"bots": 1, "turns": 2, "steps": 1}
    assert two["measure"] == one["measure"] and one["peak_bytes"] > one["baseline_bytes"] > 0
    # The study's memory target: two bots on one base cost at most 1.3x one bot (notebook 05 asserts it at its size).
    assert two["peak_bytes"] / one["peak_bytes"] <= 1.3
    assert not (tmp_path / "run").exists()


def test_probe_arguments_carry_every_setting_and_rebuild_them():
    from rlxf.algos.ppo import PPOSettings
    from rlxf.selfplay import SelfPlaySettings, probe_arguments
    from rlxf.selfplay.probe import _settings

    ppo = PPOSettings(dtype="bf16", lora_target_modules=("q_proj", "v_proj"), init_kl_coef=0.3, seed=7)
    selfplay = SelfPlaySettings(leading_prompts=True, stop_streak=4, seed=7, output_dir="somewhere")
    arguments = probe_arguments("tiny-llama", ["a", "b"], ppo, selfplay)
    assert json.loads(json.dumps(arguments)) == arguments  # plain JSON: it travels to a fresh process
    assert arguments["ppo"]["dtype"] == "bf16" and arguments["selfplay"]["leading_prompts"] is True
    rebuilt = _settings(PPOSettings, arguments["ppo"], "ppo")
    assert rebuilt == ppo  # the list of target modules is a tuple again
    probe = _settings(SelfPlaySettings, arguments["selfplay"], "selfplay", rounds=1, output_dir=None)
    assert probe.rounds == 1 and probe.output_dir is None and probe.stop_streak == 4
    with pytest.raises(ValueError, match=r"memory_probe\(ppo=...\): \['learning_rates'\] are not fields of PPO"):
        _settings(PPOSettings, {"learning_rates": 1e-3}, "ppo")
    with pytest.raises(ValueError, match="needs a PPOSettings and a SelfPlaySettings, got dict"):
        probe_arguments("tiny-llama", ["a", "b"], {"dtype": "fp32"}, selfplay)


# ------------------------------------------------------------------------------------------------ further seeds


def test_seed_runs_start_from_the_sft_adapters_and_resume(tmp_path):
    from safetensors.torch import load_file

    from rlxf.algos.ppo import PPOSettings
    from rlxf.lm.adapters import load_adapter
    from rlxf.selfplay import SelfPlaySettings, adapter_hashes, list_snapshots, seed_run_dir, train_seed_runs

    torch.set_num_threads(1)
    trained, _ = two_bot_model()
    adapter_dirs = {name: tmp_path / "sft" / name for name in ("dem", "rep")}
    for name, directory in adapter_dirs.items():
        save_adapter(trained, name, directory)
    model, tokenizer = load_causal_lm("tiny-llama")
    for name, directory in adapter_dirs.items():
        model = load_adapter(model, directory, name)
    sft_hashes = adapter_hashes(model, ["dem", "rep"])
    ppo = PPOSettings(batch_size=2, ppo_epochs=1, max_new_tokens=4, learning_rate=1e-2, progress_bar=False)
    settings = SelfPlaySettings(rounds=1, debates_per_round=2, max_exchanges=1, rating_max_new_tokens=3,
                                progress_bar=False, output_dir=str(tmp_path / "selfplay"))
    runs = train_seed_runs(model, tokenizer, ppo, settings, [5, 6], adapter_dirs, sft_hashes=sft_hashes)
    assert list(runs) == [5, 6] and [runs[s]["directory"] for s in (5, 6)] == [
        seed_run_dir(tmp_path / "selfplay", s) for s in (5, 6)]
    assert adapter_hashes(model, ["dem", "rep"]) != sft_hashes  # the runs trained the adapters in place
    for seed, run in runs.items():
        assert len(run["history"]) == 1 and run["stopped_at"] is None
        assert (run["directory"] / "history.jsonl").is_file() and list(list_snapshots(run["directory"])) == [0, 1]
        for name, directory in adapter_dirs.items():  # each run started from the SFT weights, the second one too
            start = load_file(list_snapshots(run["directory"])[0] / name / "adapter_model.safetensors")
            sft = load_file(directory / "adapter_model.safetensors")
            assert start.keys() == sft.keys() and all(torch.equal(start[k], sft[k]) for k in sft), (seed, name)
    again = train_seed_runs(model, tokenizer, ppo, settings, [5, 6], adapter_dirs, sft_hashes=sft_hashes)
    assert [without_times(again[s]["history"]) for s in (5, 6)] == [without_times(runs[s]["history"]) for s in (5, 6)]
    wrong = {**sft_hashes, "rep": "0" * 16}
    with pytest.raises(RuntimeError, match=r"seed 7: .* the weights of \['rep'\] differ from the SFT weights"):
        train_seed_runs(model, tokenizer, ppo, settings, [7], adapter_dirs, sft_hashes=wrong)
    with pytest.raises(ValueError, match="output_dir is None"):
        train_seed_runs(model, tokenizer, ppo, SelfPlaySettings(), [7], adapter_dirs, sft_hashes=sft_hashes)


# ------------------------------------------------------------------------------------------------ score raters


def test_sigmoid_rating_is_50_at_the_centre_monotone_and_clamped():
    from rlxf.selfplay.score_raters import sigmoid_rating

    assert sigmoid_rating(0.3, 0.3, 0.1) == pytest.approx(50.0)
    assert sigmoid_rating(0.4, 0.3, 0.1) == pytest.approx(100 / (1 + math.exp(-1)))  # one scale above the centre
    values = [sigmoid_rating(s, 0.0, 0.5) for s in (-3.0, -1.0, -0.1, 0.0, 0.1, 1.0, 3.0)]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert sigmoid_rating(-1e6, 0.0, 1.0) == 1.0 and sigmoid_rating(1e6, 0.0, 1.0) == 100.0  # no overflow, clamped
    with pytest.raises(ValueError, match="scale must be a finite number > 0, got 0"):
        sigmoid_rating(0.0, 0.0, 0.0)


def likelihood_rater(**kwargs):
    from rlxf.selfplay.score_raters import LikelihoodRatioRater

    torch.set_num_threads(1)
    model, tokenizer = two_bot_model()
    return LikelihoodRatioRater(model, tokenizer, ("dem", "rep"), **kwargs)


def test_likelihood_score_is_own_minus_other_mean_token_logprob_batched_as_alone():
    rater = likelihood_rater(batch_size=4, dtype="fp32")  # the hand-made forward below runs in fp32
    texts = ["Lower taxes for working families.", "Healthcare is a right", "Secure the border now, please, today."]
    batched = rater.scores(texts)
    assert batched["dem"] == pytest.approx(-batched["rep"])  # reference "other": the two bots' scores mirror
    for i, text in enumerate(texts):
        ids = rater.tokenizer(text, add_special_tokens=False)["input_ids"]
        full = torch.tensor([[rater.tokenizer.bos_token_id, *ids]])
        means = {}
        for adapter in ("dem", "rep"):
            with using_adapter(rater.model, adapter), torch.no_grad():
                logits = rater.model(input_ids=full).logits.float()
            logp = torch.log_softmax(logits[0, :-1], -1).gather(-1, full[0, 1:, None]).squeeze(-1)
            means[adapter] = float(logp.mean())
        # batched with padding, the same as each text alone
        assert batched["dem"][i] == pytest.approx(means["dem"] - means["rep"], abs=1e-4), text
    assert abs(batched["dem"]).max() > 1e-3  # the random adapters differ: the test can tell own from other


def test_likelihood_mix_reference_is_log_of_the_average_probability():
    rater = likelihood_rater(reference="mix")
    text = "Raise the minimum wage."
    logp = rater.logprobs([text])
    own, other = logp["dem"][0], logp["rep"][0]
    expected = float(np.mean(own - np.log((np.exp(own) + np.exp(other)) / 2)))
    assert rater.scores([text])["dem"][0] == pytest.approx(expected, rel=1e-5)


def test_likelihood_rating_is_50_at_the_centre_and_rises_with_the_score():
    rater = likelihood_rater()
    text = "We must protect the second amendment."
    s = rater.scores([text])
    rater._set_calibration({"dem": float(s["dem"][0]), "rep": float(s["rep"][0])}, {"dem": 0.05, "rep": 0.05})
    rating = rater.rate(text, "dem")
    assert rating.value == pytest.approx(50.0) and rating.path == "likelihood" and rating.reply == ""
    rater._set_calibration({"dem": float(s["dem"][0]) - 0.05, "rep": float(s["rep"][0]) + 0.05},
                           {"dem": 0.05, "rep": 0.05})
    assert rater.rate(text, "dem").value == pytest.approx(100 / (1 + math.exp(-1)))  # s one scale above centre
    assert rater.rate(text, "rep").value == pytest.approx(100 / (1 + math.exp(1)))
    assert rater.stats == {PARSED: 0, FALLBACK: 0, "likelihood": 3, "total": 3, "parse_rate": pytest.approx(math.nan,
                                                                                                           nan_ok=True)}
    rater.reset_stats()
    assert rater.stats["likelihood"] == 0
    rater.restore_stats({"likelihood": 7, PARSED: 0, FALLBACK: 0})
    assert rater.stats["total"] == 7
    with pytest.raises(ValueError, match="no 'likelihood' count"):
        rater.restore_stats({PARSED: 3, FALLBACK: 1})


def test_likelihood_fit_sets_the_midpoint_and_the_pooled_std(monkeypatch):
    rater = likelihood_rater()
    own_dem, own_rep = np.array([0.3, 0.5, 0.4]), np.array([-0.2, 0.0, 0.1, -0.3])  # dem's scores of each party
    monkeypatch.setattr(rater, "scores", lambda texts: {"dem": np.r_[own_dem, own_rep],
                                                        "rep": -np.r_[own_dem, own_rep]})
    report = rater.fit({"dem": ["a", "b", "c"], "rep": ["d", "e", "f", "g"]})
    pooled = math.sqrt((2 * own_dem.var(ddof=1) + 3 * own_rep.var(ddof=1)) / 5)
    assert rater.centre["dem"] == pytest.approx((0.4 + -0.1) / 2) and rater.scale["dem"] == pytest.approx(pooled)
    assert rater.centre["rep"] == pytest.approx(-0.15) and rater.scale["rep"] == pytest.approx(pooled)
    assert report["dem"]["mean_own"] == pytest.approx(0.4) and report["rep"]["mean_own"] == pytest.approx(0.1)
    assert report["dem"]["n_own"] == 3 and report["rep"]["n_own"] == 4


def test_likelihood_fit_on_real_scores_puts_the_party_means_either_side_of_50():
    rater = likelihood_rater()
    texts = {"dem": ["Healthcare for all.", "Protect voting rights.", "Climate action now."],
             "rep": ["Cut taxes.", "Secure the border.", "Back the blue, support police."]}
    report = rater.fit(texts)
    for adapter, other in (("dem", "rep"), ("rep", "dem")):
        ratings = {party: np.mean(rater.ratings(texts[party], adapter)) for party in texts}
        above = report[adapter]["mean_own"] > report[adapter]["mean_other"]
        assert (ratings[adapter] > 50) == above and (ratings[other] < 50) == above


def test_likelihood_rater_errors_are_clear():
    from rlxf.selfplay.score_raters import LikelihoodRatioRater

    rater = likelihood_rater()
    with pytest.raises(ValueError, match="call fit"):
        rater.rate("some text", "dem")
    rater._set_calibration({"dem": 0.0, "rep": 0.0}, {"dem": 1.0, "rep": 1.0})
    with pytest.raises(ValueError, match=r"the text to rate is empty \('  '\)"):
        rater.rate("  ", "dem")
    with pytest.raises(ValueError, match=r"adapter 'green' is not one of this rater's bots \['dem', 'rep'\]"):
        rater.rate("some text", "green")
    with pytest.raises(ValueError, match="adapter None is not one"):
        rater.rate("some text")
    with pytest.raises(ValueError, match="reference must be one of"):
        LikelihoodRatioRater(rater.model, rater.tokenizer, ("dem", "rep"), reference="base")
    with pytest.raises(ValueError, match=r"lacks the adapter\(s\) \['green'\]"):
        LikelihoodRatioRater(rater.model, rater.tokenizer, ("dem", "green"))
    with pytest.raises(ValueError, match=r"scale\['rep'\] must be a finite number > 0, got 0"):
        LikelihoodRatioRater(rater.model, rater.tokenizer, ("dem", "rep"), centre={"dem": 0, "rep": 0},
                             scale={"dem": 1, "rep": 0})
    with pytest.raises(ValueError, match="at least 2 texts of 'rep'"):
        rater.fit({"dem": ["a", "b"], "rep": ["c"]})
    with pytest.raises(ValueError, match=r"keyed by \['dem', 'rep'\], got \['dem'\]"):
        rater.fit({"dem": ["a", "b"]})
    with pytest.raises(ValueError, match=r"empty_rating must be None or a number in \[1, 100\], got 0"):
        likelihood_rater(empty_rating=0)
    lenient = likelihood_rater(empty_rating=1.0, centre={"dem": 0.0, "rep": 0.0}, scale={"dem": 1.0, "rep": 1.0})
    assert lenient.rate("", "dem").value == 1.0 and lenient.stats["likelihood"] == 1


def test_likelihood_rater_drives_the_environment_and_the_trainer_checkpoint(tmp_path):
    from rlxf.algos.ppo import PPOSettings
    from rlxf.selfplay import SelfPlaySettings, SelfPlayTrainer

    rater = likelihood_rater(empty_rating=1.0, centre={"dem": 0.0, "rep": 0.0}, scale={"dem": 0.05, "rep": 0.05})
    bots = [Bot(name, lambda prompt, name=name: f"{name} says taxes are {len(prompt)}", adapter=name)
            for name in ("dem", "rep")]
    env = SelfPlayEnv(bots, rater, max_exchanges=2)
    env.reset(seed=0)
    _, _, _, _, info = env.step("Cut the deficit.")
    assert info["transcript"][0]["parse_path"] == "likelihood" and 1.0 <= info["rating"] <= 100.0
    ppo = PPOSettings(batch_size=2, ppo_epochs=1, max_new_tokens=4, progress_bar=False)
    settings = SelfPlaySettings(rounds=1, debates_per_round=2, max_exchanges=1, progress_bar=False,
                                output_dir=str(tmp_path))
    trainer = SelfPlayTrainer(rater.model, rater.tokenizer, ppo, settings, names=("dem", "rep"), rater=rater)
    assert trainer.fingerprint["rater"]["kind"] == "likelihood"
    history = trainer.train()
    assert history[0]["fallbacks"] == 0 and math.isnan(history[0]["parse_rate"])
    state = json.loads(next(tmp_path.glob("checkpoint-*/selfplay_state.json")).read_text())
    assert state["rater_counts"]["likelihood"] == rater.stats["likelihood"] > 0
    # the same output_dir with the generated rater: "auto" starts a new run instead of continuing this one
    generated = SelfPlayTrainer(rater.model, rater.tokenizer, ppo, settings, names=("dem", "rep"),
                                rater=fixed_rater({"dem": "60", "rep": "40"}))
    assert generated.fingerprint["rater"] == {"kind": "generated"}
    with pytest.warns(UserWarning, match="belongs to another self-play run"):
        generated.train(resume="auto")


def test_classifier_rater_rates_100_times_the_probability_of_its_party():
    from rlxf.lm.models import load_classifier
    from rlxf.selfplay.score_raters import ClassifierRater

    torch.set_num_threads(1)
    model, tokenizer = load_classifier("tiny-bert", num_labels=2, device="cpu")
    rater = ClassifierRater(model, tokenizer, {"dem": 0, "rep": 1})
    texts = ["Cut taxes.", "Healthcare for all."]
    p_dem, p_rep = rater.probabilities(texts, "dem"), rater.probabilities(texts, "rep")
    assert p_dem + p_rep == pytest.approx(np.ones(2))
    assert rater.rate(texts[0], "dem").value == pytest.approx(max(1.0, 100 * p_dem[0]))
    assert rater.rate(texts[0], "rep").path == "classifier" and rater.stats["total"] == 2
    with pytest.raises(ValueError, match="adapter 'green' is not one"):
        rater.rate("text", "green")


# ------------------------------------------------------------------------------------------------ rater AUC


def test_auc_ci_on_a_hand_made_example():
    from rlxf.analysis.stats import auc_ci, rater_auc

    # own party's texts score 0.35 and 0.8, the other's 0.1 and 0.4: 3 of the 4 pairs are ranked right
    assert auc_ci([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])["auc"] == pytest.approx(0.75)
    assert auc_ci([1.0, 1.0, 0.0, 1.0], [1, 0, 0, 1])["auc"] == pytest.approx(0.75)  # a tie counts half: (1+.5+1+.5)/4
    assert auc_ci([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1])["auc"] == 0.0  # ranked the wrong way round
    separated = auc_ci([3, 4, 1, 2], [1, 1, 0, 0])
    assert separated == {"auc": 1.0, "low": 1.0, "high": 1.0, "n_pos": 2, "n_neg": 2}  # degenerate bootstrap
    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0, 1, 60), rng.normal(1, 1, 60)]
    labels = np.r_[np.zeros(60), np.ones(60)]
    result = auc_ci(scores, labels)
    pairs = np.mean(scores[labels == 1][:, None] > scores[labels == 0][None, :])
    assert result["auc"] == pytest.approx(pairs) and result["low"] < result["auc"] < result["high"]
    assert 0.1 < result["high"] - result["low"] < 0.4
    assert rater_auc(lambda texts: [len(t) for t in texts], ["a", "bb", "ccc", "dddd"], [0, 0, 1, 1])["auc"] == 1.0
    with pytest.raises(ValueError, match="at least 2 items of each class, got 3 with label 1 and 1 with label 0"):
        auc_ci([1, 2, 3, 4], [1, 1, 1, 0])
    with pytest.raises(ValueError, match=r"labels must be 0 or 1, got the values \[0, 2\]"):
        auc_ci([1, 2, 3, 4], [0, 2, 0, 2])
    with pytest.raises(ValueError, match="score_fn returned 1 scores for 2 texts"):
        rater_auc(lambda texts: [0.5], ["a", "b"], [0, 1])


def test_choose_rater_auto_takes_the_best_rater_with_signal_else_the_generated_one():
    from rlxf.selfplay.score_raters import choose_rater

    aucs = {"generated": {"d": 0.52, "r": 0.49}, "likelihood": {"d": 0.74, "r": 0.71},
            "classifier": {"d": 0.9, "r": 0.65}}
    assert choose_rater("auto", aucs)[0] == "likelihood"  # the classifier fails for one bot
    assert choose_rater("auto", {**aucs, "classifier": {"d": 0.9, "r": 0.8}})[0] == "classifier"
    assert choose_rater("auto", {"generated": aucs["generated"], "likelihood": {"d": 0.69, "r": 0.9}})[0] == "generated"
    assert choose_rater("auto", aucs, endpoint=True)[0] == "generated"
    assert choose_rater("auto", aucs, base_parameters=1_700_000_000)[0] == "generated"
    assert choose_rater("classifier", aucs) == ("classifier", "asked for")
    with pytest.raises(ValueError, match="rater='classifier' was asked for but is not available"):
        choose_rater("classifier", {"generated": aucs["generated"]})
    with pytest.raises(ValueError, match="rater must be one of"):
        choose_rater("judge", aucs)


def test_run_seeds_keep_the_runs_debate_seeds_apart():
    from rlxf.selfplay import run_seeds
    from rlxf.selfplay.trainer import SEED_STRIDE

    assert run_seeds(7, 3, 16) == [7, 7 + SEED_STRIDE, 7 + 2 * SEED_STRIDE]
    assert run_seeds(0, 1, SEED_STRIDE) == [0]
    with pytest.raises(ValueError, match="n must be >= 1"):
        run_seeds(0, 0, 16)
    with pytest.raises(ValueError, match="reuse the debate seeds"):
        run_seeds(0, 2, SEED_STRIDE + 1)


def test_run_convergence_reads_one_run_by_both_criteria(tmp_path):
    from rlxf.analysis.stats import least_squares_slope
    from rlxf.selfplay import list_snapshots, read_history
    from rlxf.selfplay.convergence import neutral_streak, run_convergence, snapshot_distances

    trainer = selfplay_trainer(tmp_path, snapshot_every=3)  # snapshots of rounds 0 and 3 only
    trainer.train()
    result = run_convergence(trainer.model, tmp_path, ["dem", "rep"], streak_n=2, low=1, high=100)
    history = read_history(tmp_path)
    assert result["rounds"] == 3 and result["ratings"] == 12  # 3 rounds x 2 debates x 1 exchange x 2 bots
    assert result["neutral streak reached"] and result["longest neutral run"] == 12  # every rating is in [1, 100]
    for name in ("dem", "rep"):
        expected = least_squares_slope([1, 2, 3], [row[f"{name}/rating_received"] for row in history])
        assert result["rating slope per round"][name] == pytest.approx(expected)
    totals = snapshot_distances(trainer.model, list_snapshots(tmp_path), ["dem", "rep"])
    relative = totals[totals["layer"] == "total"].set_index("round")["relative"]
    assert result["snapshot rounds"] == [0, 3]
    assert result["ΔW relative change"] == pytest.approx(relative[3] - relative[0])
    assert result["ΔW relative first"] == pytest.approx(relative[0])
    strict = run_convergence(trainer.model, tmp_path, ["dem", "rep"], streak_n=13, low=1, high=100)
    assert not strict["neutral streak reached"]
    ratings = [row["rating_by_other"] for t in read_transcripts(tmp_path / "transcripts.jsonl") for row in t]
    assert strict["longest neutral run"] == neutral_streak(ratings, 1, 100, 13)["longest"]
    no_snapshots = tmp_path / "no-snapshots"
    no_snapshots.mkdir()
    for name in ("history.jsonl", "transcripts.jsonl"):
        (no_snapshots / name).write_text((tmp_path / name).read_text())
    with pytest.raises(ValueError, match="0 adapter snapshot"):
        run_convergence(trainer.model, no_snapshots, ["dem", "rep"], streak_n=2)
