"""The judge-evaluator reward: verdict parsing, thresholds, a local judge, and an HTTP judge against a fake
OpenAI-compatible server on 127.0.0.1 (never the internet) that can answer, time out, fail or echo the key."""

from __future__ import annotations

import json
import logging
import time
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest
from trl.trainer.utils import get_callable_name

from rlxf.lm.models import load_causal_lm, load_classifier
from rlxf.rewards.judge import (
    JUDGE_LOG_KEYS,
    Evaluator,
    EvaluatorSettings,
    HTTPJudge,
    JudgeError,
    JudgeReply,
    LocalJudge,
    VerdictSentiment,
    parse_verdict,
    ranking_accuracy,
    read_judge_log,
    redact_secret,
    verdict_score,
)
from tests.stubs import local_server

SECRET = "sk-test-0123456789-never-print-me"
CRITERIA = {
    "socrates": "Does this reply sound like Socrates?",
    "concise": "Is it concise?",
    "question": "Does it ask a question back?",
}
REPLIES = ["What is justice, my friend?", "Justice is the advantage of the stronger, obviously and at length.", ""]


def keyword_verdicts(texts: list[str]) -> list[float]:
    """A transparent stand-in for the sentiment model, so that the expected scores can be worked out by hand."""
    return [0.9 if t.lower().startswith("yes") else 0.1 if t.lower().startswith("no") else 0.5 for t in texts]


def scripted_answer(user_message: str) -> str:
    """What the fake judge says: yes/no from the reply and criterion, 'unsure' (P = 0.5 -> 0) for Socrates."""
    reply = user_message.split('"""')[1].strip()
    if "Socrates" in user_message:
        return "Hard to say.\nVerdict: Unsure."
    if "concise" in user_message:
        return "Reasoning: short.\n**Verdict:** Yes, it is." if len(reply) < 40 else "Too long.\nVerdict: No."
    return "It asks.\nVerdict: Yes." if reply.endswith("?") else "No question.\nVerdict: No, it does not."


