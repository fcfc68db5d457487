"""Recipes: the config sections of each component, combined into one typed, validated recipe.

The sections are declared beside their code (`thinkrl.rollout.specs`: data, sampling, rollout, reward;
`thinkrl.train.specs`: model, tokenizer, optim, trainer, algorithm, critic); only this module combines them, and
components receive their own section, never the whole recipe. Every section forbids unknown keys, so a typo is an
error naming the key before any work starts; a key that moved to another section names its new place.

    recipe = load_recipe("recipes/tiny_dapo.yaml", RLRecipe, ["algorithm.eps_high=0.3"])
    save_resolved(recipe, out_dir / "recipe.yaml")

Overrides are ``dotted.key=value`` strings; the value is parsed with ``yaml.safe_load`` (so ``0.3``, ``true``,
``null``, ``[0,32]`` work) and applied to the raw YAML mapping before validation. Registry names
(``data.task``, ``algorithm.advantage_estimator``, ``algorithm.policy_loss``) are checked against the registries
at validation time, so register your own members before loading a recipe that names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator

from thinkrl.rl import VALUE_ESTIMATORS
from thinkrl.rl.presets import ALGORITHM_PRESETS
from thinkrl.rollout.agent_spec import AgentSpec
from thinkrl.rollout.environments import ENVIRONMENTS
from thinkrl.rollout.specs import (
    CurriculumSpec,
    DataSpec,
    OnlineFilterSpec,
    PrefilterSpec,
    RewardSpec,
    RolloutSpec,
    SamplingSpec,
)
from thinkrl.spec import Section, read_text_file, read_yaml
from thinkrl.train.specs import AlgorithmSpec, CriticSpec, ModelSpec, OptimSpec, TokenizerSpec, TrainerSpec

__all__ = ["MOVED_KEYS", "AlgorithmSpec", "CriticSpec", "CurriculumSpec", "DataSpec", "ModelSpec",
           "OnlineFilterSpec", "OptimSpec", "PrefilterSpec", "RLRecipe", "RewardSpec", "RolloutSpec", "SFTRecipe",
           "SamplingSpec", "TokenizerSpec", "TrainerSpec", "apply_overrides", "load_recipe", "save_resolved",
           "validate_recipe"]

MOVED_KEYS: dict[str, str] = {
    **{f"algorithm.{key}": f"rollout.{key}"
       for key in ("group_size", "prompts_per_step", "dynamic_sampling", "max_sampling_rounds")},
    **{f"algorithm.{key}": f"reward.{key}"
       for key in ("correct_reward", "wrong_reward", "overlong_penalty", "max_response_len", "overlong_cache_len",
                   "budget_reward", "budget_overlong_coef", "budget_cache_frac", "budget_alpha")},
    "algorithm.use_critic": "critic.enabled",
    "algorithm.critic_path": "critic.path",
    "algorithm.value_clip": "critic.value_clip",
    "algorithm.value_pretrain_steps": "critic.pretrain_steps",
    "algorithm.value_pretrain_target_ev": "critic.pretrain_target_ev",
    "algorithm.value_pretrain_updates": "critic.pretrain_updates",
    "optim.critic_lr": "critic.lr",
}
"""Keys of earlier recipe layouts -> where they live now (an old key is an error naming its new place)."""


def _check_moved(raw: dict[str, Any], source: str) -> None:
    """ValueError naming the new place of every moved key in ``raw`` (a recipe mapping)."""
    found = [f"{old}: moved to {new}" for old, new in MOVED_KEYS.items()
             if isinstance(raw.get(old.split(".")[0]), dict) and old.split(".")[1] in raw[old.split(".")[0]]]
    if found:
        count = f" ({len(found)} keys moved)" if len(found) > 1 else ""
        raise ValueError(f"invalid {source}{count}: " + "; ".join(found))


class _Recipe(Section):
    """Fields shared by every recipe."""

    name: str
    """Run name; also the default output folder runs/<name>."""
    model: ModelSpec
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    data: DataSpec
    optim: OptimSpec = Field(default_factory=OptimSpec)
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)
    agent: AgentSpec | None = None
    """Multi-turn tool use in an environment (docs/agents.md); None: single-turn responses."""

    @model_validator(mode="after")
    def _default_output_dir(self) -> _Recipe:
        if self.trainer.output_dir is None:
            self.trainer.output_dir = str(Path("runs") / self.name)
        return self

    @model_validator(mode="after")
    def _warmup_fits(self) -> _Recipe:
        # (the schedule refuses it too, but only after the model and the data are built)
        if self.optim.warmup_steps > self.trainer.steps:
            raise ValueError(f"optim.warmup_steps ({self.optim.warmup_steps}) must be <= trainer.steps "
                             f"({self.trainer.steps})")
        return self

    @model_validator(mode="after")
    def _agent_task(self) -> _Recipe:
        if self.agent is not None:
            task = ENVIRONMENTS.get(self.agent.environment).task
            if self.data.task != task:
                raise ValueError(f"agent.environment {self.agent.environment!r} poses {task!r} problems; set "
                                 f"data.task to {task!r} (got {self.data.task!r})")
            if self.data.prefilter is not None or self.data.online_filter is not None:
                raise ValueError("data.prefilter / data.online_filter judge single-turn responses; they do not "
                                 "apply with agent (set them to null)")
        return self


class SFTRecipe(_Recipe):
    """Supervised fine-tuning (cold start) on task solution traces."""

    trace_noise: float = Field(0.0, ge=0.0, le=1.0)
    """Fraction of traces that carry a realistic mistake and a wrong final answer (good-but-imperfect cold start)."""
    epochs: int = Field(1, ge=1)
    """Passes over the training set; trainer.steps caps the total."""
    thinking_budgets: list[int] = Field(default_factory=lambda: [-1])
    """Budgets sampled per example and rendered in its prompt (-1 unlimited, 0 answer at once); traces cut to fit."""
    budget_reflections: bool = True
    """Write Seed-OSS budget reflections into traces with a finite budget, at the reflection interval."""
    reflect_interval: int | None = Field(None, ge=1)
    """Tokens between reflections in SFT traces; None is the Seed-OSS table (128 up to a 512 budget, ...)."""

    @field_validator("thinking_budgets")
    @classmethod
    def _valid_sft_budgets(cls, value: list[int]) -> list[int]:
        if not value or any(b < -1 for b in value):
            raise ValueError("thinking_budgets must be a non-empty list of -1, 0 or positive token counts")
        return value


def _algorithm_presets(info: ValidationInfo) -> dict[str, dict[str, Any]]:
    """The preset table: ``context={"presets": ...}`` if given, else `thinkrl.rl.presets.ALGORITHM_PRESETS`."""
    if info.context and "presets" in info.context:
        return info.context["presets"]
    return ALGORITHM_PRESETS


class RLRecipe(_Recipe):
    """Reinforcement learning with a verifier reward."""

    sampling: SamplingSpec = Field(default_factory=SamplingSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    reward: RewardSpec = Field(default_factory=RewardSpec)
    algorithm: AlgorithmSpec = Field(default_factory=AlgorithmSpec)
    critic: CriticSpec = Field(default_factory=CriticSpec)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any, info: ValidationInfo) -> Any:
        """Fill every key the preset sets and the recipe does not (plain keys: ``algorithm``; dotted: their
        section)."""
        if not isinstance(data, dict) or not isinstance(data.get("algorithm"), dict):
            return data
        name = data["algorithm"].get("preset")
        if name is None:
            return data
        presets = _algorithm_presets(info)
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(presets))}")
        out = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
        for key, value in presets[name].items():
            section, _, field = key.rpartition(".")
            target = out.setdefault(section or "algorithm", {})
            if isinstance(target, dict):
                target.setdefault(field, value)
        return out

    @model_validator(mode="after")
    def _sections_agree(self) -> RLRecipe:
        algo, rollout, reward = self.algorithm, self.rollout, self.reward
        if self.critic.pretrain_steps and not self.critic.enabled:
            raise ValueError(f"critic.pretrain_steps ({self.critic.pretrain_steps}) needs critic.enabled true")
        uses_values = algo.advantage_estimator in VALUE_ESTIMATORS
        if uses_values and not self.critic.enabled:
            raise ValueError(f"algorithm.advantage_estimator {algo.advantage_estimator!r} needs critic values: set "
                             "critic.enabled true")
        if rollout.group_size < 2 and (not uses_values or rollout.dynamic_sampling):
            raise ValueError(f"rollout.group_size {rollout.group_size} needs algorithm.advantage_estimator 'gae' (or "
                             f"another of thinkrl.rl.VALUE_ESTIMATORS: a critic baseline) and rollout.dynamic_sampling "
                             f"false; group baselines ({algo.advantage_estimator!r}) need at least 2")
        if reward.overlong_penalty and reward.max_response_len > self.sampling.max_new_tokens:
            raise ValueError(
                f"reward.max_response_len ({reward.max_response_len}) exceeds sampling.max_new_tokens "
                f"({self.sampling.max_new_tokens}); the overlong penalty would never reach its end")
        if reward.budget_reward != "none" and all(b < 0 for b in self.sampling.thinking_budgets):
            raise ValueError(
                f"reward.budget_reward {reward.budget_reward!r} shapes the reward relative to the thinking budget, "
                f"but sampling.thinking_budgets {self.sampling.thinking_budgets} has no finite budget "
                "(e.g. [0, 16, 32, -1])")
        return self

    @model_validator(mode="after")
    def _streaming_off_policy(self) -> RLRecipe:
        """Streaming trains on tokens of older policies, so it corrects for them by default: ``algorithm.off_policy``
        left unset becomes "decoupled"; "none" is accepted only with ``rollout.max_staleness`` 0 (docs/streaming.md)."""
        rollout, algo = self.rollout, self.algorithm
        if rollout.mode != "streaming":
            return self
        if "off_policy" not in algo.model_fields_set:
            algo.off_policy = "decoupled"
        elif algo.off_policy == "none" and rollout.max_staleness > 0:
            raise ValueError(f"algorithm.off_policy 'none' with rollout.mode 'streaming' and max_staleness "
                             f"{rollout.max_staleness} trains on stale tokens uncorrected; use 'decoupled' (the "
                             "streaming default) or max_staleness 0")
        return self


RecipeT = TypeVar("RecipeT", bound=_Recipe)


def _section_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation like ``ModelSpec`` or ``ModelSpec | None``."""
    candidates = [annotation] if get_origin(annotation) is None else list(get_args(annotation))
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _check_key_path(cls: type[BaseModel], keys: list[str], override: str) -> None:
    """Raise ValueError unless ``keys`` names a field path of ``cls`` (free-form dicts end the check)."""
    moved = MOVED_KEYS.get(".".join(keys[:2]))
    if moved is not None:
        raise ValueError(f"override {override!r}: {'.'.join(keys[:2])} moved to {moved}")
    current: type[BaseModel] | None = cls
    for depth, key in enumerate(keys):
        if current is None:
            return  # inside a free-form dict field (model.init, data.difficulty)
        if key not in current.model_fields:
            where = ".".join(keys[:depth]) or "top level"
            known = ", ".join(current.model_fields)
            raise ValueError(f"override {override!r}: unknown key {key!r} in {where}; known keys: {known}")
        annotation = current.model_fields[key].annotation
        nested = _section_class(annotation)
        options = [annotation, *get_args(annotation)]
        is_dict = any(option is dict or get_origin(option) is dict for option in options)
        if nested is None and not is_dict and depth < len(keys) - 1:
            raise ValueError(f"override {override!r}: {'.'.join(keys[: depth + 1])} is not a section")
        current = nested


