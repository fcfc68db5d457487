"""Evaluation against any OpenAI-compatible chat endpoint (``thinkrl serve``, vLLM, SGLang, a hosted API).

Each sample is one ``POST {base_url}/chat/completions`` with the problem's user turn, its own seed, the run's
temperature / top_p / max_tokens and, for a finite budget, ``chat_template_kwargs: {"thinking_budget": N}``
(vLLM's convention, which ``thinkrl serve`` also reads). At most ``concurrency`` requests are in flight
(an asyncio semaphore over one `httpx.AsyncClient`). A 429, a 5xx, a timeout or a connection error is retried
``max_retries`` times with exponential backoff (``backoff_s * 2**attempt``, at most ``max_backoff_s``); another
status, or a retryable one that persists, stops the run with an `EndpointError` naming the URL and the answer.
Records already written stay, so ``--resume`` continues where it stopped.

The message's ``reasoning_content`` and ``content`` are judged by `thinkrl.eval.samplers.judge_message` (the same
verifiers as local sampling), in one worker thread so that the event loop keeps sending requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from thinkrl.eval.records import Job, ProblemResult, SampleResult
from thinkrl.eval.samplers import MAX_ANSWER_CHARS, OnDone, SampleSettings, judge_message

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


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
        timeout_s: per-request timeout (connect, read, write).
    """

    base_url: str
    model: str
    api_key: str | None = None
    concurrency: int = 8
    max_retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if self.concurrency < 1 or self.max_retries < 0 or self.backoff_s < 0 or self.timeout_s <= 0:
            raise ValueError(f"concurrency ({self.concurrency}) must be >= 1, max_retries ({self.max_retries}) and "
                             f"backoff_s ({self.backoff_s}) >= 0, timeout_s ({self.timeout_s}) > 0")

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
            async with httpx.AsyncClient(timeout=self.spec.timeout_s, headers=headers) as client:
                try:
                    async with asyncio.TaskGroup() as group:
                        for job in jobs:
                            group.create_task(self._job(client, limit, judges, job, on_done))
                except BaseExceptionGroup as errors:  # the first failure stops the run; report it alone
                    raise _first(errors) from None

    async def _job(self, client: httpx.AsyncClient, limit: asyncio.Semaphore, judges: ThreadPoolExecutor,
                   job: Job, on_done: OnDone) -> None:
        messages = await asyncio.gather(*(self._sample(client, limit, job, j) for j in range(self.settings.samples)))
        loop = asyncio.get_running_loop()
        samples = [await loop.run_in_executor(judges, self._judge, job, j, message)
                   for j, message in enumerate(messages)]
        on_done(ProblemResult(problem_id=job.problem.id, task=job.problem.task, thinking_budget=job.thinking_budget,
                              samples=samples))

    def _judge(self, job: Job, j: int, response: dict[str, Any]) -> SampleResult:
        choice = response["choices"][0]
        message, finish = choice.get("message") or {}, str(choice.get("finish_reason"))
        reasoning, content = message.get("reasoning_content"), message.get("content")
        score = judge_message(job.problem, reasoning, content, finished=finish in ("stop", "tool_calls"))
        usage = response.get("usage") or {}
        details = usage.get("completion_tokens_details") or {}
        return SampleResult(index=j, seed=self.settings.seed_of(job, j), correct=score.correct, reason=score.reason,
                            finish_reason=finish, response_tokens=int(usage.get("completion_tokens") or 0),
                            thinking_tokens=int(details.get("reasoning_tokens") or 0),
                            answer=score.answer[:MAX_ANSWER_CHARS])

    async def _sample(self, client: httpx.AsyncClient, limit: asyncio.Semaphore, job: Job, j: int) -> dict[str, Any]:
        body = chat_body(self.spec, self.settings, job, j)
        async with limit:
            return await post_with_retries(client, self.spec, body)


async def post_with_retries(client: httpx.AsyncClient, spec: EndpointSpec, body: dict[str, Any]) -> dict[str, Any]:
    """The decoded JSON answer to ``body``, retrying 429 / 5xx / transport errors with exponential backoff."""
    failure = ""
    for attempt in range(spec.max_retries + 1):
        if attempt:
            wait = min(spec.max_backoff_s, spec.backoff_s * 2 ** (attempt - 1))
            logger.warning("%s: %s; retry %d/%d in %.1f s", spec.url, failure, attempt, spec.max_retries, wait)
            await asyncio.sleep(wait)
        try:
            response = await client.post(spec.url, json=body)
        except httpx.TransportError as error:
            failure = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            continue
        if response.status_code in RETRY_STATUSES:
            failure = f"status {response.status_code}: {_error_text(response)}"
            continue
        if response.status_code != 200:
            raise EndpointError(f"endpoint {spec.url} answered {response.status_code}: {_error_text(response)}")
        try:
            data = response.json()
            data["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise EndpointError(f"endpoint {spec.url} returned no chat choice: {response.text[:200]!r}") from None
        return data
    raise EndpointError(f"endpoint {spec.url} failed after {spec.max_retries + 1} attempts ({failure})")


def _error_text(response: httpx.Response) -> str:
    """The OpenAI error message of ``response`` if it has one, else the start of its body."""
    try:
        return str(response.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


def _first(errors: BaseExceptionGroup) -> BaseException:
    first = errors.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
