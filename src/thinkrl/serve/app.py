"""The FastAPI app of `thinkrl serve`: OpenAI-compatible completions and chat over one `LLMEngine`.

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/completions``,
``POST /v1/chat/completions`` (both streamed as server-sent events with
``"stream": true``). The engine runs in an `EngineLoop` thread started and
stopped with the app's lifespan; handlers only render prompts, submit requests
and format events. Every error is an OpenAI error body
``{"error": {"message", "type", "param", "code"}}``; bad requests are 400 and
name the field. See docs/serving.md.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from thinkrl.engine.budget import make_budget_controller
from thinkrl.engine.engine import LLMEngine
from thinkrl.engine.loop import EngineError, EngineLoop
from thinkrl.engine.types import SequenceController
from thinkrl.serve.generation import (
    ControllerFactory,
    RequestError,
    ServeContext,
    chat_events,
    chat_response,
    check_length,
    complete,
    completion_events,
    completion_response,
    plan_choices,
)
from thinkrl.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    ErrorInfo,
    ErrorResponse,
    ModelCard,
    ModelList,
)
from thinkrl.serve.text import prompt_thinking_state
from thinkrl.tokenizer import TextTokenizer

logger = logging.getLogger(__name__)

DEFAULT_COMPLETION_TOKENS = 16
"""``max_tokens`` of a completion request that leaves it out (the OpenAI default); chat uses the context."""

_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none"})
_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 503: "service_unavailable"}


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


def create_app(engine: LLMEngine, tokenizer: TextTokenizer, *, model_name: str,
               make_controller: ControllerFactory | None = None) -> FastAPI:
    """An app serving ``engine`` as ``model_name``.

    Args:
        engine: the engine; the app's `EngineLoop` thread owns it from startup to shutdown.
        tokenizer: renders chat prompts, encodes string prompts, decodes responses.
        model_name: the id listed by ``/v1/models``; requests must name it.
        make_controller: (thinking budget, prompt opened thinking) -> engine-side controller;
            default `budget_controller_factory(tokenizer)` (enforced, no reflections).
    """
    ctx = ServeContext(
        runner=EngineLoop(engine), tokenizer=tokenizer, model_name=model_name,
        max_seq_len=engine.scheduler.max_seq_len, vocab_size=engine.model.config.vocab_size,
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
    _add_error_handlers(app)

    @app.get("/health")
    async def health() -> JSONResponse:
        if not ctx.runner.is_running:
            return _error(503, f"engine is not running: {ctx.runner.error or 'stopped'}")
        return JSONResponse({"status": "ok", "engine_steps": ctx.runner.num_steps})

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=ctx.model_name, max_model_len=ctx.max_seq_len)])

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest) -> Any:
        _check_model(ctx, body.model)
        response_id = f"cmpl-{uuid.uuid4().hex}"
        choices = []
        for k, prompt in enumerate(body.prompts()):
            ids = _prompt_ids(ctx, prompt)
            max_tokens = check_length(ctx, len(ids), body.max_tokens, DEFAULT_COMPLETION_TOKENS)
            choices += plan_choices(body, ids, max_tokens, prompt_index=k, request_prefix=response_id)
        if body.stream:
            return _sse(completion_events(ctx, response_id, choices, body.include_usage))
        trajectories = await complete(ctx, choices)
        return completion_response(ctx, response_id, choices, trajectories, body.logprobs is not None)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        _check_model(ctx, body.model)
        messages = [m.to_template() for m in body.messages]
        budget = body.thinking_budget
        try:
            prompt_text = tokenizer.apply_chat_template(messages, thinking_budget=None if budget == -1 else budget)
        except ValueError as error:
            raise RequestError(f"messages could not be rendered with the chat template: {error}", "messages") from None
        ids = tokenizer.encode(prompt_text)
        max_tokens = check_length(ctx, len(ids), body.token_limit, None)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        state = prompt_thinking_state(prompt_text, tokenizer.think_tags)
        choices = plan_choices(body, ids, max_tokens, prompt_index=0, request_prefix=rid,
                               controller=lambda: ctx.make_controller(budget, state == "open"))
        if body.stream:
            return _sse(chat_events(ctx, rid, choices, state, body.include_usage))
        trajectories = await complete(ctx, choices)
        return chat_response(ctx, rid, choices, trajectories, state, body.logprobs)

    return app


def _check_model(ctx: ServeContext, name: str) -> None:
    if name != ctx.model_name:
        raise RequestError(f"the model {name!r} does not exist; this server serves {ctx.model_name!r}", "model",
                           status=404)


def _prompt_ids(ctx: ServeContext, prompt: str | list[int]) -> list[int]:
    if isinstance(prompt, str):
        ids = ctx.tokenizer.encode(prompt)
        if not ids:
            raise RequestError("prompt encodes to no tokens", "prompt")
        return ids
    bad = [i for i in prompt if not 0 <= i < ctx.vocab_size]
    if bad:
        raise RequestError(f"prompt token id {bad[0]} is outside the vocabulary [0, {ctx.vocab_size})", "prompt")
    return list(prompt)


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    info = ErrorInfo(message=message, type=_ERROR_TYPES.get(status, "server_error"), param=param)
    return JSONResponse(ErrorResponse(error=info).model_dump(), status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        # Union members add their type name to the location (prompt.str, prompt.list[int]...).
        param = ".".join(p for p in loc if p not in _TYPE_TAGS and "[" not in p) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        if first.get("type") == "missing":
            message = f"{param} is required"
        return _error(400, message, param)

    @app.exception_handler(RequestError)
    async def on_request_error(request: Request, error: RequestError) -> JSONResponse:
        return _error(error.status, str(error), error.param)

    @app.exception_handler(EngineError)
    async def on_engine_error(request: Request, error: EngineError) -> JSONResponse:
        return _error(503, str(error))

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))
