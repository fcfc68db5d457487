"""The learning protocol's settings, typed and validated. The defaults are the first recorded run's protocol
(docs/results/learning.md, "Previous run"; the current run is ``recipes/learning/search.yaml``, the same with
search traces, 128-token responses and 120 DAPO steps): countdown with 3 numbers, a 0.85M-parameter model,
cold-start SFT on correct traces, DAPO (``recipes/learning/rl.yaml``) vs continued SFT vs RFT. The cold-start
settings were fixed from a pilot on seed 0's validation split; the arms' learning rates come from the validation
sweep. A YAML file of the same keys (or ``--set key=value``) changes them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from thinkrl.spec import describe_errors, read_text_file, read_yaml
from thinkrl.train.specs import OptimSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColdStartSettings(_Strict):
    """Cold-start SFT on correct traces of the first ``num_problems`` train problems."""

    num_problems: int = Field(1000, ge=1)
    """Train problems the cold start sees (the arms may use the whole train split)."""
    steps: int = Field(1200, ge=1)
    """Optimizer steps (batches of ``batch_tokens`` tokens; many epochs over ``num_problems``)."""
    curve_every: int = Field(100, ge=1)
    """Greedy validation accuracy every this many steps: the plateau curve."""
    optim: OptimSpec = Field(default_factory=lambda: OptimSpec(lr=3e-3, warmup_steps=20, weight_decay=0.01))

    @model_validator(mode="after")
    def _warmup_within_steps(self) -> ColdStartSettings:
        if self.optim.warmup_steps > self.steps:  # the schedule's own rule, checked before any run starts
            raise ValueError(f"cold.optim.warmup_steps ({self.optim.warmup_steps}) must be <= cold.steps "
                             f"({self.steps})")
        return self


class SweepSettings(_Strict):
    """The validation sweep: learning rates tried per arm on the ``seeds`` (chosen by greedy val accuracy)."""

    seeds: list[int] = Field(default_factory=lambda: [0])
    rl_lr: list[float] = Field(default_factory=lambda: [1e-4, 3e-4])
    sft_lr: list[float] = Field(default_factory=lambda: [3e-4, 1e-3])
    rft_lr: list[float] = Field(default_factory=lambda: [3e-4, 1e-3])

    @model_validator(mode="after")
    def _non_empty(self) -> SweepSettings:
        for name in ("seeds", "rl_lr", "sft_lr", "rft_lr"):
            if not getattr(self, name):
                raise ValueError(f"sweep.{name} must list at least one value")
        return self


class RFTConfig(_Strict):
    """Rejection-sampling fine-tuning per iteration: prompts x samples at temperature 1, then epochs."""

    prompts: int = Field(128, ge=1)
    samples: int = Field(4, ge=1)
    epochs: int = Field(1, ge=1)


class LearningConfig(_Strict):
    """Everything one protocol run needs."""

    task: str = "countdown"
    difficulty: dict[str, Any] = Field(default_factory=lambda: {
        "num_numbers": 3, "max_number": 12, "min_target": 10, "max_target": 60, "min_used": 2})
    num_train: int = Field(2000, ge=1)
    num_val: int = Field(200, ge=1)
    num_test: int = Field(300, ge=1)
    model: dict[str, Any] = Field(default_factory=lambda: {
        "architectures": "SeedOssForCausalLM", "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "attention_bias": True, "max_position_embeddings": 512,
        "tie_word_embeddings": True})
    """HF config fields of the from-scratch model (``model.init`` of an SFT recipe)."""
    cold: ColdStartSettings = Field(default_factory=ColdStartSettings)
    rl_recipe: str = "recipes/learning/rl.yaml"
    """The DAPO recipe (relative to the working directory); model, data files, seed and lr are set per run."""
    rl_overrides: list[str] = Field(default_factory=list)
    batch_tokens: int = Field(1024, ge=64)
    """Tokens per SFT / RFT optimizer step."""
    rft: RFTConfig = Field(default_factory=RFTConfig)
    sweep: SweepSettings = Field(default_factory=SweepSettings)
    eval_samples: int = Field(8, ge=1)
    """k of avg@k and pass@k on the test split."""
    max_new_tokens: int = Field(48, ge=1)
    """Greedy / sampled response length cap of every evaluation (the RL recipe has its own: keep them equal)."""
    search_attempts: int = Field(0, ge=0)
    """Countdown trace option for the cold start and continued SFT: 0 (the recorded protocol) writes the
    solution's steps after one failed attempt in 30% of traces; K >= 1 writes search traces, 0..K distinct failed
    attempts (each checked, ``not T``) before the solution (`thinkrl.tasks.countdown`)."""
    terse_share: float = Field(0.0, ge=0.0, le=1.0)
    """Share of cold-start and continued-SFT traces written without their working (an empty thinking block, the
    correct answer only); 0 (the recorded protocols) writes every trace in full."""

    @model_validator(mode="after")
    def _cold_fits(self) -> LearningConfig:
        if self.cold.num_problems > self.num_train:
            raise ValueError(f"cold.num_problems ({self.cold.num_problems}) exceeds num_train ({self.num_train})")
        return self


def load_learning_config(path: str | Path | None = None,
                         overrides: list[str] | None = None) -> tuple[LearningConfig, Path]:
    """The defaults, updated from a YAML file (``path``) and ``key=value`` overrides (YAML values, dotted keys
    such as ``cold.steps=20``); returns the validated config and the RL recipe path.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        raw = read_yaml(read_text_file(path, "learning config"), f"learning config {path}") or {}
        if not isinstance(raw, dict):
            raise ValueError(f"learning config {path} must be a YAML mapping of settings, got {type(raw).__name__}")
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like 'key=value'")
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[last] = read_yaml(value, f"override {item!r}")
    try:
        config = LearningConfig.model_validate(raw)
    except ValidationError as error:
        raise ValueError(f"invalid learning config ({path or 'defaults'}): {describe_errors(error)}") from None
    recipe = Path(config.rl_recipe)
    if not recipe.is_file():
        raise FileNotFoundError(f"rl_recipe {recipe} does not exist (run from the repository root)")
    return config, recipe


SETTINGS_FILE = "settings.json"


def check_run_settings(root: Path, config: LearningConfig, recipe: Path) -> None:
    """Stages cache their outputs under ``root``: refuse to reuse them for other settings. The first use writes
    ``root/settings.json`` (every setting but ``sweep``, whose runs are cached per learning rate, and the RL recipe's
    sha256); a later run whose settings differ raises ValueError naming the keys. A run folder made before this
    check (no settings file) is adopted as it is; a setting added since the folder was made counts as its default
    there (the run was made without it)."""
    settings = config.model_dump(mode="json", exclude={"sweep"})
    settings["rl_recipe_sha256"] = hashlib.sha256(recipe.read_bytes()).hexdigest()
    path = root / SETTINGS_FILE
    if path.is_file():
        defaults = LearningConfig().model_dump(mode="json", exclude={"sweep"})
        saved = {**defaults, **json.loads(path.read_text(encoding="utf-8"))}
        now, before = _flat(settings), _flat(saved)
        changed = sorted(k for k in now.keys() | before.keys() if now.get(k) != before.get(k))
        if changed:
            raise ValueError(f"{root} holds a protocol run with other settings ({', '.join(changed)} differ); "
                             "use another --name, or delete the folder to start again")
        return
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"cold.steps": 30, ...}``, so a difference names the setting itself."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
