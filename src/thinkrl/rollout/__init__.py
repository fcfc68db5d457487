"""The rollout stage: problems → rendered prompts → engine requests → scored trajectories.

It owns rendering and requests (`requests`), verdicts and rewards (`scoring`), groups and dynamic sampling
(`groups`), where prompts come from (`sources`, `curriculum`) and its config sections (`specs`). RL, evaluation
and the budget sweep all sample through `sample`. It talks to an engine only through ``generate(requests)``
(an `LLMEngine` or the engine client `EngineLoop`). The RL loop takes its batches from a `RolloutDriver`
(`build_driver`): synchronous, or a streaming rollout thread with partial rollouts and a staleness bound
(`streaming`, `buffer`, `partial`). Imports engine, tasks, rewards, tokenizer (and rl's pure
reward-shaping functions); never train.
"""

from thinkrl.rollout.curriculum import Curriculum
from thinkrl.rollout.driver import RolloutDriver, SyncDriver, build_driver
from thinkrl.rollout.engine import EngineClient, start_engine
from thinkrl.rollout.groups import (
    RolloutBatch,
    collect_rollout_batch,
    estimate_pass_rates,
    prefilter_problems,
    rollout_metrics,
    sample_groups,
    within_budget,
)
from thinkrl.rollout.process import RolloutProcess, start_engine_process
from thinkrl.rollout.requests import (
    GenerateClient,
    RolloutPrompt,
    SampleRequest,
    build_request,
    render_prompt,
    sample,
    sampling_params,
)
from thinkrl.rollout.scoring import judge, score_trajectories
from thinkrl.rollout.sources import (
    FilterResult,
    OnlineFilter,
    PromptCursor,
    PromptSource,
    build_prompt_source,
    filter_by_pass_rate,
    load_problems,
    training_problems,
)
from thinkrl.rollout.specs import (
    CurriculumSpec,
    DataSpec,
    OnlineFilterSpec,
    PrefilterSpec,
    RewardSpec,
    RolloutSpec,
    SamplingSpec,
)
from thinkrl.rollout.streaming import RolloutError, StreamingDriver

__all__ = [
    "Curriculum",
    "CurriculumSpec",
    "DataSpec",
    "EngineClient",
    "FilterResult",
    "GenerateClient",
    "OnlineFilter",
    "OnlineFilterSpec",
    "PrefilterSpec",
    "PromptCursor",
    "PromptSource",
    "RewardSpec",
    "RolloutBatch",
    "RolloutDriver",
    "RolloutError",
    "RolloutPrompt",
    "RolloutProcess",
    "RolloutSpec",
    "SampleRequest",
    "SamplingSpec",
    "StreamingDriver",
    "SyncDriver",
    "build_driver",
    "build_prompt_source",
    "build_request",
    "collect_rollout_batch",
    "estimate_pass_rates",
    "filter_by_pass_rate",
    "judge",
    "load_problems",
    "training_problems",
    "prefilter_problems",
    "render_prompt",
    "rollout_metrics",
    "sample",
    "sample_groups",
    "sampling_params",
    "score_trajectories",
    "start_engine",
    "start_engine_process",
    "within_budget",
]
