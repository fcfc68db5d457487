"""Config sections of the training library: the model and tokenizer, the optimizer, the loop, the RL algorithm
(advantages and the policy loss) and the critic. Every default lives here; unknown keys are errors.

The rollout stage's sections (``data``, ``sampling``, ``rollout``, ``reward``) live in `thinkrl.rollout.specs`;
`thinkrl.train.config` combines both into recipes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from thinkrl.rl import ADVANTAGE_ESTIMATORS, ALGORITHM_PRESETS, POLICY_LOSSES
from thinkrl.spec import Section, registered

LossAggMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
KLKind = Literal["k1", "k2", "k3"]
DEFAULT_ARCHITECTURE = "SeedOssForCausalLM"
"""What ``model.init`` builds when it names no ``architectures``."""


class ModelSpec(Section):
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

    @field_validator("init")
    @classmethod
    def _buildable_init(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """A config the model can be built from (checked now, before any run folder is written; the vocabulary
        size defaults to the tokenizer's when the model is built)."""
        if value is not None:
            from thinkrl.model.config import ModelConfig

            ModelConfig.from_hf_dict({"architectures": [DEFAULT_ARCHITECTURE], **value})
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        kind = value.split(":", 1)[0]
        if kind not in ("auto", "cpu", "cuda", "mps"):
            raise ValueError(f"device {value!r} must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'")
        return value


class TokenizerSpec(Section):
    """Which tokenizer to use."""

    path: str = "builtin"
    """"builtin" (the offline tokenizer shipped with thinkrl) or a tokenizer folder/file."""


class AlgorithmSpec(Section):
    """The RL algorithm: advantage estimator and policy loss (with its off-policy correction, KL and LM terms).

    With ``preset`` set, the preset's values (for this section and for ``rollout``, ``reward`` and ``critic``) are
    applied first and every key written explicitly in the recipe overrides them. The preset is applied by the
    recipe (`thinkrl.train.config.RLRecipe`); a bare ``AlgorithmSpec(preset=...)`` only checks the name.
    """

    preset: str | None = None
    """Named algorithm preset ("dapo", "vapo", "grpo"...; `thinkrl.rl.ALGORITHM_PRESETS`) applied before explicit
    keys."""
    advantage_estimator: str = "grpo"
    """Registered advantage estimator (see `thinkrl.rl.ADVANTAGE_ESTIMATORS`)."""
    lam: float = Field(1.0, ge=0.0, le=1.0)
    """GAE lambda for the policy advantages."""
    lam_critic: float = Field(1.0, ge=0.0, le=1.0)
    """GAE lambda for the value targets (VAPO decoupled GAE)."""
    length_adaptive_alpha: float | None = Field(None, gt=0.0)
    """VAPO length-adaptive GAE: lambda = 1 - 1/(alpha * length); None is off."""
    whiten_advantages: bool = False
    """Normalise the advantages over all valid tokens of the batch (GAE only; verl does this for PPO)."""
    policy_loss: str = "ppo_clip"
    """Registered policy loss (see `thinkrl.rl.POLICY_LOSSES`)."""
    eps_low: float = Field(0.2, ge=0.0, lt=1.0)
    """Lower clip range: ratio clipped at 1 - eps_low."""
    eps_high: float = Field(0.28, ge=0.0)
    """Upper clip range (clip-higher): ratio clipped at 1 + eps_high."""
    dual_clip: float | None = Field(3.0, gt=1.0)
    """Dual-clip constant c > 1 bounding the loss for negative advantages; None is off."""
    loss_agg_mode: LossAggMode = "token-mean"
    """How the per-token loss is reduced (see `thinkrl.rl` agg_loss)."""
    off_policy: Literal["none", "decoupled"] = "none"
    """"none": the ratio is taken against the behaviour log-probs the engine recorded. "decoupled": decoupled PPO
    (Hilton et al. 2021): the ratio is taken against the trainer's own log-probs before the update (the proximal
    policy) and each token is weighted by pi_proximal / pi_behaviour."""
    behaviour_is_cap: float | None = Field(None, gt=0.0)
    """"decoupled": truncate the behaviour importance weight at this value (truncated IS); None is no cap."""
    kl_coef: float = Field(0.0, ge=0.0)
    """Weight of the KL penalty to the reference policy; 0 is off (no reference model)."""
    kl_kind: KLKind = "k3"
    """KL estimator: "k1", "k2" or "k3" (Schulman's estimators)."""
    positive_lm_coef: float = Field(0.0, ge=0.0)
    """VAPO weight of the NLL loss on correct samples; 0 is off."""
    ppo_epochs: int = Field(1, ge=1)
    """Passes over each rollout batch."""
    num_mini_batches: int = Field(1, ge=1)
    """Optimizer steps per pass (the batch is split into this many mini-batches)."""

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None, info: ValidationInfo) -> str | None:
        presets = info.context["presets"] if info.context and "presets" in info.context else ALGORITHM_PRESETS
        if value is not None and value not in presets:
            raise ValueError(f"unknown preset {value!r}; known presets: {', '.join(sorted(presets))}")
        return value

    @field_validator("advantage_estimator")
    @classmethod
    def _known_estimator(cls, value: str) -> str:
        return registered(ADVANTAGE_ESTIMATORS, value)

    @field_validator("policy_loss")
    @classmethod
    def _known_loss(cls, value: str) -> str:
        return registered(POLICY_LOSSES, value)

    @model_validator(mode="after")
    def _cap_needs_decoupled(self) -> AlgorithmSpec:
        if self.behaviour_is_cap is not None and self.off_policy != "decoupled":
            raise ValueError("behaviour_is_cap truncates the decoupled-PPO weight: set off_policy 'decoupled'")
        return self


