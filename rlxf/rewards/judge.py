"""Judge-evaluator rewards (AI feedback): a judge model answers a criterion about a reply; a sentiment classifier
turns its verdict into +1 / 0 / -1.

Pipeline per (completion, criterion): the judge reads the reply and the criterion and writes reasoning ending in
a line `Verdict: ...`; the verdict text goes to a sentiment classifier; P(positive) above
`positive_threshold` scores +1, below `negative_threshold` scores -1, else 0. `Evaluator` combines the criteria
into one reward in [-1, 1] with the reward signature of `rlxf.rewards.base`.

Failures are never a silent 0: a reply without a verdict, a timeout, an HTTP error or a malformed response
scores `fallback_score` (0.0, neutral) and is counted by reason in `Evaluator.stats`, or raises `JudgeError`
when `on_error="raise"`. `HTTPJudge` reads its API key from the environment at request time, sends it only over
https:// (or to localhost) and never across a redirect, cuts every attempt off at a wall-clock deadline, and keeps
the key out of every repr, reply, error, statistic and log line (a server that echoes it back is redacted).

Per scored batch (a PPO step) the evaluator's statistics (`JUDGE_LOG_KEYS`) come back from `Evaluator.pop_stats()`
and, with `log_dir`, land beside the run's metrics in `<log_dir>/judge_batches.jsonl` (read by `read_judge_log`).
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import json
import logging
import re
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx2
import numpy as np

from rlxf.infra.checkpoint import append_jsonl, read_jsonl
from rlxf.infra.identity import identity_of
from rlxf.lm.generation import chat_prompt, generate
from rlxf.lm.models import load_causal_lm
from rlxf.progress import progress
from rlxf.rewards.base import RewardFunction
from rlxf.rewards.classifiers import predict_proba
from rlxf.rewards.secrets import quiet_http_loggers, read_key, redact_secret

logger = logging.getLogger(__name__)

JUDGE_SYSTEM_PROMPT = "You are a careful, strict judge of chatbot replies. You answer the question you are asked."
JUDGE_TEMPLATE = (
    'Here is a reply written by a chatbot:\n"""\n{reply}\n"""\n\n'
    "Question: {criterion}\n"
    "Explain your reasoning in one or two sentences. Then write a last line that starts with 'Verdict:' followed by "
    "one sentence that praises or criticises the reply, for example 'Verdict: Yes, this is an excellent reply that "
    "does this very well.' or 'Verdict: No, this is a poor reply that fails to do this.'"
)
# The verdict is read by a sentiment classifier, so the template asks for an evaluative sentence: a bare
# "Yes." / "No." carries almost no sentiment for a classifier trained on reviews (measured in notebook 03).
# The last "Verdict: ..." in the reply (markdown bold tolerated: "**Verdict:** yes").
VERDICT_PATTERN = re.compile(r"verdict\s*\**\s*[:\-]\s*\**\s*(.+)", re.IGNORECASE)
VERDICT_START = re.compile(r"verdict\s*\**\s*[:\-]", re.IGNORECASE)
# One row per scored batch: judge calls, the share of verdicts the study's thresholds score +1, mean P(positive),
# calls that fell back to `fallback_score`.
JUDGE_LOG = "judge_batches.jsonl"
JUDGE_LOG_KEYS = ("calls", "share_plus_one", "mean_p_positive", "fallbacks")


class JudgeError(RuntimeError):
    """A judge call failed (or gave no verdict) and the evaluator was asked to raise; `reason` says why."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class JudgeReply:
    """One judge answer: its text, or the reason it failed (`timeout`, `http_500`, `connection`, `bad_response`)."""

    text: str | None
    error: str | None = None
    detail: str = ""


def parse_verdict(reply: str) -> str | None:
    """The text after the last `Verdict:` in a judge reply, or None when there is none."""
    if not isinstance(reply, str):
        raise TypeError(f"a judge reply must be a str, got {type(reply).__name__}")
    found = [m.group(1).strip().strip("*").strip() for m in VERDICT_PATTERN.finditer(reply)]
    found = [text for text in found if text]
    return found[-1] if found else None


