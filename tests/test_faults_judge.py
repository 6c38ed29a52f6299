"""Faults of a hostile or broken judge endpoint, against stub HTTP servers on 127.0.0.1 only (never the internet).

(a) a redirect (301/302/303/307/308) to another port that records Authorization headers: the key never arrives
    and the reply is an error value, not a verdict; (b) a server that echoes the key at any offset, also past
    byte 200: nothing of it in replies, details, errors or log lines; (c) a server that drips its answer one byte
    at a time: the call ends at the deadline; (d) a key with a plain http:// URL to a non-loopback host: refused.
Every stub is a bounded `ThreadingHTTPServer` that stops itself when the test ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rlxf.rewards.judge import Evaluator, EvaluatorSettings, HTTPJudge, JudgeError

SECRET = "sk-fault-0123456789abcdefghijklmnopqrstuv"  # 40 characters
KEY_ENV = "RLXF_JUDGE_API_KEY"
VERDICT = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Fine.\nVerdict: Yes, excellent."}}]}
DRIP_INTERVAL_S = 0.12
DRIP_MAX_BYTES = 100  # a dripping handler gives up after 12 s even if nobody hangs up


class Stub(BaseHTTPRequestHandler):
    """Behaviour by `server.mode`; every request's path and Authorization header land in `server.seen`."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(min(length, 1 << 20))
        server.seen.append({"path": self.path, "authorization": self.headers.get("Authorization")})
        mode = server.mode
        if mode == "verdict":
            self._send(200, json.dumps(VERDICT).encode())
        elif mode.startswith("redirect_"):
            self._send(int(mode.split("_")[1]), b"moved", location=server.location)
        elif mode in ("echo_500", "echo_garbage", "echo_content"):
            echo = (b"x" * server.offset + self.headers.get("Authorization", "").encode() + b" trailing text")
            if mode == "echo_content":
                content = echo.decode() + "\nVerdict: Yes."
                self._send(200, json.dumps({"choices": [{"message": {"content": content}}]}).encode())
            else:
                self._send(500 if mode == "echo_500" else 200, echo)
        elif mode == "drip_body":
            self._headers(200, 10_000)
            self._drip(b'{"choices": [' + b" " * DRIP_MAX_BYTES)
        elif mode == "drip_headers":
            self._drip(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * DRIP_MAX_BYTES)

    def _headers(self, status: int, length: int, location: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        if location:
            self.send_header("Location", location)
        self.end_headers()

    def _send(self, status: int, data: bytes, location: str | None = None) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._headers(status, len(data), location)
            self.wfile.write(data)

    def _drip(self, data: bytes) -> None:
        for byte in data[: DRIP_MAX_BYTES]:
            if self.server.stopping.is_set():
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return  # the client hung up: what we want
            time.sleep(DRIP_INTERVAL_S)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def stub_server(mode: str, **attributes):
    """A stub judge on 127.0.0.1 (a free port) in `mode`; shut down and closed on exit."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    httpd.daemon_threads = True
    httpd.mode, httpd.seen, httpd.stopping = mode, [], threading.Event()
    httpd.offset, httpd.location = 0, None
    for name, value in attributes.items():
        setattr(httpd, name, value)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


def leaked(text) -> bool:
    """True when `text` holds the key or any 8 characters in a row of it."""
    text = str(text)
    return any(SECRET[i: i + 8] in text for i in range(len(SECRET) - 7))


# ------------------------------------------------------------------------------------------------ (a) redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_and_the_key_never_reaches_the_other_host(key, status, caplog):
    with stub_server("verdict") as elsewhere:
        with stub_server(f"redirect_{status}", location=elsewhere.url + "/v1/chat/completions") as judge_server:
            judge = HTTPJudge(judge_server.url, "judge-model", timeout_s=5.0, retries=2, backoff_s=0.01)
            with caplog.at_level(logging.WARNING, logger="rlxf.rewards.judge"):
                reply = judge.generate(["Is this good?"])[0]
            evaluator = Evaluator(judge, lambda verdicts: [1.0] * len(verdicts), ["Is it good?"])
            assert evaluator(["Q"], ["A reply."]) == [0.0]  # the fallback score, not the other host's "Yes"
        assert judge_server.seen[0]["authorization"] == f"Bearer {key}"  # the endpoint itself got the key
        assert len(judge_server.seen) == 2  # not retried: once by generate, once by the evaluator
    assert elsewhere.seen == []  # the other host got nothing at all, so no Authorization header either
    assert reply.text is None and reply.error == "redirect"
    assert str(status) in reply.detail and elsewhere.url in reply.detail
    assert evaluator.stats["fallbacks"] == {"redirect": 1} and evaluator.stats["verdicts"] == 0
    assert "redirect" in caplog.text


# ------------------------------------------------------------------------------------------------ (b) key echoed


@pytest.mark.parametrize("offset", [0, 150, 177, 199, 200, 201, 290, 1000, 5000])
@pytest.mark.parametrize("mode", ["echo_500", "echo_garbage", "echo_content"])
def test_an_echoed_key_is_redacted_at_any_offset(key, mode, offset, caplog):
    with stub_server(mode, offset=offset) as server:
        judge = HTTPJudge(server.url, "judge-model", timeout_s=5.0, retries=0)
        with caplog.at_level(logging.DEBUG):
            reply = judge.generate(["Is this good?"])[0]
            evaluator = Evaluator(judge, lambda verdicts: [0.5] * len(verdicts), ["Is it good?"],
                                  settings=EvaluatorSettings(on_error="raise"))
            if mode == "echo_content":
                evaluator(["Q"], ["A reply."])
                raised = ""
            else:
                with pytest.raises(JudgeError) as error:
                    evaluator(["Q"], ["A reply."])
                raised = f"{error.value} {error.value!r} {error.value.args}"
    assert server.seen[0]["authorization"] == f"Bearer {key}"
    if mode == "echo_content":
        assert reply.error is None and "***" in reply.text
    else:
        assert reply.error == ("http_500" if mode == "echo_500" else "bad_response") and reply.text is None
    outputs = [reply.text, reply.detail, raised, caplog.text, evaluator.last_details, evaluator.stats,
               repr(judge), repr(reply)]
    assert not any(leaked(text) for text in outputs)


# ------------------------------------------------------------------------------------------------ (c) drip-feed


@pytest.mark.parametrize("mode", ["drip_body", "drip_headers"])
def test_a_dripping_server_is_cut_off_at_the_deadline(key, mode):
    deadline_s, slack_s = 1.0, 0.75
    with stub_server(mode) as server:
        judge = HTTPJudge(server.url, "judge-model", timeout_s=deadline_s, retries=0)
        started = time.monotonic()
        reply = judge.generate(["Is this good?"])[0]
        elapsed = time.monotonic() - started
        assert reply.text is None and reply.error == "timeout"
        assert elapsed < deadline_s + slack_s, f"the call took {elapsed:.2f} s with a {deadline_s} s deadline"
        # With retries the bound is (retries + 1) deadlines plus the back-off.
        retrying = HTTPJudge(server.url, "judge-model", timeout_s=0.5, retries=1, backoff_s=0.05)
        started = time.monotonic()
        assert retrying.generate(["Is this good?"])[0].error == "timeout"
        assert time.monotonic() - started < 2 * 0.5 + 0.05 + slack_s


# ------------------------------------------------------------------------------------------------ (d) plain http


def test_a_key_is_never_sent_over_plain_http_to_another_host(key, monkeypatch, caplog):
    with pytest.raises(ValueError, match=rf"plain http://.*https://.*{KEY_ENV}"):
        HTTPJudge("http://judge.invalid:8000", "judge-model")
    # A key that turns up only after construction: an error value before any connection is tried.
    monkeypatch.delenv(KEY_ENV)
    judge = HTTPJudge("http://judge.invalid:8000", "judge-model", timeout_s=1.0, retries=3, backoff_s=5.0)
    monkeypatch.setenv(KEY_ENV, SECRET)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="rlxf.rewards.judge"):
        reply = judge.generate(["Is this good?"])[0]
    assert time.monotonic() - started < 1.0  # refused, not retried
    assert reply.text is None and reply.error == "insecure_url" and "https://" in reply.detail
    assert not leaked(reply.detail) and not leaked(caplog.text)
