"""Endpoint judges and raters for notebooks 04, 05 and 07, against a stub OpenAI-compatible server on 127.0.0.1:
`make_judge` (judge_url / judge_endpoint_model) and `GeneratedRater.from_endpoint` (rater_url /
rater_endpoint_model)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

import pytest

from rlxf.rewards.judge import HTTPJudge, make_judge
from rlxf.selfplay import Bot, TwoBotDebate
from rlxf.selfplay.generated_rater import RATER_SYSTEM_PROMPT, GeneratedRater
from rlxf.selfplay.rating_parse import PARSED
from tests.stubs import local_server

SECRET = "sk-endpoint-secret-123"


class StubChat(BaseHTTPRequestHandler):
    """POST /v1/chat/completions answered by `server.answer(last user message)`; `server.status` != 200: an error."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"headers": dict(self.headers), "body": body})
        if self.server.status != 200:
            data = b"busy"
        else:
            content = self.server.answer(body["messages"][-1]["content"])
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setenv("RLXF_JUDGE_API_KEY", SECRET)
    with local_server(StubChat, requests=[], status=200, answer=lambda message: "73") as httpd:
        yield httpd


def test_make_judge_builds_the_endpoint_judge_when_a_url_is_given(stub):
    judge = make_judge("tiny-llama", judge_url=stub.url, judge_endpoint_model="served-judge")
    assert isinstance(judge, HTTPJudge) and judge.url == f"{stub.url}/v1/chat/completions"
    stub.answer = lambda message: "Sound reasoning. Verdict: Yes, an excellent reply."
    assert judge.generate(["Is it good?"])[0].text.endswith("excellent reply.")
    assert stub.requests[-1]["body"]["model"] == "served-judge"
    assert stub.requests[-1]["headers"]["Authorization"] == f"Bearer {SECRET}"  # loopback: the key may travel
    assert SECRET not in repr(judge)
    with pytest.raises(ValueError, match="judge_endpoint_model is empty"):
        make_judge("tiny-llama", judge_url=stub.url)


def test_make_judge_refuses_the_key_over_plain_http_to_another_host(monkeypatch):
    monkeypatch.setenv("RLXF_JUDGE_API_KEY", SECRET)
    with pytest.raises(ValueError, match="only over https://"):
        make_judge("tiny-llama", judge_url="http://judge.example.org", judge_endpoint_model="m")


def test_endpoint_rater_parses_the_rating_from_the_reply(stub):
    rater = GeneratedRater.from_endpoint(stub.url, "served-rater", retries=0)
    rating = rater.rate("Taxes should be lower.", adapter="democrat")  # the adapter is ignored: one rater for both
    assert (rating.value, rating.path, rating.reply) == (73.0, PARSED, "73")
    body = stub.requests[-1]["body"]
    assert body["model"] == "served-rater" and body["max_tokens"] == 12
    assert body["messages"][0] == {"role": "system", "content": RATER_SYSTEM_PROMPT}
    assert "Taxes should be lower." in body["messages"][-1]["content"] and "1-100" in body["messages"][-1]["content"]
    assert rater.stats["parsed"] == 1 and "HTTPJudge(" in repr(rater) and SECRET not in repr(rater)


def test_endpoint_rater_has_no_logprob_fallback_and_names_failures(stub):
    rater = GeneratedRater.from_endpoint(stub.url, "served-rater", retries=0, timeout_s=5.0)
    stub.answer = lambda message: "I would rather not say."
    with pytest.raises(ValueError, match="no logprob fallback"):
        rater.rate("Some text.")
    stub.status = 503
    with pytest.raises(RuntimeError, match=r"rater endpoint failed \(http_503\)"):
        rater.rate("Some text.")
    with pytest.raises(ValueError, match="rater_endpoint_model is empty"):
        GeneratedRater.from_endpoint(stub.url, "")


def test_a_debate_runs_with_the_endpoint_rater(stub):
    stub.answer = lambda message: "I'd say 40 out of 100."
    bots = [Bot("democrat", lambda prompt: "We should invest in schools.", adapter="democrat"),
            Bot("republican", lambda prompt: "We should cut spending.", adapter="republican")]
    rater = GeneratedRater.from_endpoint(stub.url, "served-rater")
    transcript = TwoBotDebate(bots, rater, max_exchanges=1).run_episode(seed=0)
    assert transcript and all(row["rating_by_other"] == 40.0 for row in transcript)
