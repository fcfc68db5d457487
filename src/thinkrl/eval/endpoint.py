"""Evaluation against any OpenAI-compatible chat endpoint (``thinkrl serve``, vLLM, SGLang, a hosted API).

Each sample is one ``POST {base_url}/chat/completions`` with the problem's user turn, its own seed, the run's
temperature / top_p / max_tokens and, for a finite budget, ``chat_template_kwargs: {"thinking_budget": N}``
(vLLM's convention, which ``thinkrl serve`` also reads). At most ``concurrency`` requests are in flight
(an asyncio semaphore over one `httpx.AsyncClient`). A 429, a 5xx, a timeout or a connection error is retried
``max_retries`` times with exponential backoff (``backoff_s * 2**attempt``, or the answer's ``Retry-After`` when
longer, at most ``max_backoff_s``); another status, a reply that is not a chat completion, or a retryable failure
that persists stops the run with an `EndpointError` naming the URL and the answer. So does, without a retry, an
answer whose body is over ``max_reply_bytes`` (`MAX_REPLY_BYTES`, 64 MiB; counted as it is read, after decoding):
the body is streamed and never held past that. A choice without a ``finish_reason`` is a malformed reply, not a
truncated one. Records already written stay, so ``--resume`` continues where it stopped.

The message's ``reasoning_content`` and ``content`` are judged by `thinkrl.eval.samplers.judge_message` (the same
verifiers as local sampling), in one worker thread so that the event loop keeps sending requests meanwhile.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from thinkrl.eval.records import Job, ProblemResult, SampleResult
from thinkrl.eval.samplers import MAX_ANSWER_CHARS, OnDone, SampleSettings, judge_message

logger = logging.getLogger(__name__)

MAX_TOKEN_COUNT = 2**53
MAX_REPLY_BYTES = 64 * 2**20
"""The default `EndpointSpec.max_reply_bytes`: a chat completion is kilobytes; a larger body is refused as it is read
rather than held in memory (a broken or hostile endpoint could send gigabytes)."""


def is_retryable(status: int) -> bool:
    """429 and every 5xx (proxies and CDNs answer 520-529 for a busy or unreachable origin) are worth a retry."""
    return status == 429 or 500 <= status <= 599


class EndpointError(ValueError):
    """The endpoint refused a request, or stayed unreachable after the retries (bad URL, key or model name)."""


@dataclass(frozen=True)
class EndpointSpec:
    """Where and how to send requests.

    Fields:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model name.
        api_key: sent as ``Authorization: Bearer``; None sends no header.
        concurrency: requests in flight at once.
        max_retries: retries of one request after a retryable failure (0: no retry).
        backoff_s / max_backoff_s: the first wait and the cap of the exponential backoff.
        timeout_s: per-request timeout: the whole request, from connecting to the last byte of the answer.
        max_reply_bytes: the most bytes of one answer's body (decoded) that are read; a larger one stops the run.
    """

    base_url: str
    model: str
    api_key: str | None = None
    concurrency: int = 8
    max_retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    timeout_s: float = 600.0
    max_reply_bytes: int = MAX_REPLY_BYTES

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if self.concurrency < 1 or self.max_retries < 0 or self.backoff_s < 0 or not 0 < self.timeout_s < math.inf:
            raise ValueError(f"concurrency ({self.concurrency}) must be >= 1, max_retries ({self.max_retries}) and "
                             f"backoff_s ({self.backoff_s}) >= 0, timeout_s ({self.timeout_s}) finite and > 0")
        if self.max_reply_bytes < 1:
            raise ValueError(f"max_reply_bytes must be >= 1, got {self.max_reply_bytes}")

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


def chat_body(spec: EndpointSpec, settings: SampleSettings, job: Job, sample_index: int) -> dict[str, Any]:
    """The request body of sample ``sample_index`` of ``job``."""
    body: dict[str, Any] = {
        "model": spec.model, "messages": [{"role": "user", "content": job.problem.prompt}],
        "max_tokens": settings.max_tokens, "temperature": settings.temperature, "top_p": settings.top_p,
        "seed": settings.seed_of(job, sample_index),
    }
    if job.thinking_budget >= 0:
        body["chat_template_kwargs"] = {"thinking_budget": job.thinking_budget}
    return body


class EndpointSampler:
    """`thinkrl.eval.samplers.Sampler` over an OpenAI-compatible chat endpoint (see the module docstring)."""

    def __init__(self, spec: EndpointSpec, settings: SampleSettings) -> None:
        self.spec, self.settings = spec, settings

    def run(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        asyncio.run(self._run(jobs, on_done))

    async def _run(self, jobs: Sequence[Job], on_done: OnDone) -> None:
        headers = {"Authorization": f"Bearer {self.spec.api_key}"} if self.spec.api_key else {}
        limit = asyncio.Semaphore(self.spec.concurrency)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="eval-judge") as judges:
            # httpx pools at most 100 connections by default, which would cap --concurrency silently (and queue
            # the rest into pool timeouts): size the pool to the concurrency
            pool = httpx.Limits(max_connections=self.spec.concurrency, max_keepalive_connections=self.spec.concurrency)
            async with httpx.AsyncClient(timeout=self.spec.timeout_s, headers=headers, limits=pool) as client:
                try:
                    async with asyncio.TaskGroup() as group:
                        for job in jobs:
                            group.create_task(self._job(client, limit, judges, job, on_done))
                except BaseExceptionGroup as errors:  # the first failure stops the run; report it alone
                    raise _first(errors) from None

    async def _job(self, client: httpx.AsyncClient, limit: asyncio.Semaphore, judges: ThreadPoolExecutor,
                   job: Job, on_done: OnDone) -> None:
        replies = await asyncio.gather(*(self._sample(client, limit, job, j) for j in range(self.settings.samples)))
        # every sample is in (and paid for): when another request fails for good and the run is cancelled, still
        # judge and record this problem rather than lose it while it waits for the (slower) judge thread
        recorded = asyncio.ensure_future(self._record(judges, job, replies, on_done))
        try:
            await asyncio.shield(recorded)
        except asyncio.CancelledError:
            await recorded
            raise

    async def _record(self, judges: ThreadPoolExecutor, job: Job, replies: list[ChatReply], on_done: OnDone) -> None:
        loop = asyncio.get_running_loop()
        samples = [await loop.run_in_executor(judges, self._judge, job, j, reply) for j, reply in enumerate(replies)]
        on_done(ProblemResult(problem_id=job.problem.id, task=job.problem.task, thinking_budget=job.thinking_budget,
                              samples=samples))

    def _judge(self, job: Job, j: int, reply: ChatReply) -> SampleResult:
        score = judge_message(job.problem, reply.reasoning, reply.content,
                              finished=reply.finish_reason in ("stop", "tool_calls"))
        return SampleResult(index=j, seed=self.settings.seed_of(job, j), correct=score.correct, reason=score.reason,
                            finish_reason=reply.finish_reason, response_tokens=reply.response_tokens,
                            thinking_tokens=reply.thinking_tokens, answer=score.answer[:MAX_ANSWER_CHARS])

    async def _sample(self, client: httpx.AsyncClient, limit: asyncio.Semaphore, job: Job, j: int) -> ChatReply:
        body = chat_body(self.spec, self.settings, job, j)
        async with limit:
            return parse_reply(self.spec, await post_with_retries(client, self.spec, body))


@dataclass(frozen=True)
class ChatReply:
    """What is judged and recorded of one chat completion (its first choice)."""

    reasoning: str | None
    content: str | None
    finish_reason: str
    response_tokens: int
    thinking_tokens: int


def parse_reply(spec: EndpointSpec, data: Any) -> ChatReply:
    """The first choice of a decoded answer. The endpoint is untrusted: a reply of another shape is an
    `EndpointError` naming what is wrong, not an AttributeError in the judge thread."""
    def bad(what: str, value: Any) -> EndpointError:
        return EndpointError(f"endpoint {spec.url} returned a malformed chat completion: {what}, got "
                             f"{str(value)[:200]}")

    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise bad("no choices", data)
    choice = choices[0]
    if not isinstance(choice, dict):
        raise bad("choices[0] is not an object", choice)
    message = choice.get("message") or {}
    if not isinstance(message, dict):
        raise bad("choices[0].message is not an object", message)
    finish_reason = choice.get("finish_reason")
    if not isinstance(finish_reason, str) or not finish_reason:  # (not "truncated": nothing says it was cut off)
        raise bad("choices[0].finish_reason is missing or not a string", choice)
    reasoning, content = message.get("reasoning_content"), message.get("content")
    if not isinstance(reasoning, str | None) or not isinstance(content, str | None):
        raise bad("message content / reasoning_content is not a string or null", message)
    usage = data.get("usage") or {}
    details = (usage.get("completion_tokens_details") or {}) if isinstance(usage, dict) else {}
    if not isinstance(usage, dict) or not isinstance(details, dict):
        raise bad("usage is not an object", usage)
    response_tokens, thinking_tokens = _count(usage, "completion_tokens"), _count(details, "reasoning_tokens")
    if response_tokens is None or thinking_tokens is None:
        raise bad("usage token counts are not counts", usage)
    return ChatReply(reasoning=reasoning, content=content, finish_reason=finish_reason,
                     response_tokens=response_tokens, thinking_tokens=thinking_tokens)


def _count(fields: dict[str, Any], name: str) -> int | None:
    """``fields[name]`` as a token count (absent or null: 0); None when it is no count (text, negative, inf, or too
    big for the report's float means)."""
    value = fields.get(name)
    if value is None:
        return 0
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_COUNT
    return value if ok else None


async def post_with_retries(client: httpx.AsyncClient, spec: EndpointSpec, body: dict[str, Any]) -> Any:
    """The decoded JSON answer to ``body``, retrying 429 / 5xx / transport errors with exponential backoff."""
    failure, retry_after = "", 0.0
    for attempt in range(spec.max_retries + 1):
        if attempt:
            wait = min(spec.max_backoff_s, max(spec.backoff_s * 2 ** (attempt - 1), retry_after))
            logger.warning("%s: %s; retry %d/%d in %.1f s", spec.url, failure, attempt, spec.max_retries, wait)
            await asyncio.sleep(wait)
            retry_after = 0.0
        try:
            # httpx's timeout bounds each read, so a server that trickles bytes would never time out: bound it all
            async with asyncio.timeout(spec.timeout_s):
                answer = await _send(client, spec, body)
        except httpx.TransportError as error:
            failure = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            continue
        except TimeoutError:
            failure = f"no complete answer within {spec.timeout_s:g} s"
            continue
        if is_retryable(answer.status):
            failure = f"status {answer.status}: {_error_text(answer)}"
            retry_after = _retry_after(answer.headers)
            continue
        if answer.status != 200:
            where = answer.headers.get("location")
            moved = f" (a redirect to {where}, not followed)" if where and answer.is_redirect else ""
            raise EndpointError(f"endpoint {spec.url} answered {answer.status}{moved}: {_error_text(answer)}")
        try:
            return json.loads(answer.body)
        except (ValueError, RecursionError):  # (RecursionError: a hostile "[[[[..." nested past the parser's depth)
            raise EndpointError(f"endpoint {spec.url} returned no JSON: {answer.text[:200]!r}") from None
    raise EndpointError(f"endpoint {spec.url} failed after {spec.max_retries + 1} attempts ({failure})")


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, its body read in full (at most `EndpointSpec.max_reply_bytes`, decoded)."""

    status: int
    headers: httpx.Headers
    body: bytes
    is_redirect: bool

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


async def _send(client: httpx.AsyncClient, spec: EndpointSpec, body: dict[str, Any]) -> Answer:
    """POST ``body``, streaming the answer; an `EndpointError` (not retried: the endpoint would send it again) as
    soon as its body is announced (Content-Length) or read (after decoding, so a compressed one counts at its
    decoded size) to be larger than ``spec.max_reply_bytes``."""
    async with client.stream("POST", spec.url, json=body) as response:
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > spec.max_reply_bytes:
            raise _too_large(spec)
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > spec.max_reply_bytes:
                raise _too_large(spec)
            chunks.append(chunk)
        return Answer(response.status_code, response.headers, b"".join(chunks), response.is_redirect)


def _too_large(spec: EndpointSpec) -> EndpointError:
    return EndpointError(f"endpoint {spec.url} sent a reply larger than {spec.max_reply_bytes} bytes, the limit of "
                         f"one reply (max_reply_bytes; default {MAX_REPLY_BYTES // 2**20} MiB); not retried")


def _retry_after(headers: httpx.Headers) -> float:
    """The seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date); 0 when absent or bad."""
    value = headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return 0.0


def _error_text(answer: Answer) -> str:
    """The OpenAI error message of ``answer`` if it has one, else the start of its body."""
    try:
        return str(json.loads(answer.body)["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError, RecursionError):
        return answer.text[:300]


def _first(errors: BaseExceptionGroup) -> BaseException:
    first = errors.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
