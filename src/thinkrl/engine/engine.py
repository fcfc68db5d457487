"""The generation engine: owns the loop, the KV cache and the model runner.

Each ``step()``: admit waiting requests into free slots and prefill their prompts,
then decode one token for every running sequence, sample, check stops (one host
sync per forward), and release finished slots so the next request takes them at
once (continuous batching). The scheduler (`Scheduler`) is pure bookkeeping; the
sampling maths lives in `sampling.py`. The engine knows nothing about chat
formats: prompts arrive as token ids.

On CUDA the decode forward of a step where every sequence feeds one token is a
CUDA-graph replay (`cuda_graph.DecodeGraphs`); prefill, steps that feed forced
tokens, sampling and stop checks run eagerly. On CPU everything is eager unless ``compile_decode`` (then that step
is compiled: `compiled_decode.CompiledDecode`); a float32 model's linear layers run on weights prepacked for oneDNN
(`thinkrl.model.pack_linears`).

The engine owns its model's weights: they change only through `update_weights` (named
tensors copied in place, between steps), which also sets the version that every token
sampled afterwards records. A request that fails on its own (a seed out of range, a
controller that raises) ends with finish reason "error"; the other requests go on.
See docs/engine.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from thinkrl.engine.compiled_decode import CompiledDecode
from thinkrl.engine.cuda_graph import DecodeGraphs, graphs_unsupported_reason
from thinkrl.engine.sampling import check_seed, row_uniforms, sample_tokens, top_logprobs, unpack_top_logprobs
from thinkrl.engine.scheduler import Scheduler, SequenceState, prefill_forward_cost, prefill_groups, reads_slot_prefix
from thinkrl.engine.types import Request, SamplingParams, TokenEvent
from thinkrl.engine.weights import copy_weights_into
from thinkrl.model import PACK_MIN_WEIGHTS, CachedStep, CausalLM, pack_linears, packed_linears_unsupported_reason
from thinkrl.records import Trajectory

logger = logging.getLogger(__name__)


class LLMEngine:
    """Batched sampling with a preallocated KV cache and continuous batching.

    Args:
        model: the decoder. The engine treats it as its own: give it a copy when a trainer keeps training the
            original, and change its weights only through `update_weights`.
        tokenizer: anything with ``decode(ids, skip_special_tokens=...)``, ``stop_token_ids``
            and ``pad_token_id`` (see ``thinkrl.tokenizer.TextTokenizer``).
        num_slots: sequences decoded together (KV-cache slots).
        max_seq_len: prompt + response limit per slot.
        seed: seed of the generator shared by requests without their own seed.
        max_prefill_tokens: prompt tokens admitted (prefilled) in one step, at least one prompt.
        cuda_graphs: replay the decode step from CUDA graphs when the model is on CUDA and dense
            (captured here, once per bucket); False keeps every step eager. Ignored on CPU.
        compile_decode: on CPU, run that decode step through ``torch.compile`` (`CompiledDecode`; a dense model;
            compiled when the engine is built, ~15-40 s): faster steps for small models, where per-op overhead
            dominates (docs/engine.md). Ignored on CUDA (graphs).
        packed_linears: on a float32 CPU model, run its linear layers on weights prepacked for oneDNN
            (`thinkrl.model.pack_linears`, repacked when a weight changes); same results to fp32 rounding,
            ~1.3x faster matmuls at decode batch sizes for weights of 64K and more, slower below. None: the layers
            of at least ``PACK_MIN_WEIGHTS`` weights, whenever supported; True: every layer. Ignored elsewhere.
        admit_batch / admit_wait_steps: admission batching (`Scheduler`): while sequences run, waiting requests
            are held until ``admit_batch`` slots are free (or for at most ``admit_wait_steps`` steps), so one prefill
            forward admits them together. 1 (default) admits as soon as a slot is free: lowest latency.

    Attributes:
        decode_graphs: the CUDA-graph (or compiled CPU) decode runner, or None when every step is eager.
        version: version of the current weights (0 until the first `update_weights`); every token records the
            version it was produced with (`Trajectory.token_versions`).
    """

    def __init__(self, model: CausalLM, tokenizer: Any, num_slots: int = 64, max_seq_len: int = 1024,
                 seed: int = 0, max_prefill_tokens: int = 16384, cuda_graphs: bool = True,
                 packed_linears: bool | None = None, admit_batch: int = 1, admit_wait_steps: int = 16,
                 compile_decode: bool = False) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.scheduler = Scheduler(num_slots, max_seq_len, max_prefill_tokens, admit_batch, admit_wait_steps)
        self.cache = model.allocate_cache(num_slots, max_seq_len)
        self.device = model.device
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.version = 0
        pad = getattr(tokenizer, "pad_token_id", None)
        self._pad_id = 0 if pad is None else int(pad)
        self._default_stop = tuple(getattr(tokenizer, "stop_token_ids", ()) or ())
        unpackable = packed_linears_unsupported_reason(model)
        self.packed_linears = unpackable is None and packed_linears is not False
        if self.packed_linears:  # by default only the layers large enough for oneDNN's call cost to pay
            min_weights = 0 if packed_linears else PACK_MIN_WEIGHTS
            self.packed_linears = pack_linears(model, batch_hint=num_slots, min_weights=min_weights) > 0
        elif packed_linears:
            logger.warning("linear layers stay unpacked: %s", unpackable)
        self.decode_graphs: DecodeGraphs | CompiledDecode | None = None
        reason = graphs_unsupported_reason(model)
        if cuda_graphs and reason is None:
            self.decode_graphs = DecodeGraphs(model, self.cache)
            self.decode_graphs.capture_all()
        elif cuda_graphs and self.device.type == "cuda":
            logger.warning("decoding without CUDA graphs: %s", reason)
        elif compile_decode and self.device.type == "cpu":  # ValueError for an MoE model
            self.decode_graphs = CompiledDecode(model, self.cache)

    # ---- public API -------------------------------------------------------------------
    def add_request(self, request: Request) -> None:
        """Queue a request; it starts as soon as a slot is free. Raises ValueError for a prompt token outside the
        model's vocabulary (it would fail the whole step, every other request with it)."""
        vocab = self.model.config.vocab_size
        outside = next((t for t in request.prompt_ids if not 0 <= t < vocab), None)
        if outside is not None:
            raise ValueError(f"request {request.request_id}: prompt token id {outside} is outside the model's "
                             f"vocabulary [0, {vocab})")
        needed = len(request.prompt_ids) + request.params.max_new_tokens
        if needed > self.scheduler.max_seq_len:
            logger.debug("request %s may hit max_seq_len (%d > %d)", request.request_id, needed,
                         self.scheduler.max_seq_len)
        self.scheduler.add(request)

    def abort(self, request_id: Any) -> Trajectory | None:
        """Stop a queued or running request now; its slot is free for the next step.

        Call it between steps, from the thread that steps the engine. Returns the request's
        trajectory so far with ``finish_reason`` "abort" (an empty response if it was still
        queued), or None when no unfinished request has this id. No event is emitted for it.
        """
        for request in self.scheduler.waiting:
            if request.request_id == request_id:
                self.scheduler.waiting.remove(request)
                return self._to_trajectory(SequenceState(request, slot=-1, finish_reason="abort"))
        for state in list(self.scheduler.running.values()):
            if state.request.request_id == request_id:
                state.finish_reason = "abort"
                self.scheduler.release(state)
                return self._to_trajectory(state)
        return None

    def update_weights(self, weights: Any, version: int) -> int:
        """Copy ``(name, tensor)`` pairs (or a name -> tensor mapping) into the engine's weights in place and set
        ``version``; tokens sampled from the next step on record it. Call it between steps. Returns how many
        tensors were copied.

        Raises:
            ValueError: a name, shape or count does not match the engine's model (nothing is copied), or
                ``version`` is older than the current one.
        """
        if version < self.version:
            raise ValueError(f"update_weights: version {version} is older than the engine's {self.version}")
        count = copy_weights_into(self.model, weights)
        self.version = int(version)
        return count

    def has_unfinished(self) -> bool:
        return self.scheduler.has_work()

    def step(self) -> list[TokenEvent]:
        """Run one engine step; returns the tokens each running request gained."""
        events: list[TokenEvent] = []
        admitted = []
        for state in self.scheduler.admit():
            seed = state.request.params.seed
            try:
                if seed is not None:
                    check_seed(seed)
            except ValueError as error:  # a seed outside the stream's 64 bits: only this request fails
                events.append(self._fail(state, error))
            else:
                admitted.append(state)
        if admitted:
            events += self._sample_and_append(admitted, self._prefill_logits(admitted))
        running = self.scheduler.decode_batch(exclude={s.slot for s in admitted})
        if running:
            events += self._sample_and_append(running, self._decode_logits(running))
        return events

    def stream(self, requests: Iterable[Request] = ()) -> Iterator[TokenEvent]:
        """Add ``requests`` and yield token events until every queued request has finished."""
        for request in requests:
            self.add_request(request)
        with torch.inference_mode():
            while self.has_unfinished():
                yield from self.step()

    def generate(self, requests: Sequence[Request]) -> list[Trajectory]:
        """Complete every request; results in the order of ``requests``."""
        order = {r.request_id: i for i, r in enumerate(requests)}
        if len(order) != len(requests):
            raise ValueError("request ids must be unique within one generate() call")
        results: list[Trajectory | None] = [None] * len(requests)
        for event in self.stream(requests):
            if event.finished and event.request_id in order:
                results[order[event.request_id]] = event.trajectory
        missing = [requests[i].request_id for i, r in enumerate(results) if r is None]
        if missing:  # e.g. aborted from a controller: never hand back fewer results than requests silently
            raise RuntimeError(f"generate: {len(missing)} requests ended without a result, e.g. {missing[:3]}")
        return [r for r in results if r is not None]

    def generate_from_ids(self, prompts: list[list[int]], params: SamplingParams) -> list[Trajectory]:
        """Shorthand: the same sampling parameters for every prompt."""
        return self.generate([Request(p, params) for p in prompts])

    # ---- internals --------------------------------------------------------------------
    def _use_prefix_path(self, states: list[SequenceState]) -> bool:
        return reads_slot_prefix(len(states), states[-1].slot)

    def _build_step(self, states: list[SequenceState], prefix: bool) -> tuple[torch.Tensor, CachedStep, list[int]]:
        """Token ids (S, Q) and the cache step for ``states`` (rows = slots 0..max when ``prefix``)."""
        rows: list[SequenceState | None]
        if prefix:
            rows = [None] * (states[-1].slot + 1)
            for s in states:
                rows[s.slot] = s
        else:
            rows = list(states)
        lens = [len(s.pending) if s else 0 for s in rows]
        q = max(lens)
        ids = [(s.pending if s else []) + [self._pad_id] * (q - n) for s, n in zip(rows, lens, strict=True)]
        starts = [s.num_cached if s else 0 for s in rows]
        slots = [s.slot if s else i for i, s in enumerate(rows)]
        context = max(a + n for a, n in zip(starts, lens, strict=True))
        dev = self.device
        step = CachedStep(torch.tensor(slots, device=dev), torch.tensor(starts, device=dev),
                          torch.tensor(lens, device=dev), context_len=context, slots_are_prefix=prefix)
        row_of_state = [s.slot for s in states] if prefix else list(range(len(states)))
        return torch.tensor(ids, device=dev), step, row_of_state

    def _eager_logits(self, states: list[SequenceState], prefix: bool) -> torch.Tensor:
        """fp32 logits (S, V) after the pending tokens of ``states``, from the eager cached forward."""
        ids, step, row_of_state = self._build_step(states, prefix)
        hidden = self.model.forward_cached(ids, step, self.cache)  # [rows, Q, C]
        rows = torch.tensor(row_of_state, device=self.device)
        last = hidden[rows, step.query_lens[rows] - 1]  # [S, C]
        return self.model.logits(last).float()  # [S, V]

    def _decode_logits(self, states: list[SequenceState]) -> torch.Tensor:
        """fp32 logits (S, V) of a decode step: a graph replay when every state feeds one token."""
        graphs = self.decode_graphs
        if graphs is None:
            multi = [i for i, s in enumerate(states) if len(s.pending) != 1]
            if multi and len(multi) < len(states):  # forced tokens: not padding the one-token rows to their length
                single = [i for i in range(len(states)) if len(states[i].pending) == 1]
                return self._logits_in_groups(states, [single, multi], prefix_first=True)
            return self._eager_logits(states, prefix=self._use_prefix_path(states))
        if any(len(s.pending) != 1 for s in states):  # forced tokens: a multi-token step
            graphs.stats.eager_steps += 1
            return self._eager_logits(states, prefix=self._use_prefix_path(states))
        running = {slot: state.num_cached for slot, state in self.scheduler.running.items()}
        return graphs.step_logits([s.slot for s in states], [s.pending[0] for s in states],
                                  [s.num_cached for s in states], running)

    def _prefill_logits(self, states: list[SequenceState]) -> torch.Tensor:
        """Eager logits (S, V) of just-admitted ``states``, in forwards of rows of similar length (`prefill_groups`)."""
        groups = prefill_groups([len(s.pending) for s in states], prefill_forward_cost(self.device.type))
        if len(groups) == 1:  # the usual case: in the admission order, no (S, V) copy
            return self._eager_logits(states, prefix=False)
        return self._logits_in_groups(states, groups, prefix_first=False)

    def _logits_in_groups(self, states: list[SequenceState], groups: list[list[int]],
                          prefix_first: bool) -> torch.Tensor:
        """Eager logits (S, V), one forward per group of indices into ``states`` (the first may read a prefix)."""
        parts = [[states[i] for i in group] for group in groups]
        first = self._eager_logits(parts[0], prefix=prefix_first and self._use_prefix_path(parts[0]))  # [S0, V]
        logits = first.new_empty((len(states), first.shape[-1]))
        logits[groups[0]] = first
        for group, part in zip(groups[1:], parts[1:], strict=True):
            logits[group] = self._eager_logits(part, prefix=False)
        return logits

    def _upload(self, values: list[Any]) -> torch.Tensor:
        """A small host list as a device tensor; on CUDA through pinned memory, without a host sync."""
        if self.device.type != "cuda":
            return torch.tensor(values, device=self.device)
        return torch.tensor(values, pin_memory=True).to(self.device, non_blocking=True)

    def _sample_and_append(self, states: list[SequenceState], logits: torch.Tensor) -> list[TokenEvent]:
        """Sample from ``logits`` (S, V) fp32 (one row per state, modified in place by banned tokens)."""
        ban_rows: list[int] = []
        ban_ids: list[int] = []
        failed: dict[int, BaseException] = {}
        for i, s in enumerate(states):
            s.num_cached += len(s.pending)
            controller = s.request.controller
            if controller is not None:
                try:
                    banned = [int(t) for t in controller.banned_tokens(s.response_ids)]
                except Exception as error:  # this request fails; its row is sampled and ignored
                    failed[i] = error
                    continue
                ban_rows += [i] * len(banned)
                ban_ids += banned
        if ban_ids:  # one upload for the whole batch (a per-row list index costs a host sync on CUDA)
            logits[self._upload(ban_rows), self._upload(ban_ids)] = float("-inf")
        params = [s.request.params for s in states]
        temperature = self._upload([p.temperature for p in params])
        tokens, logprobs = sample_tokens(  # need_k / need_p decided on the host: no device->host sync
            logits, temperature, self._upload([p.top_k for p in params]), self._upload([p.top_p for p in params]),
            row_uniforms([p.seed for p in params], [p.seed_offset + len(s.response_ids) for p, s in
                                                    zip(params, states, strict=True)], self.generator, self.device),
            need_k=any(p.top_k > 0 for p in params), need_p=any(p.top_p < 1 for p in params))
        packed = [tokens.double(), logprobs.double()]
        num_top = min(max(p.top_logprobs for p in params), logits.shape[-1])
        if num_top:  # only when a row asks; rides along in the same host transfer
            packed += [t.double().flatten() for t in top_logprobs(logits, temperature, num_top)]
        flat = torch.cat(packed).tolist()  # one host sync
        n = len(states)
        tops = unpack_top_logprobs(flat[2 * n :], num_top, [p.top_logprobs for p in params])
        events = []
        for i, (s, t, lp, top) in enumerate(zip(states, flat[:n], flat[n : 2 * n], tops, strict=True)):
            if i in failed:
                events.append(self._fail(s, failed[i]))
                continue
            try:
                events.append(self._append(s, int(t), lp, top))
            except Exception as error:  # a controller hook or stop check raised: only this request fails
                events.append(self._fail(s, error))
        return events

    def _fail(self, s: SequenceState, error: BaseException) -> TokenEvent:
        """End ``s`` with finish reason "error" (its slot is freed); the other requests are unaffected."""
        logger.warning("request %s failed: %r", s.request.request_id, error)
        s.finish_reason = "error"
        if self.scheduler.running.get(s.slot) is s:
            self.scheduler.release(s)
        traj = Trajectory(prompt_ids=list(s.request.prompt_ids), response_ids=list(s.response_ids),
                          logprobs=list(s.logprobs), finish_reason="error", response_mask=list(s.response_mask),
                          token_versions=list(s.token_versions), error=f"{type(error).__name__}: {error}",
                          metadata=dict(s.request.metadata))
        return TokenEvent(s.request.request_id, [], finished=True, trajectory=traj)

    def _append(self, s: SequenceState, token: int, logprob: float,
                top: list[tuple[int, float]] | None = None) -> TokenEvent:
        """Record a sampled token, apply stop rules and forced tokens; release the slot when done."""
        params = s.request.params
        controller = s.request.controller
        stop_ids = params.stop_token_ids if params.stop_token_ids is not None else self._default_stop
        replace = getattr(controller, "replacement_tokens", None)  # optional hook, see types.SequenceController
        replacement = replace(s.response_ids, token) if replace is not None else None
        if replacement:  # the sampled token is dropped and these are forced instead
            new = self._force(s, replacement, stop_ids)
            top = None if top is None else []
        else:
            s.response_ids.append(token)
            s.logprobs.append(logprob)
            s.response_mask.append(True)
            s.token_versions.append(self.version)
            new = [token]
            if token in stop_ids or params.stop_strings and self._hit_stop_string(s):
                s.finish_reason = "stop"
            elif controller is not None:
                new += self._force(s, controller.forced_tokens(s.response_ids), stop_ids)
        if s.finish_reason is None and (
            len(s.response_ids) >= params.max_new_tokens or s.num_cached + len(new) >= self.scheduler.max_seq_len
        ):
            s.finish_reason = "length"
        s.pending = new
        logprobs = s.logprobs[len(s.logprobs) - len(new) :]
        tops = None if top is None else ([top] if top else []) + [[] for _ in new[1 if top else 0 :]]
        if s.finish_reason is None:
            return TokenEvent(s.request.request_id, new, logprobs=logprobs, top_logprobs=tops)
        self.scheduler.release(s)
        return TokenEvent(s.request.request_id, new, finished=True, trajectory=self._to_trajectory(s),
                          logprobs=logprobs, top_logprobs=tops)

    def _force(self, s: SequenceState, forced: list[int], stop_ids: tuple[int, ...]) -> list[int]:
        """Append controller-forced tokens (mask False, log-prob 0) up to max_new_tokens; a forced stop token
        ends the sequence ("stop"). Returns the tokens appended."""
        forced = forced[: s.request.params.max_new_tokens - len(s.response_ids)]
        stop_at = next((i for i, t in enumerate(forced) if t in stop_ids), None)
        if stop_at is not None:
            forced = forced[: stop_at + 1]
            s.finish_reason = "stop"
        s.response_ids += forced
        s.logprobs += [0.0] * len(forced)
        s.response_mask += [False] * len(forced)
        s.token_versions += [self.version] * len(forced)
        return forced

    def _hit_stop_string(self, s: SequenceState) -> bool:
        text = self.tokenizer.decode(s.response_ids)
        longest = max(len(x) for x in s.request.params.stop_strings)
        start = max(0, s.text_checked - longest)
        s.text_checked = len(text)
        return any(x in text[start:] for x in s.request.params.stop_strings)

    def _to_trajectory(self, s: SequenceState) -> Trajectory:
        params = s.request.params
        ids = s.response_ids
        stop_ids = params.stop_token_ids if params.stop_token_ids is not None else self._default_stop
        text = self.tokenizer.decode(ids[:-1] if ids and ids[-1] in stop_ids else ids)
        for stop in params.stop_strings:
            cut = text.find(stop)
            if cut >= 0:
                text = text[:cut]
        return Trajectory(
            prompt_ids=list(s.request.prompt_ids), response_ids=list(ids), logprobs=list(s.logprobs),
            finish_reason=s.finish_reason,  # type: ignore[arg-type]
            response_mask=list(s.response_mask), token_versions=list(s.token_versions), text=text,
            metadata=dict(s.request.metadata),
        )
