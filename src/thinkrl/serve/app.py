"""The FastAPI app of `thinkrl serve`: OpenAI-compatible completions and chat over one `LLMEngine`.

Routes: ``GET /health``, ``GET /v1/models`` (both also answer ``HEAD``), ``POST /v1/completions``,
``POST /v1/chat/completions`` (both streamed as server-sent events with
``"stream": true``). The engine runs in an `EngineLoop` thread started and
stopped with the app's lifespan; handlers only render prompts, submit requests
and format events. Every error is an OpenAI error body
``{"error": {"message", "type", "param", "code"}}``; bad requests are 400 and
name the field. See docs/serving.md.

No request can take the server down: every field is bounded when the body is
validated; bodies over ``max_request_bytes`` are refused (413) before they are read
in full; prompt rendering and tokenisation run in worker threads, so ``/health``
and other clients' streams never wait for them; a request that fails inside the
engine ends with an error for that request only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thinkrl.engine.budget import make_budget_controller
from thinkrl.engine.engine import LLMEngine
from thinkrl.engine.loop import EngineError, EngineLoop
from thinkrl.engine.types import SequenceController
from thinkrl.serve.chat import chat_events, chat_response, encode_text, render_chat
from thinkrl.serve.generation import (
    ControllerFactory,
    RequestFailed,
    ServeContext,
    check_length,
    complete,
    completion_events,
    completion_response,
    plan_choices,
)
from thinkrl.serve.protocol import ChatCompletionRequest, CompletionRequest, RequestError
from thinkrl.serve.responses import ErrorResponse, ModelCard, ModelList
from thinkrl.tokenizer import TextTokenizer

logger = logging.getLogger(__name__)

DEFAULT_COMPLETION_TOKENS = 16
"""``max_tokens`` of a completion request that leaves it out (the OpenAI default); chat uses the context."""

MIN_REQUEST_BYTES = 1 << 20
"""The smallest default body limit (1 MiB); the default grows with the context (64 bytes per token)."""

CLIENT_CLOSED_REQUEST = 499
"""nginx's status for a request whose client went away (only logged: nobody reads it)."""

_T = TypeVar("_T")

_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "object"})
"""Union tags pydantic adds to error locations (``tool_choice.object.function``); left out of ``param``."""


def error_type(status: int) -> str:
    """OpenAI's error type for an HTTP status."""
    if status == 404:
        return "not_found_error"
    if status == 503:
        return "service_unavailable"
    return "invalid_request_error" if 400 <= status < 500 else "server_error"


def budget_controller_factory(tokenizer: TextTokenizer, enforce: bool = True, reflect: bool = False
                              ) -> ControllerFactory:
    """(budget, thinking_open) -> an engine-side `ThinkingBudgetController` (`make_budget_controller`).

    Args:
        tokenizer: the served tokenizer (its think tags and stop tokens).
        enforce: force the end of thinking after ``budget`` thinking tokens.
        reflect: force the periodic "I have used N tokens..." reflections.

    With neither, budgets are only stated in the prompt and the factory returns None.
    """
    if not enforce and not reflect:
        return lambda budget, thinking_open: None

    def factory(budget: int, thinking_open: bool) -> SequenceController | None:
        return make_budget_controller(tokenizer, budget, enforce=enforce, reflect=reflect,
                                      thinking_open=thinking_open)

    return factory


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 before it is read in full."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(send, declared.decode("latin-1"))
        chunks, size, more = [], 0, True
        while more:  # chunked bodies: read up to the limit, then replay them to the app
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await self._refuse(send, f"more than {size}")
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)

    async def _refuse(self, send: Send, size: str) -> None:
        response = _error(413, f"the request body ({size} bytes) is larger than the limit of {self.max_bytes} "
                               "bytes (thinkrl serve --max-request-bytes)")
        await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def create_app(engine: LLMEngine, tokenizer: TextTokenizer, *, model_name: str,
               make_controller: ControllerFactory | None = None, max_request_bytes: int | None = None) -> FastAPI:
    """An app serving ``engine`` as ``model_name``.

    Args:
        engine: the engine; the app's `EngineLoop` thread owns it from startup to shutdown.
        tokenizer: renders chat prompts, encodes string prompts, decodes responses.
        model_name: the id listed by ``/v1/models``; requests must name it.
        make_controller: (thinking budget, prompt opened thinking) -> engine-side controller;
            default `budget_controller_factory(tokenizer)` (enforced, no reflections).
        max_request_bytes: larger bodies are refused (413); default max(1 MiB, 64 bytes x max_seq_len).
    """
    max_seq_len = engine.scheduler.max_seq_len
    ctx = ServeContext(
        runner=EngineLoop(engine), tokenizer=tokenizer, model_name=model_name,
        max_seq_len=max_seq_len, vocab_size=engine.model.config.vocab_size,
        make_controller=make_controller or budget_controller_factory(tokenizer),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.runner.start()
        try:
            yield
        finally:
            ctx.runner.stop()

    app = FastAPI(title="thinkrl", lifespan=lifespan)
    app.state.ctx = ctx
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes or max(MIN_REQUEST_BYTES, 64 * max_seq_len))
    _add_error_handlers(app)

    @app.get("/health")
    async def health() -> JSONResponse:
        if not ctx.runner.is_running:
            return _error(503, f"engine is not running: {ctx.runner.error or 'stopped'}")
        return JSONResponse({"status": "ok", "engine_steps": ctx.runner.num_steps})

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=ctx.model_name, max_model_len=ctx.max_seq_len)])

    for path, endpoint in (("/health", health), ("/v1/models", models)):  # HEAD: the GET's status, headers, no body
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        _check_model(ctx, body.model)
        body.check()
        response_id = f"cmpl-{uuid.uuid4().hex}"
        prompt_ids = await run_in_threadpool(lambda: [_prompt_ids(ctx, p) for p in body.prompts()])
        choices = []
        for k, ids in enumerate(prompt_ids):
            max_tokens = check_length(ctx, len(ids), body.max_tokens, DEFAULT_COMPLETION_TOKENS)
            choices += plan_choices(body, ids, max_tokens, prompt_index=k, request_prefix=response_id,
                                    vocab_size=ctx.vocab_size)
        if body.stream:
            return _sse(completion_events(ctx, response_id, choices, body.include_usage))
        results = await _unless_disconnected(request, complete(ctx, choices))
        if results is None:
            return _client_gone()
        return completion_response(ctx, response_id, choices, results)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        _check_model(ctx, body.model)
        body.check()
        plan = await run_in_threadpool(render_chat, ctx, body)
        max_tokens = check_length(ctx, len(plan.prompt_ids), body.token_limit, None)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        choices = plan_choices(body, plan.prompt_ids, max_tokens, prompt_index=0, request_prefix=rid,
                               vocab_size=ctx.vocab_size,
                               controller=lambda: ctx.make_controller(plan.budget, plan.thinking_open))
        if body.stream:
            return _sse(chat_events(ctx, rid, plan, choices, body.include_usage))
        results = await _unless_disconnected(request, complete(ctx, choices))
        if results is None:
            return _client_gone()
        return chat_response(ctx, rid, plan, choices, results)

    return app