class CriticSpec(Section):
    """The value model of PPO/VAPO: where it starts, how it learns, and VAPO's value pretraining."""

    enabled: bool = False
    """Train a value model (needed by advantage_estimator "gae")."""
    path: str | None = None
    """Folder to initialise the critic from (a saved value model or a policy); None copies the policy."""
    lr: float | None = Field(None, gt=0.0)
    """Learning rate of the critic; None uses optim.lr (VAPO: 2x the actor's)."""
    value_clip: float | None = Field(0.5, gt=0.0)
    """Clip range of the PPO value loss around the values at sampling time; None is off."""
    pretrain_steps: int = Field(0, ge=0)
    """VAPO value pretraining: most batches the critic is fitted on before RL starts; 0 is off."""
    pretrain_target_ev: float = Field(0.5, le=1.0)
    """Value pretraining stops once the critic's explained variance on a fresh batch reaches this."""
    pretrain_updates: int = Field(4, ge=1)
    """Critic optimizer steps per value-pretraining batch, on mini-batches drawn from all batches so far."""


class OptimSpec(Section):
    """AdamW and its learning-rate schedule."""

    lr: float = Field(1e-3, gt=0.0)
    """Peak learning rate."""
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


class TrainerSpec(Section):
    """The loop: length, micro-batching, logging, saving, resuming."""

    steps: int = Field(100, ge=1)
    """Optimisation steps to run (RL: rollout+update steps)."""
    micro_batch_tokens: int = Field(4096, ge=1)
    """Token budget of one forward/backward micro-batch (packed sequences)."""
    activation_checkpointing: bool = False
    """Recompute each decoder layer's forward in the backward pass (less activation memory, ~1/3 more compute)."""
    offload_optimizer: bool = False
    """Under torchrun (FSDP2): keep the sharded parameters, gradients and optimizer state in host memory and run the
    optimizer step on the CPU (``CPUOffloadPolicy``). Refused by a single process."""
    tensor_parallel: int = Field(1, ge=1)
    """Under torchrun: split each decoder layer over this many ranks (tensor parallelism; WORLD_SIZE / this many
    data-parallel ranks, FSDP2-sharded; `thinkrl.train.tensor_parallel`). Not combined with offload_optimizer."""
    fsdp_shard_size: int = Field(0, ge=0)
    """Under torchrun: ranks FSDP2 shards each parameter over; 0 = all data-parallel ranks. Smaller (dividing
    them): HSDP, replicas of the sharded model whose gradients are all-reduced (not with tensor_parallel > 1)."""
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


