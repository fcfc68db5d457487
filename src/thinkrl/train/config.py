"""Typed, validated recipes: one pydantic model per component, combined only in a recipe.

Every default of a run lives here and nowhere else. Each section forbids unknown
keys, so a typo is an error naming the key before any work starts. Components
receive their own section (``recipe.sampling``, ``recipe.optim``...), never the
whole recipe.

    recipe = load_recipe("recipes/tiny_rl.yaml", RLRecipe, ["algorithm.eps_high=0.3"])
    save_resolved(recipe, out_dir / "recipe.yaml")

Overrides are ``dotted.key=value`` strings; the value is parsed with
``yaml.safe_load`` (so ``0.3``, ``true``, ``null``, ``[0,32]`` work) and applied to
the raw YAML mapping before validation. Out of scope: building components from a
recipe (the entry points do that). Registry names (``data.task``,
``algorithm.advantage_estimator``) are checked against the registries at validation
time, so register your own members before loading a recipe that names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from thinkrl.registry import Registry
from thinkrl.rl import ADVANTAGE_ESTIMATORS
from thinkrl.rl.presets import ALGORITHM_PRESETS
from thinkrl.tasks import TASKS
from thinkrl.tasks.external import DATASET_TASKS

LossAggMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
KLKind = Literal["k1", "k2", "k3"]


def _registered(registry: Registry[Any], name: str) -> str:
    """``name`` if ``registry`` has it, else ValueError listing the registered names."""
    if name not in registry:
        raise ValueError(f"unknown {registry.family} {name!r}; registered: {', '.join(registry.names())}")
    return name


class _Section(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class ModelSpec(_Section):
    """Which weights to load or which architecture to build from scratch."""

    path: str | None = None
    """Hugging Face folder (config.json + safetensors) to load. Exactly one of path/init."""
    init: dict[str, Any] | None = None
    """HF-style config.json fields for a from-scratch model (architectures, hidden_size...)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Parameter dtype; use float32 on CPU."""
    device: str = "auto"
    """auto (cuda if available, else cpu), cpu, cuda, cuda:N or mps."""

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ModelSpec:
        if (self.path is None) == (self.init is None):
            raise ValueError("set exactly one of 'path' (a Hugging Face folder) or 'init' (config fields)")
        return self

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        kind = value.split(":", 1)[0]
        if kind not in ("auto", "cpu", "cuda", "mps"):
            raise ValueError(f"device {value!r} must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'")
        return value


class TokenizerSpec(_Section):
    """Which tokenizer to use."""

    path: str = "builtin"
    """"builtin" (the offline tokenizer shipped with thinkrl) or a tokenizer folder/file."""


class PrefilterSpec(_Section):
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


class OnlineFilterSpec(_Section):
    """Online data filter: skip prompts whose recent groups were all solved or all failed."""

    window: int = Field(2, ge=1)
    """Skip a prompt when its last this-many groups were all solved (or all failed)."""
    retry_after: int = Field(4, ge=1)
    """A skipped prompt is sampled again after it has been skipped this many times."""
    skip_solved: bool = True
    """Skip prompts recently always solved."""
    skip_unsolved: bool = True
    """Skip prompts recently never solved."""


class CurriculumSpec(_Section):
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


class DataSpec(_Section):
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


class SamplingSpec(_Section):
    """How rollouts are sampled by the engine."""

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


def _algorithm_presets(info: ValidationInfo) -> dict[str, dict[str, Any]]:
    """The preset table: ``context={"presets": ...}`` if given, else `thinkrl.rl.presets.ALGORITHM_PRESETS`."""
    if info.context and "presets" in info.context:
        return info.context["presets"]
    return ALGORITHM_PRESETS


class AlgorithmSpec(_Section):
    """The RL algorithm: advantage estimator, loss, sampling filters, group sizes.

    With ``preset`` set, the preset's values are applied first and every key
    written explicitly in the YAML overrides them.
    """

    preset: str | None = None
    """Named algorithm preset ("dapo", "vapo", "grpo"...) applied before explicit keys."""
    advantage_estimator: str = "grpo"
    """Registered advantage estimator (see `thinkrl.rl.ADVANTAGE_ESTIMATORS`)."""
    eps_low: float = Field(0.2, ge=0.0, lt=1.0)
    """Lower clip range: ratio clipped at 1 - eps_low."""
    eps_high: float = Field(0.28, ge=0.0)
    """Upper clip range (clip-higher): ratio clipped at 1 + eps_high."""
    dual_clip: float | None = Field(3.0, gt=1.0)
    """Dual-clip constant c > 1 bounding the loss for negative advantages; None is off."""
    loss_agg_mode: LossAggMode = "token-mean"
    """How the per-token loss is reduced (see `thinkrl.rl` agg_loss)."""
    dynamic_sampling: bool = True
    """Drop groups whose rewards are all equal and sample more until the batch is full."""
    max_sampling_rounds: int = Field(4, ge=1)
    """Most generation rounds per step when dynamic sampling refills the batch."""
    overlong_penalty: bool = True
    """DAPO soft overlong punishment over the last overlong_cache_len tokens."""
    max_response_len: int = Field(1024, ge=1)
    """L_max of the overlong penalty; must not exceed sampling.max_new_tokens."""
    overlong_cache_len: int = Field(256, ge=0)
    """L_cache of the overlong penalty: the penalty ramps over the last this-many tokens."""
    budget_reward: Literal["none", "overlong", "l1"] = "none"
    """Reward shaping relative to each prompt's sampled thinking budget (``sampling.thinking_budgets``), on the
    thinking tokens used: "overlong" is DAPO's soft overlong punishment with the budget as the limit, "l1" is
    L1/LCPO's ``-budget_alpha * |budget - used|``; budget -1 is never shaped."""
    budget_overlong_coef: float = Field(2.0, ge=0.0)
    """"overlong": weight of the budget punishment. At 2 (= correct - wrong reward) a correct answer that overran
    its budget scores no better than a wrong one within it; at 1 (DAPO's weight) overrunning still pays when it
    turns wrong answers right, and RL learns to overrun."""
    budget_cache_frac: float = Field(0.25, gt=0.0, le=1.0)
    """"overlong": the ramp to -1 spans the last this share of the budget (L_cache = ceil(frac * budget))."""
    budget_alpha: float = Field(0.01, ge=0.0)
    """"l1": penalty per token between the budget and the thinking tokens used."""
    kl_coef: float = Field(0.0, ge=0.0)
    """Weight of the KL penalty to the reference policy; 0 is off (no reference model)."""
    kl_kind: KLKind = "k3"
    """KL estimator: "k1", "k2" or "k3" (Schulman's estimators)."""
    lam: float = Field(1.0, ge=0.0, le=1.0)
    """GAE lambda for the policy advantages."""
    lam_critic: float = Field(1.0, ge=0.0, le=1.0)
    """GAE lambda for the value targets (VAPO decoupled GAE)."""
    length_adaptive_alpha: float | None = Field(None, gt=0.0)
    """VAPO length-adaptive GAE: lambda = 1 - 1/(alpha * length); None is off."""
    positive_lm_coef: float = Field(0.0, ge=0.0)
    """VAPO weight of the NLL loss on correct samples; 0 is off."""
    use_critic: bool = False
    """Train a value model (PPO/VAPO)."""
    critic_path: str | None = None
    """Folder to initialise the critic from (a saved value model or a policy); None copies the policy."""
    value_clip: float | None = Field(0.5, gt=0.0)
    """Clip range of the PPO value loss around the values at sampling time; None is off."""
    value_pretrain_steps: int = Field(0, ge=0)
    """VAPO value pretraining: most batches the critic is fitted on before RL starts; 0 is off."""
    value_pretrain_target_ev: float = Field(0.5, le=1.0)
    """Value pretraining stops once the critic's explained variance on a fresh batch reaches this."""
    whiten_advantages: bool = False
    """Normalise the advantages over all valid tokens of the batch (GAE only; verl does this for PPO)."""
    value_pretrain_updates: int = Field(4, ge=1)
    """Critic optimizer steps per value-pretraining batch, on mini-batches drawn from all batches so far."""
    group_size: int = Field(8, ge=1)
    """Responses sampled per prompt (G); 1 only with a critic (no group baseline, no dynamic sampling)."""
    prompts_per_step: int = Field(16, ge=1)
    """Prompts (groups) per optimisation step."""
    ppo_epochs: int = Field(1, ge=1)
    """Passes over each rollout batch."""
    num_mini_batches: int = Field(1, ge=1)
    """Optimizer steps per pass (the batch is split into this many mini-batches)."""
    correct_reward: float = 1.0
    """Reward of a verified-correct response."""
    wrong_reward: float = -1.0
    """Reward of a wrong response."""

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or data.get("preset") is None:
            return data
        presets = _algorithm_presets(info)
        name = data["preset"]
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(presets))}")
        return {**presets[name], **data}

    @field_validator("advantage_estimator")
    @classmethod
    def _known_estimator(cls, value: str) -> str:
        return _registered(ADVANTAGE_ESTIMATORS, value)

    @field_validator("group_size")
    @classmethod
    def _group_of_one_needs_a_critic(cls, value: int, info: ValidationInfo) -> int:
        estimator, dynamic = info.data.get("advantage_estimator"), info.data.get("dynamic_sampling")
        if value < 2 and (estimator != "gae" or dynamic):
            raise ValueError(f"group_size {value} needs advantage_estimator 'gae' (a critic baseline) and "
                             f"dynamic_sampling false; group baselines ({estimator!r}) need at least 2")
        return value

    @model_validator(mode="after")
    def _critic_for_gae(self) -> AlgorithmSpec:
        if self.advantage_estimator == "gae" and not self.use_critic:
            raise ValueError("advantage_estimator 'gae' needs critic values: set use_critic true")
        if self.value_pretrain_steps and not self.use_critic:
            raise ValueError(f"value_pretrain_steps ({self.value_pretrain_steps}) needs use_critic true")
        return self

    @model_validator(mode="after")
    def _overlong_window(self) -> AlgorithmSpec:
        if self.overlong_cache_len >= self.max_response_len:
            raise ValueError(
                f"overlong_cache_len ({self.overlong_cache_len}) must be < max_response_len "
                f"({self.max_response_len})"
            )
        return self


