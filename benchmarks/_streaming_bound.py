"""What the engine alone allows streaming on this machine: the ``bound`` section of `bench streaming`.

At staleness eta a streaming run trains one batch every P = S x c seconds once its engine is the bottleneck: S
engine steps per batch, set by latency (the longest response must be sampled within eta + 1 batch periods, less the
training time, so S does not fall when the engine gets more rows), each step costing c with the run's mean rows in
flight. Whatever the driver, the pipe and the trainer beside the engine add, a step cannot cost less than the same
engine's step run alone with as many rows in flight and the same admissions (groups of G as requests end, long-tail
lengths): c >= c_alone. So samples/s <= batch / (S x c_alone) (slightly generous to streaming: with cheaper steps
the training time would span more of them, adding a few steps a batch), a bound that uses only the run's own S and
rows and one measurement of the engine by itself; its ratio to the best sync says how far any change outside the
engine step could take streaming on this machine. The ideal sync prices sync's steps the same way (its steps per
batch at the engine-alone cost of sync's load, plus its measured training time), so ``ratio_ideal`` compares the two
with the same engine measurement.

`isolated_step` measures c_alone (and, with ``rows=0``, sync's load: a whole batch submitted when the engine is
empty); `engine_bound` turns a mode's figures into the bound.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypedDict

import torch

from _model_shapes import TiedModelShape
from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.model import ModelConfig, build_model
from thinkrl.tokenizer import load_tokenizer

PROMPT_LEN = 32  # tokens per prompt (the arithmetic prompts of the run are 30-40)


class Isolated(TypedDict):
    rows: float  # mean sequences sampled per step (as the run's tokens per step)
    ms_per_step: float


class Bound(TypedDict):
    steps_per_batch: float
    rows_per_step: float
    isolated_ms_per_step: float  # c_alone at rows_per_step (interpolated between two loads)
    samples_per_s_bound: float
    ratio_bound_vs_best_sync: float
    ratio_ideal: float  # over the ideal sync: its steps at their engine-alone cost, plus its training


def isolated_step(engine: LLMEngine, rows: int, batch: int, group: int, length: Callable[[int], int],
                  steps: int = 1200, warmup: int = 150, seed: int = 0) -> Isolated:
    """The engine alone under a streaming load (``rows`` > 0: a group of ``group`` requests admitted whenever fewer
    than ``rows`` are in flight) or sync's (``rows`` = 0: ``batch`` requests submitted when it is empty). Each
    request's token limit is ``length(seed)``, with no stop token; the first ``warmup`` steps are not timed."""
    rng = random.Random(seed)
    next_id = 0

    def submit(n: int) -> None:
        nonlocal next_id
        for _ in range(n):
            params = SamplingParams(max_new_tokens=length(next_id), seed=next_id, stop_token_ids=())
            engine.add_request(Request([5 + rng.randrange(100) for _ in range(PROMPT_LEN)], params,
                                       request_id=("isolated", next_id)))
            next_id += 1

    timed_s, timed_rows = 0.0, 0
    with torch.inference_mode():
        for k in range(warmup + steps):
            in_flight = len(engine.scheduler.running) + len(engine.scheduler.waiting)
            if rows == 0 and in_flight == 0:
                submit(batch)
            while rows and in_flight < rows:
                submit(group)
                in_flight += group
            start = time.perf_counter()
            events = engine.step()  # one event per sequence that gained a token (admitted ones included)
            if k >= warmup:
                timed_s += time.perf_counter() - start
                timed_rows += len(events)
        for request in list(engine.scheduler.waiting) + [s.request for s in engine.scheduler.running.values()]:
            engine.abort(request.request_id)
    return {"rows": timed_rows / steps, "ms_per_step": 1e3 * timed_s / steps}


def build_engine(shape: TiedModelShape, slots: int, max_seq_len: int, compile_decode: bool,
                 device: str = "cpu") -> LLMEngine:
    tokenizer = load_tokenizer("builtin")
    model = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, **shape), seed=0).to(device).eval()
    return LLMEngine(model, tokenizer, num_slots=slots, max_seq_len=max_seq_len, compile_decode=compile_decode)


def interpolate(points: list[Isolated], rows: float) -> float:
    """ms per step at ``rows`` on the line through the two measured loads (``points``, distinct mean rows)."""
    (a, b) = sorted(points, key=lambda p: p["rows"])[:2]
    if b["rows"] - a["rows"] < 1e-6:  # two loads that kept the same rows (tiny runs): no line, their mean
        return (a["ms_per_step"] + b["ms_per_step"]) / 2
    slope = (b["ms_per_step"] - a["ms_per_step"]) / (b["rows"] - a["rows"])
    return a["ms_per_step"] + slope * (rows - a["rows"])


def engine_bound(steps_per_batch: float, rows_per_step: float, isolated_ms: float, batch: int,
                 best_sync_samples_per_s: float, ideal_sync_samples_per_s: float) -> Bound:
    """The bound of a streaming mode: ``batch`` samples every ``steps_per_batch`` steps of ``isolated_ms`` each,
    over the run's best sync and over the ideal sync (both sides then priced by the same engine-alone
    measurement, taken minutes after the runs: the box's load drifts in between, and this ratio cancels it)."""
    samples_per_s = batch / (steps_per_batch * isolated_ms / 1e3)
    return {"steps_per_batch": steps_per_batch, "rows_per_step": rows_per_step, "isolated_ms_per_step": isolated_ms,
            "samples_per_s_bound": samples_per_s, "ratio_bound_vs_best_sync": samples_per_s / best_sync_samples_per_s,
            "ratio_ideal": samples_per_s / ideal_sync_samples_per_s}
