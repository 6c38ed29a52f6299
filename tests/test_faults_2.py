"""Faults, round 2 (issue 26): secrets a hostile judge server echoes in headers or encodings, PPO settings that
would turn the method upside down, outputs where nobody asked, runner values and signals, hydration duplicates and
stale tables, and errors that must name their cause. Every case failed (or hung, or leaked) before its fix."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import urllib.parse
from http.server import BaseHTTPRequestHandler

import pytest

from rlxf.rewards.judge import HTTPJudge
from tests.stubs import local_server

SECRET = "sk-round2-0123456789abcdefghijklmnopqrstu"
KEY_ENV = "RLXF_JUDGE_API_KEY"


def leaked(text) -> bool:
    """True when `text` holds 8 characters in a row of the key, also with whitespace removed (a key split across
    lines) or after decoding base64, hex, %-escapes and \\u-escapes."""
    text = str(text)
    forms = [text, "".join(text.split()), urllib.parse.unquote(text)]
    with contextlib.suppress(Exception):
        forms.append(text.encode().decode("unicode_escape"))
    for form in list(forms):
        for token in form.replace('"', " ").split():
            for decode in (base64.b64decode, base64.urlsafe_b64decode, bytes.fromhex):
                with contextlib.suppress(Exception):
                    forms.append(decode(token + "=" * (-len(token) % 4) if decode is not bytes.fromhex
                                        else token).decode("latin-1"))
    return any(SECRET[i: i + 8] in form for form in forms for i in range(len(SECRET) - 7))


def encodings(key: str) -> dict[str, str]:
    """The forms of the key a hostile server echoes."""
    bearer = f"Bearer {key}"
    return {"base64": base64.b64encode(bearer.encode()).decode(), "base64_key": base64.b64encode(key.encode()).decode(),
            "base64_shifted": base64.b64encode(b"xy" + key.encode()).decode(),
            "urlsafe": base64.urlsafe_b64encode(key.encode()).decode(), "percent": urllib.parse.quote(key, safe=""),
            "json_escape": "".join(f"\\u{ord(c):04x}" for c in key), "hex": key.encode().hex(),
            "split_lines": "\n".join(key[i: i + 5] for i in range(0, len(key), 5)),
            "spaced": " ".join(key)}


class EchoStub(BaseHTTPRequestHandler):
    """Echoes the Authorization header back: in a response header, a redirect's Location, or an encoded body."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization", "")
        self.server.seen.append(auth)
        mode = self.server.mode
        key = auth.removeprefix("Bearer ")
        if mode == "header":
            body = json.dumps({"choices": [{"message": {"content": "Verdict: Yes."}}]}).encode()
            self._send(200, body, {"X-Echo": auth, "Set-Cookie": f"k={key}"})
        elif mode == "location":
            self._send(302, b"moved", {"Location": f"http://127.0.0.1:9/steal?k={key}&a={auth}"})
        elif mode.startswith("body_"):
            self._send(200, b"x" * 50 + encodings(key)[mode[5:]].encode() + b" tail")
        elif mode.startswith("content_"):
            content = "Echo " + encodings(key)[mode[8:]] + "\nVerdict: Yes."
            self._send(200, json.dumps({"choices": [{"message": {"content": content}}]}).encode())

    def _send(self, status, data, headers=None):
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


# ------------------------------------------------------------------------------------------------ secrets


@pytest.mark.parametrize("mode", ["header", "location"])
def test_debug_logging_of_the_http_stack_never_shows_the_key(key, mode, caplog):
    with local_server(EchoStub, mode=mode, seen=[]) as server, caplog.at_level(logging.DEBUG):
        reply = HTTPJudge(server.url, "judge-model", timeout_s=5.0, retries=0).generate(["Is it good?"])[0]
    assert server.seen == [f"Bearer {key}"]
    assert reply.error == (None if mode == "header" else "redirect")
    assert caplog.records, "DEBUG logging was on: something is logged"
    assert not leaked(caplog.text) and not leaked(reply.detail) and not leaked(reply.text)


@pytest.mark.parametrize("form", sorted(encodings(SECRET)))
@pytest.mark.parametrize("where", ["body", "content"])
def test_an_echoed_key_is_redacted_in_its_common_encodings(key, form, where, caplog):
    with local_server(EchoStub, mode=f"{where}_{form}", seen=[]) as server, caplog.at_level(logging.DEBUG):
        reply = HTTPJudge(server.url, "judge-model", timeout_s=5.0, retries=0).generate(["Is it good?"])[0]
    assert server.seen == [f"Bearer {key}"]
    assert not any(leaked(text) for text in (reply.text, reply.detail, caplog.text, repr(reply))), (reply, form)


@pytest.mark.parametrize("suffix", ["\n", "  ", "\r\n", "\t"])
def test_a_key_read_from_a_file_is_stripped_before_use(monkeypatch, suffix):
    monkeypatch.setenv(KEY_ENV, " " + SECRET + suffix)
    with local_server(EchoStub, mode="header", seen=[]) as server:
        reply = HTTPJudge(server.url, "judge-model", timeout_s=5.0, retries=0).generate(["Is it good?"])[0]
    assert server.seen == [f"Bearer {SECRET}"] and reply.error is None


@pytest.mark.parametrize("bad", [SECRET[:10] + " " + SECRET[10:], SECRET[:10] + "\n" + SECRET[10:],
                                 SECRET[:10] + "\x01" + SECRET[10:], SECRET + "\x7f", SECRET[:10] + "é" + SECRET[10:]])
def test_a_key_with_whitespace_or_control_characters_is_refused_without_showing_it(monkeypatch, bad, caplog):
    monkeypatch.setenv(KEY_ENV, bad)
    with pytest.raises(ValueError, match=rf"{KEY_ENV} has .* at position \d+") as error:
        HTTPJudge("http://127.0.0.1:9", "judge-model")
    assert not leaked(str(error.value))
    # Set only after construction: an error value before any connection, not retried, not the key.
    monkeypatch.delenv(KEY_ENV)
    with local_server(EchoStub, mode="header", seen=[]) as server:
        judge = HTTPJudge(server.url, "judge-model", timeout_s=5.0, retries=3, backoff_s=5.0)
        monkeypatch.setenv(KEY_ENV, bad)
        with caplog.at_level(logging.DEBUG):
            reply = judge.generate(["Is it good?"])[0]
    assert server.seen == [] and reply.error == "bad_key" and KEY_ENV in reply.detail
    assert not leaked(reply.detail) and not leaked(caplog.text)
