"""Config sections of the rollout stage: where prompts come from (``data``), how they are sampled
(``sampling``), how many per step and which groups are kept (``rollout``), and how responses are rewarded
(``reward``). Every default lives here; unknown keys are errors (`thinkrl.spec.Section`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from thinkrl.spec import Section
from thinkrl.tasks import TASKS
from thinkrl.tasks.external import DATASET_TASKS


class PrefilterSpec(Section):
    """Offline data filter: drop training prompts by their pass rate under the initial policy."""

    k: int = Field(8, ge=2)
    """Samples per prompt used to estimate its pass rate."""
    low: float = Field(0.0, ge=0.0, le=1.0)
    """Keep a prompt only if its pass rate is > low (0 drops the never-solved prompts)."""
    high: float = Field(1.0, ge=0.0, le=1.0)
    """Keep a prompt only if its pass rate is < high (1 drops the always-solved prompts)."""
    min_variance: float = Field(0.0, ge=0.0, le=0.25)
    """Drop prompts whose score variance p(1 - p) is below this."""

    @model_validator(mode="after")
    def _band(self) -> PrefilterSpec:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be < high ({self.high})")
        return self


class OnlineFilterSpec(Section):
    """Online data filter: skip prompts whose recent groups were all solved or all failed."""

    window: int = Field(2, ge=1)
    """Skip a prompt when its last this-many groups were all solved (or all failed)."""
    retry_after: int = Field(4, ge=1)
    """A skipped prompt is sampled again after it has been skipped this many times."""
    skip_solved: bool = True
    """Skip prompts recently always solved."""
    skip_unsolved: bool = True
    """Skip prompts recently never solved."""


class CurriculumSpec(Section):
    """Adaptive difficulty: fresh problems of data.task at a difficulty kept in a target pass-rate band."""

    knobs: dict[str, int]
    """Integer difficulty knobs to move, each with its step: +1 if larger is harder, -1 if smaller is."""
    target_low: float = Field(0.3, ge=0.0, le=1.0)
    """Make problems easier when the window's pass rate is below this."""
    target_high: float = Field(0.7, ge=0.0, le=1.0)
    """Make problems harder when the window's pass rate is above this."""
    window: int = Field(32, ge=1)
    """Groups of the task sampled between two adjustments."""

    @model_validator(mode="after")
    def _valid(self) -> CurriculumSpec:
        if not self.knobs:
            raise ValueError("knobs must name at least one integer difficulty knob")
        if any(step == 0 for step in self.knobs.values()):
            raise ValueError(f"knob steps must be non-zero, got {self.knobs}")
        if self.target_low >= self.target_high:
            raise ValueError(f"target_low ({self.target_low}) must be < target_high ({self.target_high})")
        return self


class DataSpec(Section):
    """Where prompts come from: a registered task generator or files."""

    task: str
    """Registered task name (see `thinkrl.tasks.TASKS`)."""
    train_file: str | None = None
    """JSONL file of training problems; None generates them from the task."""
    test_file: str | None = None
    """JSONL file of held-out problems; None generates them from the task."""
    num_train: int = Field(1000, ge=1)
    """Number of generated training problems."""
    num_test: int = Field(100, ge=0)
    """Number of generated test problems."""
    seed: int = 0
    """Seed of the task generator."""
    difficulty: dict[str, Any] = Field(default_factory=dict)
    """Task-specific difficulty knobs, passed to the generator as keyword arguments."""
    prefilter: PrefilterSpec | None = None
    """Drop training prompts by pass rate under the initial policy before training; None is off."""
    online_filter: OnlineFilterSpec | None = None
    """Skip prompts recently always/never solved during training; None is off."""
    curriculum: CurriculumSpec | None = None
    """Generate training problems at an adaptive difficulty instead of a fixed set; None is off."""

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value in TASKS or value in DATASET_TASKS:  # dataset tasks (math, code) read train_file/test_file
            return value
        known = ", ".join(TASKS.names() + DATASET_TASKS.names())
        raise ValueError(f"unknown task {value!r}; registered: {known}")

    @model_validator(mode="after")
    def _curriculum_knobs(self) -> DataSpec:
        if self.curriculum is None:
            return self
        if self.prefilter is not None or self.online_filter is not None:
            raise ValueError("curriculum generates fresh problems; prefilter and online_filter apply to a fixed "
                             "problem set: set one or the other")
        if self.task not in TASKS:
            raise ValueError(f"curriculum needs a procedural task; {self.task!r} has no generator")
        task = TASKS.get(self.task)()
        for name in self.curriculum.knobs:
            knob = task.knob(name)  # ValueError listing the known knobs
            if knob.kind is not int:
                raise ValueError(f"curriculum knob {name!r} of task {self.task!r} is {knob.kind.__name__}, not int")
        return self