def verdict_score(p_positive: float, positive_threshold: float = 0.6, negative_threshold: float = 0.4) -> int:
    """+1 when P(positive) > positive_threshold, -1 when < negative_threshold, else 0."""
    if p_positive > positive_threshold:
        return 1
    if p_positive < negative_threshold:
        return -1
    return 0


class LocalJudge:
    """A local chat model as judge: system prompt + user message through the chat template, greedy decoding.

    Small judges (SmolLM2-135M) often spend their budget on reasoning or forget the format: where a reply has
    no verdict line, the judge's reasoning is cut at `max_new_tokens`, `\nVerdict:` is appended, and the
    model writes that line (`verdict_tokens` more tokens). `forced_verdicts` counts how often this happened.
    """

    def __init__(self, model, tokenizer, *, system_prompt: str = JUDGE_SYSTEM_PROMPT, max_new_tokens: int = 128,
                 verdict_tokens: int = 24, batch_size: int = 8):
        if max_new_tokens < 1 or verdict_tokens < 1 or batch_size < 1:
            raise ValueError(
                f"max_new_tokens, verdict_tokens and batch_size must be >= 1, got {max_new_tokens}, "
                f"{verdict_tokens}, {batch_size}"
            )
        self.model, self.tokenizer = model, tokenizer
        self.system_prompt, self.max_new_tokens, self.batch_size = system_prompt, max_new_tokens, batch_size
        self.verdict_tokens = verdict_tokens
        self.forced_verdicts = 0

    @classmethod
    def from_name(cls, name: str = "smollm2-135m-instruct", *, device=None, **kwargs) -> LocalJudge:
        """A judge on a model from `rlxf.models` (default: the local SmolLM2-135M-Instruct)."""
        model, tokenizer = load_causal_lm(name, device=device)
        return cls(model, tokenizer, **kwargs)

    def generate(self, messages: Sequence[str]) -> list[JudgeReply]:
        """One reply per user message, in order; each ends with a verdict line unless the model leaves it empty."""
        texts = [chat_prompt(self.tokenizer, message, system=self.system_prompt) for message in messages]
        if not texts:
            return []
        replies = generate(self.model, self.tokenizer, texts, max_new_tokens=self.max_new_tokens, do_sample=False,
                           batch_size=self.batch_size, chat=False)
        missing = [i for i, reply in enumerate(replies) if parse_verdict(reply) is None]
        if missing:
            reasoning = [VERDICT_START.split(replies[i])[0].rstrip() for i in missing]
            follow_ups = [texts[i] + r + "\nVerdict:" for i, r in zip(missing, reasoning, strict=True)]
            verdicts = generate(self.model, self.tokenizer, follow_ups, max_new_tokens=self.verdict_tokens,
                                do_sample=False, batch_size=self.batch_size, chat=False)
            for i, r, verdict in zip(missing, reasoning, verdicts, strict=True):
                line = verdict.strip().splitlines()[0] if verdict.strip() else ""
                replies[i] = f"{r}\nVerdict: {line}"
            self.forced_verdicts += len(missing)
        return [JudgeReply(text) for text in replies]

    def identity(self) -> dict:
        """The judge model (a sample of its weights) and how it is asked, for a run's fingerprint."""
        keys = ("model", "system_prompt", "max_new_tokens", "verdict_tokens")
        return identity_of({key: getattr(self, key) for key in keys})

    def __repr__(self) -> str:
        return f"LocalJudge(model={type(self.model).__name__}, max_new_tokens={self.max_new_tokens})"


_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# A judge's reply is a few hundred tokens; a server that sends more is not answering the question.
_MAX_RESPONSE_BYTES = 4 << 20
_DETAIL_CHARS = 300
def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _chat_completions_url(url: str) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"judge url must start with http:// or https://, got {url!r}")
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"judge url {url!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("judge url must not carry credentials (user:password@); put the key in the environment "
                         "variable named by api_key_env")
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


