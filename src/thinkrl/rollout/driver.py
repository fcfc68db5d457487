"""The trainer's one interface to the rollout: `RolloutDriver` (``next_batch / push_weights / state / close``).

``rollout.mode`` picks the driver: "sync" (`SyncDriver`: each step samples its batch with the current weights
through `collect_rollout_batch`, exactly as before streaming existed) or "streaming"
(`thinkrl.rollout.streaming.StreamingDriver`: a rollout thread beside the trainer). Both talk to the engine only
through its client, so an engine in another process (a client with `EngineLoop`'s interface) drops in.
"""

from __future__ import annotations

from typing import Any, Protocol

from thinkrl.rollout.groups import RolloutBatch, collect_rollout_batch
from thinkrl.rollout.sources import PromptSource
from thinkrl.rollout.specs import RewardSpec, RolloutSpec, SamplingSpec
from thinkrl.rollout.stream_state import StreamState
from thinkrl.rollout.streaming import StreamingDriver
from thinkrl.tokenizer import TextTokenizer


class RolloutDriver(Protocol):
    """What the RL loop asks of the rollout."""

    @property
    def version(self) -> int:
        """The weight version last pushed (the trainer's current weights)."""
        ...

    def next_batch(self, step: int) -> RolloutBatch:
        """The scored groups step ``step`` trains on."""
        ...

    def push_weights(self, weights: Any, version: int) -> None:
        """Hand the trainer's new weights (named tensors) to the engine as ``version``."""
        ...

    def state(self) -> dict[str, Any]:
        """JSON state of the prompt stream for a checkpoint (streaming: with the groups buffered and in flight)."""
        ...

    def close(self) -> None:
        """Stop whatever the driver runs (idempotent)."""
        ...


class SyncDriver:
    """Synchronous rollout: `collect_rollout_batch` with the step's seed, then the trainer pushes its weights."""

    def __init__(self, engine: Any, tokenizer: TextTokenizer, source: PromptSource, rollout: RolloutSpec,
                 sampling: SamplingSpec, reward: RewardSpec, seed: int) -> None:
        self.engine, self.tokenizer, self.source = engine, tokenizer, source
        self.rollout, self.sampling, self.reward, self.seed = rollout, sampling, reward, seed

    @property
    def version(self) -> int:
        return self.engine.version

    def next_batch(self, step: int) -> RolloutBatch:
        return collect_rollout_batch(self.engine, self.tokenizer, self.source, self.rollout, self.sampling,
                                     self.reward, seed=self.seed * 100_003 + step)

    def push_weights(self, weights: Any, version: int) -> None:
        self.engine.update_weights(weights, version=version)

    def state(self) -> dict[str, Any]:
        return self.source.state()

    def close(self) -> None:
        pass


def build_driver(engine: Any, tokenizer: TextTokenizer, source: PromptSource, rollout: RolloutSpec,
                 sampling: SamplingSpec, reward: RewardSpec, seed: int, start_version: int = 0,
                 restore: StreamState | None = None) -> RolloutDriver:
    """The driver ``rollout.mode`` asks for; a streaming one is started (stop it with ``close()``).

    ``seed``: the run's seed (sync: step seeds ``seed * 100_003 + step``, as the RL loop always used);
    ``start_version``: the engine's weight version at start (the last finished step); ``restore``: a resumed
    streaming run's saved rollout state (buffered and in-flight groups; `thinkrl.rollout.stream_state`).
    """
    if rollout.mode == "sync":
        return SyncDriver(engine, tokenizer, source, rollout, sampling, reward, seed)
    driver = StreamingDriver(engine, tokenizer, source, rollout, sampling, reward, seed=seed,
                             start_version=start_version)
    if restore is not None:
        driver.restore(restore)
    return driver.start()