def _check_model(ctx: ServeContext, name: str) -> None:
    if name != ctx.model_name:
        raise RequestError(f"the model {name!r} does not exist; this server serves {ctx.model_name!r}", "model",
                           status=404)


def _prompt_ids(ctx: ServeContext, prompt: str | list[int]) -> list[int]:
    if isinstance(prompt, str):
        return encode_text(ctx.tokenizer, prompt, "prompt")
    bad = [i for i in prompt if not 0 <= i < ctx.vocab_size]
    if bad:
        raise RequestError(f"prompt token id {bad[0]} is outside the vocabulary [0, {ctx.vocab_size})", "prompt")
    return list(prompt)


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, _T]) -> _T | None:
    """``await work``, or None when the client disconnects first (``work`` is then cancelled).

    Why: uvicorn does not cancel a handler whose client went away, so a non-streamed request would keep its
    engine slots until its last token; cancelling ``complete`` aborts its engine requests (`stream_events`).
    """
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this handler is cancelled itself (server shutdown)
        gone.cancel()
        task.cancel()  # no-op once done
    if not task.cancelled() and task.done():
        return task.result()  # the result, or the request's own error (a 4xx/5xx body)
    with contextlib.suppress(asyncio.CancelledError):
        await task  # let its cleanup (the engine aborts) run
    return None


async def _disconnected(request: Request) -> None:
    """Return once the client has closed the connection (the body was read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _client_gone() -> JSONResponse:
    return _error(CLIENT_CLOSED_REQUEST, "the client closed the connection before the response was ready")


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _error(status: int, message: str, param: str | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorResponse.of(message, error_type(status), param), status_code=status, headers=headers)


def _validation_error(error: RequestValidationError, content_type: str | None = None) -> JSONResponse:
    """A 400 naming the first invalid field (or what is wrong with the body as a whole)."""
    first: dict[str, Any] = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    kind = first.get("type")
    if kind == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", first.get("msg"))
        return _error(400, f"the request body is not valid JSON: {reason}")
    if isinstance(first.get("input"), bytes):  # FastAPI reads JSON only when the Content-Type says so
        return _error(400, "the request body must be JSON, sent with the header 'Content-Type: application/json' "
                           f"(the request's Content-Type is {content_type or 'missing'})")
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    # Union members add their type name to the location (prompt.str, prompt.list[int]...).
    param = ".".join(p for p in loc if p not in _TYPE_TAGS and "[" not in p and "-" not in p) or None
    if param is None and kind == "missing":
        return _error(400, "the request body is required: a JSON object")
    if param is None:
        return _error(400, f"the request body must be a JSON object: {first.get('msg')}")
    message = f"{param} is required" if kind == "missing" else f"{param}: {first.get('msg')}"
    return _error(400, message, param)


def _allowed_methods(request: Request) -> list[str]:
    """The methods the routes of ``request``'s path answer (GET and HEAD are separate routes)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return _validation_error(error, request.headers.get("content-type"))

    @app.exception_handler(RequestError)
    async def on_request_error(request: Request, error: RequestError) -> JSONResponse:
        return _error(error.status, str(error), error.param)

    @app.exception_handler(EngineError)
    async def on_engine_error(request: Request, error: EngineError) -> JSONResponse:
        return _error(503, str(error))

    @app.exception_handler(RequestFailed)
    async def on_request_failed(request: Request, error: RequestFailed) -> JSONResponse:
        return _error(500, str(error))

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, error: HTTPException) -> JSONResponse:
        if error.status_code == 400:  # FastAPI could not decode the body (bad UTF-8, nesting too deep, huge ints)
            return _error(400, f"the request body is not valid JSON: {error.detail}")
        headers = error.headers
        if error.status_code == 405:  # Allow: every method of the path (Starlette names only the first route's)
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return _error(error.status_code, str(error.detail), headers=headers)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error in %s %s", request.method, request.url.path)
        return _error(500, f"internal error: {type(error).__name__}")