def apply_overrides(raw: dict[str, Any], overrides: list[str], cls: type[BaseModel]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``dotted.key=value`` overrides applied.

    Values are parsed with ``yaml.safe_load``. An override without ``=`` or naming
    a key that ``cls`` does not have raises ValueError naming it.
    """
    result = yaml.safe_load(yaml.safe_dump(raw))  # deep copy of plain YAML data
    for override in overrides:
        key_path, sep, text = override.partition("=")
        keys = key_path.strip().split(".")
        if not sep or not all(keys):
            raise ValueError(f"override {override!r} must look like 'section.key=value'")
        _check_key_path(cls, keys, override)
        node = result
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, dict):
                raise ValueError(f"override {override!r}: {key!r} holds {child!r}, not a mapping")
            node = child
        node[keys[-1]] = read_yaml(text, f"override {override!r}")
    return result


def _format_errors(err: ValidationError, cls: type[BaseModel]) -> str:
    """``section.key: problem`` for each pydantic error, joined by "; " (the command line prints one line);
    unknown keys list the known ones."""
    lines = []
    for item in err.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "recipe"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            parent: type[BaseModel] | None = cls
            for part in item["loc"][:-1]:
                field = parent.model_fields.get(str(part)) if parent else None
                parent = _section_class(field.annotation) if field else None
            known = ", ".join(parent.model_fields) if parent else "?"
            message = f"unknown key; known keys here: {known}"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif not isinstance(item.get("input"), dict):
            message += f" (got {item.get('input')!r})"
        lines.append(f"{loc}: {message}")
    return "; ".join(lines)


def validate_recipe(
    raw: dict[str, Any], cls: type[RecipeT], *, source: str = "recipe",
    presets: dict[str, dict[str, Any]] | None = None,
) -> RecipeT:
    """Validate a raw mapping into ``cls``; errors become one ValueError listing every problem.

    ``presets`` replaces the algorithm preset table (default `thinkrl.rl.presets.ALGORITHM_PRESETS`).
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{source} must be a YAML mapping of sections, got {type(raw).__name__}")
    if cls is RLRecipe:  # the moved keys are those of the RL layout (an SFT recipe has no critic section)
        _check_moved(raw, source)
    context = {"presets": presets} if presets is not None else None
    try:
        return cls.model_validate(raw, context=context)
    except ValidationError as err:
        count = f" ({err.error_count()} problems)" if err.error_count() > 1 else ""
        raise ValueError(f"invalid {source}{count}: {_format_errors(err, cls)}") from None


def load_recipe(
    path: str | Path, cls: type[RecipeT], overrides: list[str] | None = None, *,
    presets: dict[str, dict[str, Any]] | None = None,
) -> RecipeT:
    """Read a YAML recipe, apply ``dotted.key=value`` overrides, validate into ``cls``.

    Raises FileNotFoundError if ``path`` is missing and ValueError for bad YAML, a bad
    override or any invalid key/value (the message lists ``section.key: problem`` lines).
    """
    path = Path(path)
    raw = read_yaml(read_text_file(path, "recipe file"), f"recipe {path}")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"recipe {path} must be a YAML mapping of sections, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides or [], cls)
    return validate_recipe(raw, cls, source=f"recipe {path}", presets=presets)


def save_resolved(recipe: BaseModel, path: str | Path) -> Path:
    """Write the fully resolved recipe (every default filled in) as YAML; returns the path.

    Loading the file back with `load_recipe` gives an equal recipe.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = recipe.model_dump(mode="json")
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