class HTTPJudge:
    """Any OpenAI-compatible `/v1/chat/completions` endpoint as judge, through `httpx2` (the HTTP client that
    `huggingface_hub` ships on).

    `url` is the server (`https://host`), its `/v1`, or the full endpoint. The key is read from the environment
    variable `api_key_env` at each request (no key: no Authorization header, for local servers) and is sent only
    over `https://`, or plain `http://` to a loopback host (localhost, 127.0.0.1, ::1). Redirects are never
    followed: a 3xx answer is an error, so the key never travels to another host. `timeout_s` is a wall-clock
    deadline for one attempt (connect, send, wait, read: a server that drips bytes is cut off at it); a timeout, a
    connection error, HTTP 429 or 5xx is retried `retries` times with a doubling back-off, so one message takes at
    most (retries + 1) * timeout_s plus the back-offs. What still fails comes back as a `JudgeReply` with the
    reason (`timeout`, `connection`, `http_NNN`, `redirect`, `insecure_url`, `bad_response`), never as an
    exception; the key is redacted from every reply, detail and log line.

    Why not `huggingface_hub.InferenceClient(base_url=...)`: it sends through the process-wide hub session, which
    follows redirects, has per-read timeouts only, and without an explicit key attaches the locally saved
    Hugging Face token. `openai` is not a dependency here.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        *,
        api_key_env: str = "RLXF_JUDGE_API_KEY",
        timeout_s: float = 30.0,
        retries: int = 2,
        backoff_s: float = 1.0,
        max_tokens: int = 256,
        temperature: float = 0.0,
        system_prompt: str = JUDGE_SYSTEM_PROMPT,
        max_workers: int = 4,
    ):
        self.url = _chat_completions_url(url)
        if not isinstance(model_name, str) or not model_name:
            raise ValueError(f"model_name must be a non-empty str, got {model_name!r}")
        if not timeout_s > 0 or retries < 0 or backoff_s < 0 or max_workers < 1 or max_tokens < 1:
            raise ValueError("need timeout_s > 0, retries >= 0, backoff_s >= 0, max_workers >= 1, max_tokens >= 1")
        self.model_name, self.api_key_env = model_name, api_key_env
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self.max_tokens, self.temperature = max_tokens, temperature
        self.system_prompt, self.max_workers = system_prompt, max_workers
        parts = urllib.parse.urlsplit(self.url)
        self._host, self._loopback = parts.hostname, _is_loopback(parts.hostname)
        self._secure = parts.scheme == "https" or self._loopback
        if read_key(self.api_key_env) and not self._secure:  # a malformed key is a ValueError here already
            raise ValueError(self._insecure_message())

    def _insecure_message(self) -> str:
        return (f"judge url {self.url} is plain http:// to {self._host}, not a loopback host: the key in "
                f"{self.api_key_env} is sent only over https:// (or to localhost); use https:// or unset "
                f"{self.api_key_env}")

    def _fail(self, reason: str, detail: str, key: str | None) -> JudgeReply:
        detail = redact_secret(f"{self.url}: {detail}", key)
        # A refused redirect or key, or an answer that is not a chat completion, is worth a warning on its own;
        # transient failures are counted by the Evaluator, which warns once per batch.
        level = logging.WARNING if reason in ("redirect", "insecure_url", "bad_response") else logging.INFO
        logger.log(level, "judge call failed (%s): %s", reason, detail)
        return JudgeReply(None, reason, detail)

    def _body_text(self, payload: bytes, key: str | None) -> str:
        """The server's answer as text for a detail: redacted as a whole, then cut short."""
        # Redacted before it is cut, with room for the longest encoding of a key that straddles the cut.
        text = payload[: 4 * _DETAIL_CHARS + 8 * len(key or "")].decode("utf-8", "replace")
        return redact_secret(text, key)[:_DETAIL_CHARS]

    async def _attempt(self, client, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
        """One POST: status, headers and the body (at most _MAX_RESPONSE_BYTES; more is a ValueError)."""
        async with client.stream("POST", self.url, content=body, headers=headers) as response:
            payload = bytearray()
            async for chunk in response.aiter_bytes():
                payload += chunk
                if len(payload) > _MAX_RESPONSE_BYTES:
                    raise ValueError(f"the answer is larger than {_MAX_RESPONSE_BYTES} bytes")
            return response.status_code, dict(response.headers), bytes(payload)

    async def _request(self, client, slots: asyncio.Semaphore, message: str) -> JudgeReply:
        try:
            key = read_key(self.api_key_env)
        except ValueError as error:  # names the variable and the position, never the key
            return self._fail("bad_key", str(error), None)
        if key and not self._secure:
            return self._fail("insecure_url", self._insecure_message(), key)
        body = json.dumps({
            "model": self.model_name,
            "messages": [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": message}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }).encode()
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
        reason, detail = "connection", ""
        async with slots:
            for attempt in range(self.retries + 1):
                if attempt:
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
                try:
                    status, response_headers, payload = await asyncio.wait_for(
                        self._attempt(client, body, headers), timeout=self.timeout_s)
                except (TimeoutError, httpx2.TimeoutException):
                    reason, detail = "timeout", f"no complete answer within {self.timeout_s} s"
                    continue
                except httpx2.HTTPError as error:  # connection refused or reset, protocol errors
                    reason, detail = "connection", f"{type(error).__name__}: {error}"
                    continue
                except ValueError as error:
                    return self._fail("bad_response", str(error), key)
                if 300 <= status < 400:
                    where = response_headers.get("location", "?")
                    return self._fail("redirect", f"HTTP {status} redirect to {where} not followed: a judge endpoint "
                                                  "must answer itself (the key is never sent on)", key)
                if status >= 400:
                    reason, detail = f"http_{status}", self._body_text(payload, key)
                    if status != 429 and status < 500:
                        break  # a client error does not go away by asking again
                    continue
                try:
                    content = json.loads(payload)["choices"][0]["message"]["content"]
                except (ValueError, KeyError, IndexError, TypeError):
                    return self._fail("bad_response", self._body_text(payload, key), key)
                if not isinstance(content, str):
                    return self._fail("bad_response", f"message content is {type(content).__name__}, not str", key)
                return JudgeReply(redact_secret(content, key))
        return self._fail(reason, detail, key)

    async def _generate(self, messages: list[str]) -> list[JudgeReply]:
        quiet_http_loggers()  # the HTTP stack logs headers (the key, or a key a server echoes) at DEBUG
        # No redirects; the overall deadline is asyncio.wait_for in _request, these per-phase timeouts only back it.
        # A loopback endpoint ignores proxy settings in the environment: the request stays on this machine.
        async with httpx2.AsyncClient(follow_redirects=False, timeout=httpx2.Timeout(self.timeout_s),
                                      limits=httpx2.Limits(max_connections=self.max_workers),
                                      trust_env=not self._loopback) as client:
            slots = asyncio.Semaphore(self.max_workers)
            with progress(total=len(messages), desc="judge", unit="call") as bar:

                async def one(message: str) -> JudgeReply:
                    reply = await self._request(client, slots, message)
                    bar.update(1)
                    return reply

                return list(await asyncio.gather(*(one(m) for m in messages)))

    def generate(self, messages: Sequence[str]) -> list[JudgeReply]:
        """One reply per user message, in order (`max_workers` requests at a time)."""
        messages = list(messages)
        if not messages:
            return []
        # Its own event loop in its own thread: works the same inside Jupyter, whose thread already runs one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self._generate(messages)).result()

    def identity(self) -> dict:
        """The endpoint, its model and how it is asked (never the key), for a run's fingerprint."""
        return {k: getattr(self, k) for k in ("url", "model_name", "max_tokens", "temperature", "system_prompt")}

    def __repr__(self) -> str:
        # The key's value never appears here: only the name of the variable it is read from.
        return (
            f"HTTPJudge(url={self.url!r}, model_name={self.model_name!r}, api_key_env={self.api_key_env!r}, "
            f"timeout_s={self.timeout_s}, retries={self.retries})"
        )


def make_judge(judge_model: str, *, judge_url: str = "", judge_endpoint_model: str = "",
               max_new_tokens: int = 128) -> LocalJudge | HTTPJudge:
    """The notebooks' judge: `HTTPJudge(judge_url, judge_endpoint_model)` when `judge_url` is set (key from
    `$RLXF_JUDGE_API_KEY`, https:// or localhost only, no redirects), else `LocalJudge.from_name(judge_model)`."""
    if not isinstance(judge_url, str) or not isinstance(judge_endpoint_model, str):
        raise ValueError(f"judge_url and judge_endpoint_model must be str, got {judge_url!r}, {judge_endpoint_model!r}")
    if judge_url:
        if not judge_endpoint_model:
            raise ValueError(f"judge_url is {judge_url!r} but judge_endpoint_model is empty: name the model that "
                             "endpoint serves (its `model` field)")
        return HTTPJudge(judge_url, judge_endpoint_model)
    return LocalJudge.from_name(judge_model, max_new_tokens=max_new_tokens)


class VerdictSentiment:
    """A sentiment classifier as verdict reader: texts -> P(positive label)."""

    def __init__(self, model, tokenizer, *, positive_label: int = 1, batch_size: int = 32, max_length: int = 128):
        if not 0 <= positive_label < int(model.config.num_labels):
            raise ValueError(
                f"positive_label {positive_label} is not a class of this {model.config.num_labels}-way model"
            )
        self.model, self.tokenizer = model, tokenizer
        self.positive_label, self.batch_size, self.max_length = positive_label, batch_size, max_length

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        proba = predict_proba(self.model, self.tokenizer, texts, batch_size=self.batch_size, max_length=self.max_length)
        return proba[:, self.positive_label]

    def __repr__(self) -> str:
        return f"VerdictSentiment(model={type(self.model).__name__}, positive_label={self.positive_label})"


@dataclass
class EvaluatorSettings:
    """How an `Evaluator` turns judge verdicts into scores."""

    positive_threshold: float = 0.6
    """P(positive verdict) above this scores +1"""
    negative_threshold: float = 0.4
    """P(positive verdict) below this scores -1 (in between: 0)"""
    fallback_score: float = 0.0
    """score of a criterion whose judge call failed or gave no verdict (0.0: neutral); counted in `stats`"""
    scoring: str = "sign"
    """"sign": +1 / 0 / -1 by the two thresholds (the study's reward; saturates once most verdicts are positive);
    "graded": 2 * P(positive verdict) - 1 in [-1, 1], which still ranks replies that all get a positive verdict"""
    on_error: str = "fallback"
    """'fallback': use fallback_score and count it; 'raise': raise JudgeError"""
    template: str = JUDGE_TEMPLATE
    """the judge's user message; fields {reply}, {criterion} and (optional) {prompt}"""

    def __post_init__(self) -> None:
        if not 0.0 <= self.negative_threshold <= self.positive_threshold <= 1.0:
            raise ValueError(
                f"need 0 <= negative_threshold <= positive_threshold <= 1, got {self.negative_threshold}, "
                f"{self.positive_threshold}"
            )
        if not -1.0 <= self.fallback_score <= 1.0:
            raise ValueError(f"fallback_score must be in [-1, 1], got {self.fallback_score}")
        if self.scoring not in ("sign", "graded"):
            raise ValueError(f"scoring must be 'sign' or 'graded', got {self.scoring!r}")
        if self.on_error not in ("fallback", "raise"):
            raise ValueError(f"on_error must be 'fallback' or 'raise', got {self.on_error!r}")
        if "{reply}" not in self.template or "{criterion}" not in self.template:
            raise ValueError("template must contain {reply} and {criterion}")


class Evaluator(RewardFunction):
    """A reward in [-1, 1]: the judge scores each completion on every criterion; the criteria are combined.

    `criteria`: a mapping name -> question, or a list of questions (named by themselves). `combine`: "mean"
    (weighted by `weights`, default equal) or "min" (every criterion must hold). `stats` counts judge calls,
    verdicts, scores and fallbacks by reason since construction (or `reset_stats()`); `last_details` holds one
    dict per judge call of the latest batch (reply, verdict, P(positive), score, error) for inspection.
    `pop_stats()` returns the statistics (`JUDGE_LOG_KEYS`) of the judge calls since its last call: calls, the share
    of verdicts the study's thresholds score +1 (whatever `settings.scoring` is: how saturated the study's reward
    would be), mean P(positive), fallbacks. `log_dir`: each scored batch (a PPO step) appends those statistics as a
    row to `<log_dir>/judge_batches.jsonl` (none: no file); `read_judge_log` reads them back.
    """

    def __init__(
        self,
        judge,
        verdict_classifier: Callable[[list[str]], Sequence[float]],
        criteria: Mapping[str, str] | Sequence[str],
        weights: Sequence[float] | None = None,
        combine: str = "mean",
        *,
        settings: EvaluatorSettings | None = None,
        name: str = "judge_evaluator",
        log_dir: str | Path | None = None,
    ):
        if isinstance(criteria, str):
            raise TypeError("criteria must be a list of questions or a mapping name -> question, not a single str")
        self.criteria = dict(criteria) if isinstance(criteria, Mapping) else {q: q for q in criteria}
        if not self.criteria:
            raise ValueError("Evaluator needs at least one criterion")
        for criterion, question in self.criteria.items():
            if not isinstance(question, str) or not question.strip():
                raise ValueError(f"criterion {criterion!r} must be a non-empty question, got {question!r}")
        weights = [1.0] * len(self.criteria) if weights is None else [float(w) for w in weights]
        if len(weights) != len(self.criteria) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be {len(self.criteria)} numbers >= 0, not all 0; got {weights}")
        if combine not in ("mean", "min"):
            raise ValueError(f"combine must be 'mean' or 'min', got {combine!r}")
        if not callable(verdict_classifier) or not hasattr(judge, "generate"):
            raise TypeError("judge needs a .generate(messages) method and verdict_classifier must be callable")
        self.judge, self.verdict_classifier = judge, verdict_classifier
        self.weights, self.combine = np.asarray(weights), combine
        self.settings = settings or EvaluatorSettings()
        self.last_details: list[dict] = []
        self.log_path = Path(log_dir) / JUDGE_LOG if log_dir is not None else None
        self.reset_stats()
        super().__init__(name)

    def reset_stats(self) -> None:
        """Zero the counters in `stats` and forget the calls `pop_stats` would report."""
        self._stats = {"calls": 0, "verdicts": 0, "fallbacks": Counter(), "scores": Counter()}
        self._unreported = Counter()  # calls, judged, plus_one and summed p_positive since the last pop_stats

    def pop_stats(self) -> dict:
        """The statistics (`JUDGE_LOG_KEYS`) of the judge calls since the last `pop_stats` (or `reset_stats`), then
        forget those calls; with no calls: 0 calls and NaN shares."""
        stats, self._unreported = _judge_stats(self._unreported), Counter()
        return stats

    @property
    def stats(self) -> dict:
        """calls, verdicts, fallbacks (by reason, and `fallback_total`), scores (+1/0/-1 counts) so far."""
        stats = copy.deepcopy(self._stats)
        stats["fallbacks"], stats["scores"] = dict(stats["fallbacks"]), dict(stats["scores"])
        stats["fallback_total"] = sum(stats["fallbacks"].values())
        return stats

    def score(self, prompts: list[str], completions: list[str], **kwargs) -> np.ndarray:
        names = list(self.criteria)
        jobs = [(i, name) for i in range(len(completions)) for name in names]
        messages = [
            self.settings.template.format(reply=completions[i], criterion=self.criteria[name], prompt=prompts[i])
            for i, name in jobs
        ]
        replies = self.judge.generate(messages)
        if len(replies) != len(messages):
            raise RuntimeError(f"the judge returned {len(replies)} replies for {len(messages)} messages")
        details = []
        for (i, name), reply in zip(jobs, replies, strict=True):
            verdict = parse_verdict(reply.text) if reply.error is None else None
            error = reply.error or (None if verdict is not None else "no_verdict")
            detail = reply.detail or ("the reply has no 'Verdict:' line" if error == "no_verdict" else "")
            details.append({"index": i, "criterion": name, "reply": reply.text, "verdict": verdict,
                            "p_positive": None, "score": None, "error": error, "detail": detail})
        self._stats["calls"] += len(details)
        failed = [d for d in details if d["error"]]
        if failed and self.settings.on_error == "raise":
            first = failed[0]
            raise JudgeError(
                f"judge call for completions[{first['index']}], criterion {first['criterion']!r} failed "
                f"({first['error']}): {first['detail']}",
                first["error"],
            )
        judged = [d for d in details if not d["error"]]
        if judged:
            p_positive = np.asarray(self.verdict_classifier([d["verdict"] for d in judged]), dtype=float)
            if p_positive.shape != (len(judged),) or not ((p_positive >= 0) & (p_positive <= 1)).all():
                raise ValueError(
                    f"the verdict classifier must return {len(judged)} probabilities in [0, 1], got {p_positive!r}"
                )
            for d, p in zip(judged, p_positive, strict=True):
                d["p_positive"] = float(p)
                d["sign"] = verdict_score(p, self.settings.positive_threshold, self.settings.negative_threshold)
                d["score"] = float(d["sign"] if self.settings.scoring == "sign" else 2 * p - 1)
                self._stats["scores"][f"{d['sign']:+d}" if d["sign"] else "0"] += 1
        for d in failed:
            d["score"] = self.settings.fallback_score
            self._stats["fallbacks"][d["error"]] += 1
        self._stats["verdicts"] += len(judged)
        batch = Counter(calls=len(details), judged=len(judged), plus_one=sum(d["sign"] == 1 for d in judged),
                        p_positive=sum(d["p_positive"] for d in judged))
        self._unreported.update(batch)
        if self.log_path is not None:
            append_jsonl(self.log_path, [_judge_stats(batch)])
        if failed:
            reasons = dict(Counter(d["error"] for d in failed))
            logger.warning("%s: %d of %d judge calls fell back to %s: %s", self.__name__, len(failed), len(details),
                           self.settings.fallback_score, reasons)
        self.last_details = details
        table = np.asarray([d["score"] for d in details]).reshape(len(completions), len(names))
        if self.combine == "min":
            return table.min(axis=1)
        return table @ self.weights / self.weights.sum()

    def identity(self) -> dict:
        """The judge (its model's weights or its endpoint), the verdict reader and the criteria (not the counters)."""
        return identity_of({"judge": self.judge, "verdicts": self.verdict_classifier, "criteria": self.criteria,
                            "weights": self.weights, "combine": self.combine, "settings": self.settings})

    def __repr__(self) -> str:
        return (
            f"Evaluator(name={self.__name__!r}, judge={self.judge!r}, criteria={list(self.criteria)}, "
            f"combine={self.combine!r})"
        )


def _judge_stats(counts: Mapping[str, float]) -> dict:
    """`JUDGE_LOG_KEYS` from counts of judge calls: the share of +1 verdicts and the mean P(positive) are over the
    calls that gave a verdict (NaN where none did)."""
    calls, judged = int(counts["calls"]), int(counts["judged"])
    return {"calls": calls,
            "share_plus_one": counts["plus_one"] / judged if judged else float("nan"),
            "mean_p_positive": float(counts["p_positive"]) / judged if judged else float("nan"),
            "fallbacks": calls - judged}


def read_judge_log(run_dir: str | Path) -> list[dict]:
    """The per-batch rows an `Evaluator(log_dir=run_dir)` wrote (`JUDGE_LOG_KEYS`), in order; [] where none."""
    path = Path(run_dir) / JUDGE_LOG
    rows = read_jsonl(path) if path.is_file() else []
    for line_number, row in enumerate(rows, start=1):
        if set(row) != set(JUDGE_LOG_KEYS):
            raise ValueError(f"{path}:{line_number}: expected the keys {list(JUDGE_LOG_KEYS)}, got {sorted(row)}")
    return rows


def ranking_accuracy(scores_genuine: Sequence[float], scores_other: Sequence[float]) -> float:
    """Share of (genuine, other) pairs where the genuine one scores higher; ties count half (the ROC-AUC)."""
    genuine, other = np.asarray(scores_genuine, dtype=float), np.asarray(scores_other, dtype=float)
    if genuine.ndim != 1 or other.ndim != 1 or not len(genuine) or not len(other):
        raise ValueError("scores_genuine and scores_other must be non-empty 1-d lists of scores")
    if not (np.isfinite(genuine).all() and np.isfinite(other).all()):
        raise ValueError("scores must be finite numbers")
    diff = genuine[:, None] - other[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))
