"""Multi-turn rollouts with tool calls, over the engine client (``submit(requests, sink)``).

One episode alternates assistant turns and tool turns in one growing token sequence:

1. an assistant turn is an engine request (the prompt so far) that stops at the tool-call closing tag
   (`thinkrl.tokenizer.tool_calls.tool_stop`) or at the end of the turn;
2. when it stopped at a tool call, the calls are read with the one parser (`read_tool_calls`) and run in a
   thread pool, so the engine keeps decoding every other episode meanwhile; a call that cannot be read,
   names an unknown tool, has bad arguments, raises or runs past ``tool_timeout_s`` gives an ``error: ...``
   observation, never an exception;
3. the results are rendered as ``tool`` turns by the chat template (`tool_turn_suffix`), encoded, and appended
   as forced tokens (``response_mask`` False, log-prob 0: no loss on them);
4. the episode is resubmitted with its whole prefix (prompt + everything so far) as the next request's prompt.

Token-in/token-out: the episode's `Trajectory` holds exactly the tokens each turn's request sampled, with their
behaviour log-probs and weight versions, in order; nothing sampled is decoded and re-encoded (each resubmitted
prompt is the previous ids plus the tool tokens, checked). The thinking budget applies per assistant turn: each
turn gets its own `ThinkingBudgetController` with the prompt's budget, so a budget of B lets every turn think up
to B tokens. Limits (`AgentLimits`): assistant turns, tool time, total response tokens; each hit is counted in
`Episode.limit`.
"""

from __future__ import annotations

import functools
import logging
import queue
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from thinkrl.engine import Request, SamplingParams, TokenEvent
from thinkrl.engine.budget import ThinkingBudgetController, budget_vocab
from thinkrl.records import Trajectory
from thinkrl.rollout.tools import Tool, ToolResult, clip
from thinkrl.tokenizer import TextTokenizer
from thinkrl.tokenizer.tool_calls import ToolCall, read_tool_calls, tool_stop, tool_turn_suffix

logger = logging.getLogger(__name__)

Sink = Callable[[TokenEvent | BaseException], None]


class SubmitClient(Protocol):
    """What the multi-turn loop needs of the engine: the client's ``submit`` (`thinkrl.engine.loop.EngineLoop`)."""

    def submit(self, requests: Sequence[Request], sink: Sink, *, finished_only: bool = False) -> None: ...


@dataclass(frozen=True)
class AgentLimits:
    """Limits of one episode.

    Fields:
        max_turns: assistant turns; a tool call in the last one ends the episode ("max_turns").
        max_tokens_per_turn: new tokens of one assistant turn.
        max_total_tokens: response tokens of the whole episode (sampled and tool tokens); a turn or a tool
            result that would pass it ends the episode ("max_total_tokens").
        tool_timeout_s: wall-clock seconds of one tool call; past it the model sees a timeout error.
        max_tool_output_chars: a call's output (an ``error: ...`` observation too) and its error text are cut to this
            many characters.
        max_calls_per_turn: calls run per turn (the rest get an error observation).
    """

    max_turns: int = 8
    max_tokens_per_turn: int = 256
    max_total_tokens: int = 1024
    tool_timeout_s: float = 10.0
    max_tool_output_chars: int = 2000
    max_calls_per_turn: int = 4