class SamplingSpec(Section):
    """How responses are sampled by the engine."""

    temperature: float = Field(1.0, ge=0.0)
    """Softmax temperature; 0 is greedy."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass; 1.0 is off."""
    top_k: int = Field(0, ge=0)
    """Keep the k most likely tokens; 0 is off."""
    max_new_tokens: int = Field(1024, ge=1)
    """Longest response, in tokens."""
    num_slots: int = Field(16, ge=1)
    """Sequences decoded at once by the continuous-batching engine."""
    admit_batch: int = Field(1, ge=1)
    """Admission batching: while sequences run, hold waiting requests until this many slots are free (at most 16
    engine steps), so one prefill forward admits them together. 1 admits as soon as a slot frees. In streaming mode
    a push's continuations and new groups otherwise trickle in one prefill forward per freed slot; 8 of 32 slots
    gave 1.78x sync's samples/s at eta 2 against 1.68x with 1 (CPU bench, docs/results/streaming.md). At most
    ``num_slots``."""
    compile_decode: bool = False
    """CPU: run the engine's decode step through ``torch.compile`` (`LLMEngine(compile_decode=True)`): 1.3-2.2x
    faster steps for small models, compiled when the engine starts (~15-40 s; docs/engine.md). Ignored on
    CUDA, which replays CUDA graphs."""
    thinking_budgets: list[int] = Field(default_factory=lambda: [-1])
    """Budgets prompts are rendered with (-1 unlimited, 0 no thinking); sampled per prompt."""

    @field_validator("thinking_budgets")
    @classmethod
    def _valid_budgets(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("thinking_budgets must list at least one budget (use [-1] for unlimited)")
        bad = [b for b in value if b < -1]
        if bad:
            raise ValueError(f"thinking budgets {bad} are invalid; use -1 (unlimited), 0 or a positive count")
        return value

    @model_validator(mode="after")
    def _admit_fits(self) -> SamplingSpec:
        if self.admit_batch > self.num_slots:
            raise ValueError(f"admit_batch ({self.admit_batch}) must be at most num_slots ({self.num_slots})")
        return self


class RolloutSpec(Section):
    """How many prompts and samples one RL step takes, and which groups it keeps (DAPO dynamic sampling)."""

    group_size: int = Field(8, ge=1)
    """Responses sampled per prompt (G); 1 only with a critic (no group baseline, no dynamic sampling)."""
    prompts_per_step: int = Field(16, ge=1)
    """Prompts (groups) per optimisation step."""
    dynamic_sampling: bool = True
    """Drop groups whose rewards are all equal and sample more until the batch is full."""
    max_sampling_rounds: int = Field(4, ge=1)
    """Most generation rounds per step when dynamic sampling refills the batch (streaming: the trainer takes what
    is ready once prompts_per_step x this many groups completed since its last batch)."""
    mode: Literal["sync", "streaming"] = "sync"
    """"sync": each step samples its batch with the current weights, then trains. "streaming": a rollout thread
    keeps the engine's slots full and buffers finished groups while the trainer trains (docs/streaming.md)."""
    max_staleness: int = Field(1, ge=0)
    """Streaming: the most policy versions a token may lag when trained on (eta; 0 is synchronous). Groups that
    would exceed it are dropped and their prompts sampled again (``stream/dropped_stale``)."""
    round_tokens: int = Field(0, ge=0)
    """Streaming: tokens the rollout may generate per policy version before it pauses, its unfinished responses
    kept (partial rollouts), until the next weight push (or until the trainer waits for data); 0 is unlimited."""
    wait_for_due: bool = True
    """Streaming: when taking the batch now would leave a group that no later batch can train in time (one that
    only this batch may still train, or more old groups than the next batches can hold), the trainer waits for the
    groups in flight instead of dropping one later (`take_strands_a_group`): no response is lost to staleness, long
    ones included, at the cost of trainer idle time. False takes what is ready (long responses are more often
    dropped and sampled again: the kept batch leans short)."""
    max_buffered_groups: int | None = Field(None, ge=1)
    """Streaming: most groups buffered or in flight at once; None is prompts_per_step x (max_staleness + 1)."""
    admission: Literal["batch", "slots"] = "batch"
    """Streaming: when the rollout starts a new group. "batch": while fewer than prompts_per_step x (eta + 1 -
    pending) groups are in flight or buffered. "slots": the same, and only while the engine has a free slot for each
    of its G requests (``sampling.num_slots``; one group at a time when nothing is in flight), so new groups never
    queue in the engine ahead of the continuations of older ones, which a push resubmits (docs/streaming.md)."""
    placement: Literal["thread", "process"] = "thread"
    """Where the rollout engine runs: "thread" (a thread of the trainer's process) or "process" (a child process;
    weights cross through shared memory, see docs/streaming.md)."""


class RewardSpec(Section):
    """The reward of a response: the verifier's outcome plus optional length and thinking-budget shaping."""

    correct_reward: float = 1.0
    """Reward of a verified-correct response."""
    wrong_reward: float = -1.0
    """Reward of a wrong response."""
    overlong_penalty: bool = True
    """DAPO soft overlong punishment over the last overlong_cache_len tokens."""
    max_response_len: int = Field(1024, ge=1)
    """L_max of the overlong penalty; must not exceed sampling.max_new_tokens."""
    overlong_cache_len: int = Field(256, ge=0)
    """L_cache of the overlong penalty: the penalty ramps over the last this-many tokens."""
    budget_reward: Literal["none", "limit", "overlong", "l1"] = "none"
    """Reward shaping relative to each prompt's sampled thinking budget (``sampling.thinking_budgets``), on the
    thinking tokens used: "limit" is a hard limit (``-budget_overlong_coef`` past the budget, 0 within it), "overlong"
    is DAPO's soft overlong punishment with the budget as the limit (a ramp inside the budget), "l1" is L1/LCPO's
    ``-budget_alpha * |budget - used|``; budget -1 is never shaped."""
    budget_overlong_coef: float = Field(2.0, ge=0.0)
    """"limit" and "overlong": weight of the budget punishment. At 2 (= correct - wrong reward) a correct answer
    that overran its budget scores no better than a wrong one within it; at 1 (DAPO's weight) overrunning still pays
    when it turns wrong answers right, and RL learns to overrun."""
    budget_cache_frac: float = Field(0.25, gt=0.0, le=1.0)
    """"overlong": the ramp to -1 spans the last this share of the budget (L_cache = ceil(frac * budget))."""
    budget_alpha: float = Field(0.01, ge=0.0)
    """"l1": penalty per token between the budget and the thinking tokens used."""

    @model_validator(mode="after")
    def _overlong_window(self) -> RewardSpec:
        if self.overlong_cache_len >= self.max_response_len:
            raise ValueError(f"overlong_cache_len ({self.overlong_cache_len}) must be < max_response_len "
                             f"({self.max_response_len})")
        return self
