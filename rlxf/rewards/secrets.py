"""An endpoint's API key: read and checked before use, kept out of the HTTP stack's logs, redacted from anything a
server sends back (also when it echoes the key encoded, escaped or split across lines)."""

from __future__ import annotations

import base64
import logging
import os
import re

# A run of this many characters of the key counts as the key (a server may echo it cut short).
_KEY_RUN = 12
# Loggers of the HTTP stack that write request and response headers (with the Authorization header, or a key a
# server echoes in a header or a Location) at DEBUG level.
HTTP_LOGGERS = ("httpx2", "httpcore2", "httpcore2.connection", "httpcore2.http11", "httpcore2.http2",
                "httpcore2.proxy", "httpcore2.socks", "httpx", "httpcore", "h2", "hpack", "urllib3")


class _NoHeaders(logging.Filter):
    """Drops the HTTP stack's records below INFO: they carry headers (the key, or a key a server echoes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


_FILTER = _NoHeaders()


def quiet_http_loggers() -> None:
    """Keep the HTTP stack's DEBUG records (headers) out of every log, whatever level a user sets (idempotent)."""
    for name in HTTP_LOGGERS:
        log = logging.getLogger(name)
        if _FILTER not in log.filters:
            log.addFilter(_FILTER)


def read_key(variable: str) -> str | None:
    """The key in the environment variable `variable`, stripped (a key read from a file ends in a newline); None when
    unset or empty. A key with whitespace, a control or a non-ASCII character inside is a ValueError that names the
    variable and the position, never the key."""
    key = (os.environ.get(variable) or "").strip()
    if not key:
        return None
    for position, char in enumerate(key):
        if not "\x21" <= char <= "\x7e":
            what = ("whitespace" if char.isspace() else "a control character" if ord(char) < 32 or ord(char) == 127
                    else "a non-ASCII character")
            raise ValueError(f"the key in ${variable} has {what} at position {position} (of {len(key)} characters); "
                             "an API key is printable ASCII without spaces: check how it was written there")
    return key


def _runs(text: str, secret: str, run: int) -> list[tuple[int, int]]:
    """Spans of `text` that are a stretch of `secret` at least `run` characters long (all of it when it is shorter)."""
    if len(secret) <= run:
        return [(m.start(), m.end()) for m in re.finditer(re.escape(secret), text)]
    pieces = {secret[i: i + run] for i in range(len(secret) - run + 1)}
    spans, position = [], 0
    for found in re.finditer("|".join(map(re.escape, sorted(pieces))), text):
        if found.start() < position:
            continue
        # Grow the hit to the longest stretch of the key it belongs to.
        offset = secret.find(found[0])
        start, end = found.start(), found.end()
        while start > position and offset > 0 and text[start - 1] == secret[offset - 1]:
            start, offset = start - 1, offset - 1
        while end < len(text) and offset + (end - start) < len(secret) and text[end] == secret[offset + end - start]:
            end += 1
        spans.append((start, end))
        position = end
    return spans


def _base64_forms(secret: str) -> list[str]:
    """The key's base64 (standard and URL-safe) at the three byte alignments, without the characters the neighbouring
    bytes change: whatever precedes it ("Bearer ", "user:") the middle of its encoding is one of these."""
    forms = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret.encode()).decode().rstrip("=")
        middle = encoded[(shift * 4 + 2) // 3 + (1 if shift else 0): -3]
        forms += [middle, middle.replace("+", "-").replace("/", "_")]
    return forms


def redact_secret(text: str, secret: str | None) -> str:
    """`text` with every stretch of 12+ characters of `secret` replaced by '***': as it is, with whitespace inside
    (split across lines), in base64, hex, %-escapes and \\u-escapes."""
    if not secret or not text:
        return text
    spans = _runs(text, secret, _KEY_RUN)
    kept = [i for i, char in enumerate(text) if not char.isspace()]
    if len(kept) < len(text):  # the key split by whitespace: find it in the text without, map back
        skeleton = "".join(text[i] for i in kept)
        spans += [(kept[start], kept[end - 1] + 1) for start, end in _runs(skeleton, secret, _KEY_RUN)]
    hexed = secret.encode().hex()
    encoded = [(form, 16) for form in _base64_forms(secret)] + [
        (hexed, 2 * _KEY_RUN), (hexed.upper(), 2 * _KEY_RUN),
        ("".join(f"%{ord(c):02X}" for c in secret), 3 * _KEY_RUN),
        ("".join(f"%{ord(c):02x}" for c in secret), 3 * _KEY_RUN),
        ("".join(f"\\u{ord(c):04x}" for c in secret), 6 * _KEY_RUN),
        ("".join(f"\\x{ord(c):02x}" for c in secret), 4 * _KEY_RUN)]
    for form, run in encoded:
        spans += _runs(text, form, run)
    out, position = [], 0
    for start, end in sorted(spans):
        if end <= position:
            continue
        out += [text[position: max(start, position)], "***"] if start >= position else []
        position = max(position, end)
    return "".join(out) + text[position:]