@dataclass(frozen=True)
class EpisodeRequest:
    """One episode to run: its first prompt and how to sample each turn.

    Fields:
        prompt_ids: (P,) the rendered opening conversation with the generation prompt.
        params: sampling of every turn (its seed is varied per turn; max_new_tokens is capped by the limits).
        thinking_budget: rendered in the prompt; applied per assistant turn.
        thinking_open: the prompt ends inside an open thinking block.
        request_id: the episode's id (turn requests are ``(request_id, turn)``).
    """

    prompt_ids: tuple[int, ...]
    params: SamplingParams
    thinking_budget: int = -1
    thinking_open: bool = False
    request_id: Any = None


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call of an episode: what was asked and what came back."""

    turn: int
    name: str
    arguments: dict[str, Any]
    result: ToolResult
    well_formed: bool


@dataclass
class Episode:
    """A finished multi-turn rollout.

    Fields:
        trajectory: prompt = the opening prompt; response = every turn's sampled tokens and the tool tokens
            between them (``response_mask`` False on tool tokens and on the budget controller's forced ones).
        turn_spans: (start, end) of each assistant turn's tokens in the response, in order.
        turn_texts: each assistant turn decoded (special tokens kept).
        calls: every tool call, in order.
        limit: the limit that ended the episode ("max_turns", "max_total_tokens", "length" for one turn's
            max_new_tokens), or None when the model ended it.
        thinking_tokens: thinking tokens counted over every turn.
    """

    trajectory: Trajectory
    turn_spans: list[tuple[int, int]] = field(default_factory=list)
    turn_texts: list[str] = field(default_factory=list)
    calls: list[ToolCallRecord] = field(default_factory=list)
    limit: str | None = None
    thinking_tokens: int = 0

    @property
    def final_turn(self) -> str:
        return self.turn_texts[-1] if self.turn_texts else ""

    @property
    def finished(self) -> bool:
        """The model ended its last turn itself (not cut off by a limit or an error)."""
        return self.limit is None and self.trajectory.finish_reason == "stop"


class EpisodeState:
    """One episode in flight: its ids so far (prompt excluded), their log-probs, mask and versions, and the calls of
    its last turn while their tools run. `MultiTurnRunner` (and the streaming agent driver) advance it."""

    def __init__(self, item: EpisodeRequest) -> None:
        self.item = item
        self.response: list[int] = []
        self.logprobs: list[float] = []
        self.mask: list[bool] = []
        self.versions: list[int] = []
        self.episode = Episode(Trajectory(list(item.prompt_ids), [], []))
        self.thinking_open = item.thinking_open
        self.calls: list[ToolCall] = []  # the calls of the last turn, while their tools run

    def extend(self, ids: Sequence[int], logprobs: Sequence[float], mask: Sequence[bool],
               versions: Sequence[int]) -> None:
        self.response += ids
        self.logprobs += logprobs
        self.mask += mask
        self.versions += versions


def _post_tool_results(inbox: queue.SimpleQueue[tuple[int, Any]], index: int,
                       future: Future[list[ToolResult]]) -> None:
    """Hand episode ``index``'s finished tool calls (their results, or the error) to the episode loop."""
    inbox.put((index, future.exception() or future.result()))


def run_tool_calls(calls: Sequence[ToolCall], tools: dict[str, Tool], limits: AgentLimits) -> list[ToolResult]:
    """Run each call (in its own daemon thread, waited on for at most ``tool_timeout_s``); never raises."""
    results = []
    for index, call in enumerate(calls):
        if index >= limits.max_calls_per_turn:
            results.append(ToolResult.failure(f"at most {limits.max_calls_per_turn} tool calls per turn"))
        elif not call.ok:
            results.append(ToolResult.failure(f"malformed tool call: {call.error}"))
        elif call.name not in tools:
            results.append(ToolResult.failure(f"unknown tool {clip(repr(call.name))}; available: {', '.join(tools)}"))
        else:
            results.append(_run_with_timeout(tools[call.name], call.arguments, limits.tool_timeout_s))
    return [result.cut(limits.max_tool_output_chars) for result in results]


def _run_with_timeout(tool: Tool, arguments: dict[str, Any], timeout_s: float) -> ToolResult:
    box: list[ToolResult] = []
    # A thread per call: a tool that never returns keeps only its own daemon thread, not a pool worker.
    worker = threading.Thread(target=lambda: box.append(tool.run(arguments)), daemon=True, name=f"tool-{tool.name}")
    worker.start()
    worker.join(timeout_s)
    if not box:
        return ToolResult.failure(f"timeout: {tool.name} ran longer than {timeout_s:g} s")
    return box[0]


class MultiTurnRunner:
    """Runs episodes over an engine client (see the module docstring). One runner serves many `run` calls.

    Args:
        client: the engine client (``submit``).
        tokenizer: the policy's tokenizer (chat template, tool-call tags).
        tools: the tools the model may call.
        limits: per-episode limits.
        enforce_budget: enforce a finite thinking budget per turn (else only count).
        max_workers: threads running tool calls at once.
    """

    def __init__(self, client: SubmitClient, tokenizer: TextTokenizer, tools: Sequence[Tool],
                 limits: AgentLimits | None = None, *, enforce_budget: bool = False, max_workers: int = 8) -> None:
        self.client, self.tokenizer = client, tokenizer
        self.tools = {tool.name: tool for tool in tools}
        self.schemas = [tool.schema() for tool in tools]
        self.limits = limits or AgentLimits()
        self.enforce_budget, self.max_workers = enforce_budget, max_workers
        self.stop_ids, self.stop_strings = tool_stop(tokenizer)
        self.tags = tokenizer.think_tags
        self._marks = _control_marks(tokenizer)

    def run(self, items: Sequence[EpisodeRequest]) -> list[Episode]:
        """Run every episode to its end; episodes in the order of ``items``.

        Raises:
            RuntimeError: a turn failed in the engine (finish reason "error").
            EngineError: the engine loop stopped.
        """
        states = [EpisodeState(item) for item in items]
        inbox: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        with ThreadPoolExecutor(self.max_workers, thread_name_prefix="thinkrl-tool") as pool:
            first = [self.turn_request(state, (i, state.item.request_id, 0)) for i, state in enumerate(states)]
            self.client.submit([r for r, _ in first], self._sink(inbox), finished_only=True)
            controllers = {i: c for i, (_, c) in enumerate(first)}
            pending = len(states)
            while pending:
                index, item = inbox.get()
                if isinstance(item, BaseException):
                    raise item
                state = states[index]
                if isinstance(item, TokenEvent):
                    state.calls = self.finish_turn(state, item.trajectory, controllers.pop(index)) or []
                    if not state.calls:
                        pending -= 1
                    else:
                        future = pool.submit(run_tool_calls, state.calls, self.tools, self.limits)
                        future.add_done_callback(functools.partial(_post_tool_results, inbox, index))
                elif self.add_tool_turn(state, item):
                    turn_id = (index, state.item.request_id, len(state.episode.turn_spans))
                    request, controllers[index] = self.turn_request(state, turn_id)
                    self.client.submit([request], self._sink(inbox), finished_only=True)
                else:
                    pending -= 1
        return [self.close_episode(state) for state in states]

    @staticmethod
    def _sink(inbox: queue.SimpleQueue) -> Sink:
        def sink(item: TokenEvent | BaseException) -> None:
            inbox.put((item.request_id[0], item) if isinstance(item, TokenEvent) else (_index_of(item), item))
        return sink

    def turn_request(self, state: EpisodeState, request_id: Any) -> tuple[Request, ThinkingBudgetController]:
        """The engine request of ``state``'s next assistant turn (prompt = the episode's ids so far; a fresh
        thinking-budget controller: the budget applies per turn) and its controller."""
        item, turn = state.item, len(state.episode.turn_spans)
        budget = item.thinking_budget
        controller = ThinkingBudgetController(budget_vocab(self.tokenizer), budget,
                                              enforce=self.enforce_budget and budget >= 0,
                                              thinking_open=state.thinking_open)
        room = self.limits.max_total_tokens - len(state.response)
        seed = None if item.params.seed is None else (item.params.seed + 1_000_003 * turn) % (1 << 62)
        params = SamplingParams(
            max_new_tokens=max(1, min(item.params.max_new_tokens, self.limits.max_tokens_per_turn, room)),
            temperature=item.params.temperature, top_p=item.params.top_p, top_k=item.params.top_k, seed=seed,
            stop_token_ids=self.stop_ids, stop_strings=self.stop_strings, top_logprobs=item.params.top_logprobs)
        prompt = list(item.prompt_ids) + state.response
        return Request(prompt, params, request_id=request_id, controller=controller), controller

    def finish_turn(self, state: EpisodeState, piece: Trajectory, controller: ThinkingBudgetController
                    ) -> list[ToolCall] | None:
        """Append a finished turn (``piece``: its whole response, prompt = the episode's ids before it); returns
        its tool calls to run, or None when the episode is over."""
        if piece.finish_reason == "error":
            raise RuntimeError(f"episode {state.item.request_id}: a turn failed in the engine: {piece.error}")
        if piece.prompt_ids != list(state.item.prompt_ids) + state.response:
            raise AssertionError("a resubmitted turn's prompt is not the episode's ids so far")
        episode = state.episode
        start = len(state.response)
        state.extend(piece.response_ids, piece.logprobs, piece.response_mask, piece.token_versions)
        episode.turn_spans.append((start, len(state.response)))
        episode.turn_texts.append(self.tokenizer.decode(piece.response_ids))
        episode.thinking_tokens += controller.thinking_tokens
        episode.trajectory.finish_reason = piece.finish_reason
        if not self._ends_with_call(piece):
            if piece.finish_reason == "length":
                episode.limit = "max_total_tokens" if len(state.response) >= self.limits.max_total_tokens else "length"
            return None
        calls = read_tool_calls(episode.turn_texts[-1], self.tags, self.schemas)
        if not calls:  # the closing tag without an opening one: still a (malformed) call
            calls = [ToolCall(name="", raw=episode.turn_texts[-1], error="tool-call closing tag without a call")]
        if len(episode.turn_spans) >= self.limits.max_turns:
            episode.limit = "max_turns"
            self._record(episode, calls, [ToolResult.failure("turn limit reached")] * len(calls))
            return None
        return calls

    def _ends_with_call(self, piece: Trajectory) -> bool:
        if piece.finish_reason != "stop" or not piece.response_ids:
            return False
        if not self.stop_strings:
            return piece.response_ids[-1] == self.stop_ids[-1]
        return self.tags.tool_close in self.tokenizer.decode(piece.response_ids[-4:])

    def _record(self, episode: Episode, calls: Sequence[ToolCall], results: Sequence[ToolResult]) -> None:
        turn = len(episode.turn_spans) - 1
        for call, result in zip(calls, results, strict=True):
            episode.calls.append(ToolCallRecord(turn, call.name, dict(call.arguments), result, call.ok))

    def add_tool_turn(self, state: EpisodeState, results: list[ToolResult] | BaseException) -> bool:
        """Append the tool turn's tokens; False when the episode ends instead (a limit)."""
        if isinstance(results, BaseException):  # run_tool_calls never raises; a bug here must not hang the loop
            raise results
        episode = state.episode
        self._record(episode, state.calls, results)
        ids, suffix = self._tool_turn([r.output for r in results], state.item.thinking_budget)
        if len(state.response) + len(ids) >= self.limits.max_total_tokens:
            episode.limit = "max_total_tokens"
            episode.trajectory.finish_reason = "length"
            return False
        version = state.versions[-1] if state.versions else 0
        state.extend(ids, [0.0] * len(ids), [False] * len(ids), [version] * len(ids))
        state.thinking_open = self.tags.ends_inside_thinking(suffix)
        return True

    def _tool_turn(self, outputs: list[str], budget: int) -> tuple[list[int], str]:
        """The tool turn's ids and its template text. A control-token string in an output (``<seed:eos>``, a
        thinking or tool-call tag) is encoded as plain text pieces: a tool result (untrusted text, e.g. what a
        program printed) cannot end its turn, inject a fake turn or open a thinking block for the next turn."""
        suffix = tool_turn_suffix(self.tokenizer, outputs, thinking_budget=budget)
        if not any(self._marks.search(output) for output in outputs):
            return self.tokenizer.encode(suffix), suffix
        frame = tool_turn_suffix(self.tokenizer, [f"\x00{i}\x00" for i in range(len(outputs))],
                                 thinking_budget=budget)
        pieces = re.split("\x00(\\d+)\x00", frame)  # template, output index, template, ...
        if len(pieces) != 2 * len(outputs) + 1:  # a template that rewrites tool contents: its own rendering
            return self.tokenizer.encode(suffix), frame
        ids: list[int] = []
        for k, piece in enumerate(pieces):
            ids += self._plain(outputs[int(piece)]) if k % 2 else self.tokenizer.encode(piece)
        return ids, frame

    def _plain(self, text: str) -> list[int]:
        """Ids of ``text`` with every control-token string split so that it encodes as ordinary pieces."""
        ids: list[int] = []
        start = 0
        for match in self._marks.finditer(text):
            ids += self.tokenizer.encode(text[start:match.start()]) + self.tokenizer.encode(match[0][0])
            ids += self._plain(match[0][1:])
            start = match.end()
        return ids + self.tokenizer.encode(text[start:])

    def close_episode(self, state: EpisodeState) -> Episode:
        """The finished `Episode` of ``state``: its trajectory holds every turn's and tool turn's tokens."""
        episode = state.episode
        old = episode.trajectory
        episode.trajectory = Trajectory(
            prompt_ids=list(state.item.prompt_ids), response_ids=state.response, logprobs=state.logprobs,
            finish_reason="length" if episode.limit else old.finish_reason, response_mask=state.mask,
            token_versions=state.versions, text=self.tokenizer.decode(state.response),
            thinking_budget=state.item.thinking_budget, thinking_tokens=episode.thinking_tokens)
        if episode.limit:
            logger.debug("episode %s ended by limit %s", state.item.request_id, episode.limit)
        return episode


def _control_marks(tokenizer: TextTokenizer) -> re.Pattern[str]:
    """Matches the strings `TextTokenizer.encode` turns into control tokens (the vocabulary's added tokens) and the
    thinking / tool-call tags (plain text in some vocabularies), longest first."""
    tags = tokenizer.think_tags
    marks = {token.content for token in tokenizer.backend.get_added_tokens_decoder().values()}
    marks |= {tags.open, tags.close, tags.reflect_open, tags.reflect_close, tags.tool_open, tags.tool_close}
    marks = {mark for mark in marks if len(mark) > 1}
    return re.compile("|".join(re.escape(m) for m in sorted(marks, key=len, reverse=True)) or "(?!)")


def _index_of(error: BaseException) -> int:
    """Errors from the engine client are not tied to one request: report them against episode 0 (the loop raises)."""
    return 0