class OptimSpec(_Section):
    """AdamW and its learning-rate schedule."""

    lr: float = Field(1e-3, gt=0.0)
    """Peak learning rate."""
    critic_lr: float | None = Field(None, gt=0.0)
    """Learning rate of the value model when algorithm.use_critic; None uses lr."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    weight_decay: float = Field(0.0, ge=0.0)
    """AdamW decoupled weight decay."""
    eps: float = Field(1e-8, gt=0.0)
    """AdamW epsilon."""
    warmup_steps: int = Field(0, ge=0)
    """Steps of linear warm-up from 0 to lr."""
    schedule: Literal["cosine", "constant", "linear"] = "cosine"
    """Decay after warm-up, down to lr * min_lr_ratio at the last step."""
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)
    """Final learning rate as a fraction of lr."""
    grad_clip: float | None = Field(1.0, gt=0.0)
    """Clip the global gradient norm to this; None is off."""

    @field_validator("betas")
    @classmethod
    def _betas_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in value):
            raise ValueError(f"betas {list(value)} must each lie in [0, 1)")
        return value


class TrainerSpec(_Section):
    """The loop: length, micro-batching, logging, saving, resuming."""

    steps: int = Field(100, ge=1)
    """Optimisation steps to run (RL: rollout+update steps)."""
    micro_batch_tokens: int = Field(4096, ge=1)
    """Token budget of one forward/backward micro-batch (packed sequences)."""
    save_every: int = Field(50, ge=0)
    """Save a checkpoint every this many steps (and at the end); 0 saves only at the end."""
    keep_last: int = Field(3, ge=1)
    """Checkpoints kept on disk; older ones are deleted."""
    eval_every: int = Field(0, ge=0)
    """Evaluate on the test set every this many steps; 0 is off."""
    eval_samples: int = Field(4, ge=1)
    """Samples per held-out problem at evaluation (accuracy is their mean, avg@k)."""
    log_every: int = Field(1, ge=1)
    """Log metrics every this many steps."""
    output_dir: str | None = None
    """Run folder (metrics, checkpoints, resolved recipe); None means runs/<recipe name>."""
    seed: int = 0
    """Seed of python, numpy and torch RNGs."""
    resume: bool = False
    """Continue from the latest checkpoint in output_dir/checkpoints if there is one."""
    stop_on_nonfinite: bool = True
    """Stop with an error when a loss or gradient norm is NaN/inf."""


class _Recipe(_Section):
    """Fields shared by every recipe."""

    name: str
    """Run name; also the default output folder runs/<name>."""
    model: ModelSpec
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    data: DataSpec
    optim: OptimSpec = Field(default_factory=OptimSpec)
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)

    @model_validator(mode="after")
    def _default_output_dir(self) -> _Recipe:
        if self.trainer.output_dir is None:
            self.trainer.output_dir = str(Path("runs") / self.name)
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


class RLRecipe(_Recipe):
    """Reinforcement learning with a verifier reward."""

    sampling: SamplingSpec = Field(default_factory=SamplingSpec)
    algorithm: AlgorithmSpec = Field(default_factory=AlgorithmSpec)

    @model_validator(mode="after")
    def _response_len_fits(self) -> RLRecipe:
        if self.algorithm.overlong_penalty and self.algorithm.max_response_len > self.sampling.max_new_tokens:
            raise ValueError(
                f"algorithm.max_response_len ({self.algorithm.max_response_len}) exceeds "
                f"sampling.max_new_tokens ({self.sampling.max_new_tokens}); the overlong penalty "
                "would never reach its end"
            )
        if self.algorithm.budget_reward != "none" and all(b < 0 for b in self.sampling.thinking_budgets):
            raise ValueError(
                f"algorithm.budget_reward {self.algorithm.budget_reward!r} shapes the reward relative to the "
                f"thinking budget, but sampling.thinking_budgets {self.sampling.thinking_budgets} has no finite "
                "budget (e.g. [0, 16, 32, -1])"
            )
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
        node[keys[-1]] = yaml.safe_load(text)
    return result


def _format_errors(err: ValidationError, cls: type[BaseModel]) -> str:
    """One ``section.key: problem`` line per pydantic error; unknown keys list the known ones."""
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
        lines.append(f"  {loc}: {message}")
    return "\n".join(lines)


def validate_recipe(
    raw: dict[str, Any], cls: type[RecipeT], *, source: str = "recipe",
    presets: dict[str, dict[str, Any]] | None = None,
) -> RecipeT:
    """Validate a raw mapping into ``cls``; errors become one ValueError listing every problem.

    ``presets`` replaces the algorithm preset table (default `thinkrl.rl.presets.ALGORITHM_PRESETS`).
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{source} must be a YAML mapping of sections, got {type(raw).__name__}")
    context = {"presets": presets} if presets is not None else None
    try:
        return cls.model_validate(raw, context=context)
    except ValidationError as err:
        raise ValueError(f"invalid {source} ({err.error_count()} problems):\n{_format_errors(err, cls)}") from None


def load_recipe(
    path: str | Path, cls: type[RecipeT], overrides: list[str] | None = None, *,
    presets: dict[str, dict[str, Any]] | None = None,
) -> RecipeT:
    """Read a YAML recipe, apply ``dotted.key=value`` overrides, validate into ``cls``.

    Raises FileNotFoundError if ``path`` is missing and ValueError for bad YAML, a bad
    override or any invalid key/value (the message lists ``section.key: problem`` lines).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"recipe {path} is not valid YAML: {err}") from None
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