class FakeOpenAI(BaseHTTPRequestHandler):
    """POST /v1/chat/completions; behaviour by `server.mode`: ok, no_verdict, error500, error400, slow, garbage."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if server.mode in ("error500", "error400"):
            # A careless server that echoes the Authorization header: the client must redact it.
            self._send(500 if server.mode == "error500" else 400,
                       f"internal error for {self.headers.get('Authorization')}".encode())
            return
        if server.mode == "slow":
            time.sleep(1.0)
        if server.mode == "garbage":
            self._send(200, b"<html>not json</html>")
            return
        if server.mode == "no_verdict":
            content = "I cannot decide."
        else:
            content = scripted_answer(body["messages"][-1]["content"])
        payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
        self._send(200, json.dumps(payload).encode())

    def _send(self, status: int, data: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("RLXF_JUDGE_API_KEY", SECRET)
    with local_server(FakeOpenAI, mode="ok", requests=[]) as httpd:
        yield httpd


def http_evaluator(server, *, timeout_s=5.0, retries=0, on_error="fallback", **kwargs) -> Evaluator:
    judge = HTTPJudge(server.url, "judge-model", timeout_s=timeout_s, retries=retries, backoff_s=0.01)
    return Evaluator(judge, keyword_verdicts, CRITERIA, settings=EvaluatorSettings(on_error=on_error), **kwargs)


def assert_no_secret(*texts) -> None:
    for text in texts:
        assert SECRET not in str(text)


# ------------------------------------------------------------------------------------------------ pieces


def test_parse_verdict():
    assert parse_verdict("He asks many questions.\nVerdict: Yes, he does.") == "Yes, he does."
    assert parse_verdict("**Verdict:** No") == "No"
    assert parse_verdict("verdict - maybe") == "maybe"
    assert parse_verdict("Verdict: first\nthen more thought\nVerdict: second") == "second"
    assert parse_verdict("I think it does.") is None
    assert parse_verdict("Verdict:   ") is None
    with pytest.raises(TypeError):
        parse_verdict(None)


def test_verdict_score_thresholds():
    assert [verdict_score(p) for p in (0.61, 0.6, 0.5, 0.4, 0.39)] == [1, 0, 0, 0, -1]
    assert verdict_score(0.75, positive_threshold=0.8, negative_threshold=0.2) == 0
    with pytest.raises(ValueError, match="negative_threshold"):
        EvaluatorSettings(positive_threshold=0.3, negative_threshold=0.7)
    with pytest.raises(ValueError, match="on_error"):
        EvaluatorSettings(on_error="ignore")


def test_graded_scoring_and_the_share_of_plus_one_per_batch(tmp_path):
    class Judge:
        def generate(self, messages):
            return [JudgeReply(text=f"Verdict: {m.split('REPLY ')[1].split()[0]}") for m in messages]

    probability = {"high": 0.9, "mid": 0.65, "low": 0.2}
    template = "REPLY {reply} CRITERION {criterion}"
    reader = lambda verdicts: [probability[v] for v in verdicts]  # noqa: E731
    sign = Evaluator(Judge(), reader, ["q"], settings=EvaluatorSettings(template=template))
    graded = Evaluator(Judge(), reader, ["q"], settings=EvaluatorSettings(template=template, scoring="graded"),
                       log_dir=tmp_path / "run")
    replies = ["high", "mid", "low"]
    assert sign(["p"] * 3, replies) == [1.0, 1.0, -1.0]
    assert graded(["p"] * 3, replies) == pytest.approx([0.8, 0.3, -0.6])  # 2 P(positive) - 1
    first = graded.pop_stats()
    assert first == {"calls": 3, "share_plus_one": pytest.approx(2 / 3), "mean_p_positive": pytest.approx(1.75 / 3),
                     "fallbacks": 0}
    graded(["p"] * 2, ["high", "mid"])
    graded(["p"], ["low"])
    # two batches since the last pop: pooled over their 3 calls, then forgotten
    assert graded.pop_stats() == {"calls": 3, "share_plus_one": pytest.approx(2 / 3),
                                  "mean_p_positive": pytest.approx(1.75 / 3), "fallbacks": 0}
    empty = graded.pop_stats()
    assert empty["calls"] == 0 and np.isnan(empty["share_plus_one"]) and np.isnan(empty["mean_p_positive"])
    # the log has one row per scored batch (a PPO step), with the keys notebook 04's smoke run is checked for
    log = read_judge_log(tmp_path / "run")
    assert [row["calls"] for row in log] == [3, 2, 1]
    assert [row["share_plus_one"] for row in log] == pytest.approx([2 / 3, 1.0, 0.0])
    assert all(list(row) == list(JUDGE_LOG_KEYS) for row in log)
    assert read_judge_log(tmp_path / "no-run") == [] and sign.log_path is None
    assert graded.stats["scores"] == {"+1": 4, "-1": 2}  # counted by the study's thresholds either way
    graded(["p"], ["high"])
    graded.reset_stats()
    assert graded.pop_stats()["calls"] == 0
    with pytest.raises(ValueError, match="scoring must be 'sign' or 'graded'"):
        EvaluatorSettings(scoring="probability")


def test_pop_stats_counts_fallbacks_and_a_bad_log_is_named(tmp_path):
    class Judge:
        def generate(self, messages):
            return [JudgeReply(text="Verdict: yes") if "good" in m else JudgeReply(None, "timeout", "slow")
                    for m in messages]

    evaluator = Evaluator(Judge(), keyword_verdicts, ["q"], log_dir=tmp_path)
    assert list(evaluator(["p"] * 3, ["good", "bad", "good"])) == [1.0, 0.0, 1.0]
    assert evaluator.pop_stats() == {"calls": 3, "share_plus_one": 1.0, "mean_p_positive": pytest.approx(0.9),
                                     "fallbacks": 1}
    with (tmp_path / "judge_batches.jsonl").open("a") as log:
        log.write('{"calls": 1}\n')
    with pytest.raises(ValueError, match=r"judge_batches.jsonl:2: expected the keys"):
        read_judge_log(tmp_path)


def test_ranking_accuracy():
    assert ranking_accuracy([3, 1], [2, 2, 0]) == pytest.approx(4 / 6)
    assert ranking_accuracy([1.0], [1.0]) == 0.5
    assert ranking_accuracy([1, 1], [0, 0]) == 1.0
    with pytest.raises(ValueError, match="non-empty"):
        ranking_accuracy([], [1])
    with pytest.raises(ValueError, match="finite"):
        ranking_accuracy([float("nan")], [1])


# ------------------------------------------------------------------------------------------------ HTTP judge


def test_http_evaluator_scores_criteria(server):
    evaluator = http_evaluator(server)
    scores = evaluator(["Q"] * 3, REPLIES)
    # socrates: unsure -> 0 each; concise: yes, no, yes; question: yes, no, no.
    expected = np.array([[0, 1, 1], [0, -1, -1], [0, 1, -1]]).mean(axis=1)
    assert scores == pytest.approx(expected.tolist())
    assert all(-1.0 <= s <= 1.0 for s in scores)
    stats = evaluator.stats
    assert stats["calls"] == 9 and stats["verdicts"] == 9 and stats["fallback_total"] == 0
    assert stats["scores"] == {"0": 3, "+1": 3, "-1": 3}
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["body"]["model"] == "judge-model"
    assert [m["role"] for m in request["body"]["messages"]] == ["system", "user"]
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert evaluator.last_details[1]["verdict"] == "Yes, it is." and evaluator.last_details[1]["p_positive"] == 0.9


def test_http_evaluator_weights_min_determinism_batching_and_grpo_call(server):
    weighted = http_evaluator(server, weights=[0, 1, 3])
    scores = weighted(["Q"] * 3, REPLIES)
    assert scores == pytest.approx([1.0, -1.0, (1 - 3) / 4])
    assert scores == weighted(["Q"] * 3, REPLIES)
    assert [weighted(["Q"], [r])[0] for r in REPLIES] == scores
    assert http_evaluator(server, combine="min")(["Q"] * 3, REPLIES) == [0.0, -1.0, -1.0]
    grpo_style = weighted(prompts=["Q"] * 3, completions=REPLIES, completion_ids=[[1]] * 3, trainer_state=None,
                          log_extra=None, log_metric=None, persona=["socrates"] * 3)
    assert grpo_style == scores and get_callable_name(weighted) == "judge_evaluator"
    assert weighted([], []) == []


def test_no_verdict_falls_back_counted_or_raises(server, caplog):
    server.mode = "no_verdict"
    evaluator = http_evaluator(server)
    with caplog.at_level(logging.WARNING, logger="rlxf.rewards.judge"):
        scores = evaluator(["Q", "Q"], REPLIES[:2])
    assert scores == [0.0, 0.0]
    assert evaluator.stats["fallbacks"] == {"no_verdict": 6} and evaluator.stats["verdicts"] == 0
    assert "6 of 6 judge calls fell back" in caplog.text  # reported, not silent
    evaluator.reset_stats()
    assert evaluator.stats["calls"] == 0
    with pytest.raises(JudgeError, match=r"completions\[0\].*no_verdict") as error:
        http_evaluator(server, on_error="raise")(["Q"], REPLIES[:1])
    assert error.value.reason == "no_verdict"


def test_http_500_is_retried_counted_and_the_key_stays_secret(server):
    server.mode = "error500"
    evaluator = http_evaluator(server, retries=2)
    assert evaluator(["Q"], ["Hello?"]) == [0.0]
    assert len(server.requests) == 3 * 3  # three criteria, each tried 1 + 2 times
    assert evaluator.stats["fallbacks"] == {"http_500": 3}
    assert_no_secret(evaluator.stats, evaluator.last_details, repr(evaluator), repr(evaluator.judge))
    assert "***" in evaluator.last_details[0]["detail"]  # the server's echo of the key was redacted
    with pytest.raises(JudgeError, match="http_500") as error:
        http_evaluator(server, on_error="raise")(["Q"], ["Hello?"])
    assert_no_secret(str(error.value), repr(error.value))


def test_http_400_is_not_retried(server):
    server.mode = "error400"
    evaluator = http_evaluator(server, retries=3)
    evaluator(["Q"], ["Hello?"])
    assert len(server.requests) == 3 and evaluator.stats["fallbacks"] == {"http_400": 3}


def test_timeout_is_counted_or_raises(server):
    server.mode = "slow"
    evaluator = http_evaluator(server, timeout_s=0.2, retries=1)
    assert evaluator(["Q"], ["Hello?"]) == [0.0]
    assert evaluator.stats["fallbacks"] == {"timeout": 3} and len(server.requests) == 6
    with pytest.raises(JudgeError, match="timeout") as error:
        http_evaluator(server, timeout_s=0.2, on_error="raise")(["Q"], ["Hello?"])
    assert_no_secret(str(error.value))


def test_malformed_response_and_refused_connection(server):
    server.mode = "garbage"
    evaluator = http_evaluator(server)
    evaluator(["Q"], ["Hello?"])
    assert evaluator.stats["fallbacks"] == {"bad_response": 3}
    closed = HTTPJudge("http://127.0.0.1:9", "m", timeout_s=1.0, retries=0)  # port 9 (discard): nothing listens
    replies = closed.generate(["hi"])
    assert replies[0].text is None and replies[0].error == "connection"


def test_http_judge_url_and_repr(monkeypatch):
    monkeypatch.delenv("RLXF_JUDGE_API_KEY", raising=False)
    assert HTTPJudge("http://h:1", "m").url == "http://h:1/v1/chat/completions"
    assert HTTPJudge("http://h:1/v1/", "m").url == "http://h:1/v1/chat/completions"
    assert HTTPJudge("https://h/v1/chat/completions", "m").url == "https://h/v1/chat/completions"
    with pytest.raises(ValueError, match="http"):
        HTTPJudge("h:1", "m")
    with pytest.raises(ValueError, match="timeout_s"):
        HTTPJudge("http://h:1", "m", timeout_s=0)
    assert "RLXF_JUDGE_API_KEY" in repr(HTTPJudge("http://h:1", "m"))
    with pytest.raises(ValueError, match="credentials"):
        HTTPJudge("https://user:pw@h/v1", "m")
    # With a key, plain http:// only to a loopback host.
    monkeypatch.setenv("RLXF_JUDGE_API_KEY", SECRET)
    with pytest.raises(ValueError, match=r"https://.*RLXF_JUDGE_API_KEY"):
        HTTPJudge("http://judge.example:8000", "m")
    for url in ("https://judge.example", "http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000"):
        HTTPJudge(url, "m")


def test_redact_secret_everywhere_and_cut_short_echoes():
    assert redact_secret(f"a{SECRET}b{SECRET}", SECRET) == "a***b***"
    assert redact_secret("x" * 5000 + SECRET, SECRET) == "x" * 5000 + "***"
    assert redact_secret(f"Bearer {SECRET[:20]}", SECRET) == "Bearer ***"  # a server's cut-short echo
    assert redact_secret(f"{SECRET[5:]}!", SECRET) == "***!"
    assert redact_secret("nothing here", SECRET) == "nothing here" and redact_secret("text", None) == "text"


def test_evaluator_bad_input(server):
    evaluator = http_evaluator(server)
    with pytest.raises(TypeError, match=r"completions\[1\]"):
        evaluator(["Q", "Q"], ["fine", 3])
    with pytest.raises(ValueError, match="differ in length"):
        evaluator(["Q"], ["a", "b"])
    with pytest.raises(ValueError, match="weights"):
        http_evaluator(server, weights=[1.0])
    with pytest.raises(ValueError, match="combine"):
        http_evaluator(server, combine="max")
    with pytest.raises(ValueError, match="probabilities"):
        Evaluator(evaluator.judge, lambda texts: [2.0] * len(texts), CRITERIA)(["Q"], ["Hello?"])
    assert server.requests, "the judge was asked before the bad classifier output was caught"


# ------------------------------------------------------------------------------------------------ local judge


def test_local_judge_with_sentiment_verdicts():
    judge = LocalJudge.from_name("tiny-llama", device="cpu", max_new_tokens=8)
    sentiment_model, sentiment_tokenizer = load_classifier("tiny-bert", num_labels=2, device="cpu")
    verdicts = VerdictSentiment(sentiment_model, sentiment_tokenizer)
    p = verdicts(["Yes, it does.", "No."])
    assert p.shape == (2,) and ((p >= 0) & (p <= 1)).all()
    replies = judge.generate(["Is it concise?\nReply: yes"])
    assert isinstance(replies[0].text, str) and replies[0].error is None
    evaluator = Evaluator(judge, verdicts, list(CRITERIA.values())[:2])
    scores = evaluator(["Q"] * 3, REPLIES)
    assert len(scores) == 3 and all(-1.0 <= s <= 1.0 for s in scores)
    assert scores == evaluator(["Q"] * 3, REPLIES)  # greedy decoding: deterministic
    stats = evaluator.stats
    # A random tiny model rarely writes a verdict: whatever it did, every call is either judged or counted.
    assert stats["calls"] == 12 and stats["verdicts"] + stats["fallback_total"] == 12


class _ScriptedLM:
    """Stands in for rlxf.lm.generation.generate: the first call forgets the verdict, the follow-up writes it."""

    def __init__(self):
        self.prompts: list[list[str]] = []

    def __call__(self, model, tokenizer, prompts, **kwargs):
        self.prompts.append(list(prompts))
        if len(self.prompts) == 1:
            return ["It is short and clear.", "Reasoning that already ends well.\nVerdict: Yes, an excellent reply."]
        return [" Yes, this is a fine and concise reply.\nMore text the judge should not keep."]


def test_local_judge_forces_a_verdict_line_where_the_model_forgot_it(monkeypatch):
    import rlxf.rewards.judge as judge_module

    scripted = _ScriptedLM()
    monkeypatch.setattr(judge_module, "generate", scripted)
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    judge = LocalJudge(model, tokenizer, max_new_tokens=8, verdict_tokens=5)
    replies = judge.generate(["Is it concise?", "Is it kind?"])
    assert [judge_module.parse_verdict(r.text) for r in replies] == [
        "Yes, this is a fine and concise reply.", "Yes, an excellent reply."]
    assert replies[0].text.startswith("It is short and clear.\nVerdict:")
    assert judge.forced_verdicts == 1 and len(scripted.prompts) == 2
    # The follow-up continues the first prompt after the model's own reasoning.
    assert scripted.prompts[1][0].endswith("It is short and clear.\nVerdict:")
