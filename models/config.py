"""Validated configuration dataclasses: the PEFT adapter and the training run.

Both are plain dataclasses validated in ``__post_init__`` (the PEFT way) and
serialised as sorted-key JSON inside every registry entry, so an entry says
exactly how it was made. ``TrainConfig.from_file`` reads YAML or JSON.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PEFT_METHODS = ("lora", "adalora", "ia3", "none")
CLASS_WEIGHTING = ("none", "inverse_sqrt", "inverse")
#: The largest seed numpy accepts; every seed (training and retraining) is checked against it.
MAX_SEED = 2**32 - 1


class ConfigError(ValueError):
    """A configuration value that cannot work, named with the field."""


@dataclass(frozen=True)
class AdapterConfig:
    """Which PEFT method adapts the shared encoder, and how.

    ``target_modules`` is a list of module-name suffixes (``query``, ``dense``)
    or the string ``"all-linear"``. ``options`` go verbatim into the PEFT
    config (e.g. ``{"feedforward_modules": ["output.dense"]}`` for IA3, or
    ``{"total_step": 1000}`` for AdaLoRA). ``method="none"`` trains the heads
    only on a frozen encoder.
    """

    method: str = "lora"
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.1
    target_modules: tuple[str, ...] | str = ("query", "key", "value", "dense")
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in PEFT_METHODS:
            raise ConfigError(f"adapter.method={self.method!r}: expected one of {PEFT_METHODS}")
        if self.rank < 1:
            raise ConfigError(f"adapter.rank={self.rank}: must be >= 1")
        if self.alpha <= 0:
            raise ConfigError(f"adapter.alpha={self.alpha}: must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"adapter.dropout={self.dropout}: must be in [0, 1)")
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if not self.target_modules:
            raise ConfigError("adapter.target_modules: must name at least one module")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if isinstance(self.target_modules, tuple):
            data["target_modules"] = list(self.target_modules)
        return data


#: Relative paths in configs (``distillation.labels``) are read from the repository root.
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DistillationConfig:
    """Learn from a teacher's soft labels as well as the gold labels (models/distill.py).

    The loss is ``(1 - weight) * gold + weight * T^2 * KL(teacher_T || student_T)``
    summed over both heads, for every training text.
    """

    labels: str  # soft-label file (finsentry models teacher-labels); relative: repo root
    weight: float = 0.5
    temperature: float = 2.0

    def __post_init__(self) -> None:
        if not self.labels:
            raise ConfigError("distillation.labels: must name a soft-label file")
        if not 0 < self.weight <= 1:
            raise ConfigError(f"distillation.weight={self.weight!r} must be in (0, 1]")
        if not self.temperature > 0:
            raise ConfigError(f"distillation.temperature={self.temperature!r} must be > 0")

    @property
    def labels_path(self) -> Path:
        path = Path(self.labels)
        return path if path.is_absolute() else REPO_ROOT / path


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Durations in seconds or steps, fractions in [0, 1)."""

    base_model_dir: str | None = None  # None: ModelSettings.base_model_dir
    data_dir: str | None = None  # None: models/data
    max_length_tokens: int = 64
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    head_dropout: float = 0.1
    epochs: int = 3
    batch_size: int = 32
    grad_accumulation_steps: int = 1
    learning_rate: float = 5e-4  # adapter
    head_learning_rate: float = 2e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    max_grad_norm: float = 1.0
    label_smoothing: float = 0.0
    class_weighting: str = "none"
    topic_loss_weight: float = 1.0
    sentiment_loss_weight: float = 1.0
    seed: int = 13  # fixes the split; also the training seed unless training_seed is set
    #: Seed for initialisation, dropout and batch order (None: ``seed``). Setting it
    #: repeats a recipe on the same split, so run-to-run spread can be measured
    #: without moving the held-out texts or staling the teacher's soft labels.
    training_seed: int | None = None
    heldout_fraction: float = 0.15
    validation_fraction: float = 0.10
    evals_per_epoch: int = 2
    early_stopping_patience: int = 3  # evaluations without val macro-F1 gain
    max_train_seconds: float | None = None  # stop (and keep the best) after this
    torch_threads: int | None = None  # None: leave torch's default
    checkpoint_dir: str | None = None  # None: <registry>/../checkpoints/run
    eval_batch_size: int = 128
    #: Fit a TF-IDF + logistic-regression model after training and mix its
    #: probabilities with the encoder's (models/lexical.py; weight chosen on validation).
    lexical_mixture: bool = False
    #: On CPU, run the forward pass under bf16 autocast where the CPU has native bf16
    #: (avx512_bf16/AMX; elsewhere it is emulated and slower, so fp32 stays). CUDA
    #: always trains under bf16 autocast.
    cpu_bf16_autocast: bool = False
    #: Compute the embeddings and the bottom layers that have no trainable weight once,
    #: before the first epoch, instead of in every step (models/prefix_cache.py;
    #: BERT-style encoders). Those layers then run without dropout in training.
    cache_frozen_prefix: bool = False
    #: Soft labels of a larger teacher to learn from as well (None: gold labels only).
    distillation: DistillationConfig | None = None

    def __post_init__(self) -> None:
        if isinstance(self.adapter, dict):
            object.__setattr__(self, "adapter", AdapterConfig(**self.adapter))
        if isinstance(self.distillation, dict):
            try:
                distillation = DistillationConfig(**self.distillation)
            except TypeError as exc:
                raise ConfigError(f"train config: distillation: {exc}") from exc
            object.__setattr__(self, "distillation", distillation)
        checks = [
            ("max_length_tokens", 8 <= self.max_length_tokens <= 4096, "in 8..4096"),
            ("head_dropout", 0 <= self.head_dropout < 1, "in [0, 1)"),
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("grad_accumulation_steps", self.grad_accumulation_steps >= 1, ">= 1"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("head_learning_rate", self.head_learning_rate > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("warmup_fraction", 0 <= self.warmup_fraction < 1, "in [0, 1)"),
            ("max_grad_norm", self.max_grad_norm > 0, "> 0"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            (
                "class_weighting",
                self.class_weighting in CLASS_WEIGHTING,
                f"one of {CLASS_WEIGHTING}",
            ),
            ("topic_loss_weight", self.topic_loss_weight >= 0, ">= 0"),
            ("sentiment_loss_weight", self.sentiment_loss_weight >= 0, ">= 0"),
            ("heldout_fraction", 0 < self.heldout_fraction < 0.5, "in (0, 0.5)"),
            ("validation_fraction", 0 < self.validation_fraction < 0.5, "in (0, 0.5)"),
            ("evals_per_epoch", self.evals_per_epoch >= 1, ">= 1"),
            ("early_stopping_patience", self.early_stopping_patience >= 1, ">= 1"),
            ("eval_batch_size", self.eval_batch_size >= 1, ">= 1"),
            ("seed", 0 <= self.seed <= MAX_SEED, f"in 0..{MAX_SEED}"),
            (
                "training_seed",
                self.training_seed is None or 0 <= self.training_seed <= MAX_SEED,
                f"in 0..{MAX_SEED}",
            ),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(
                    f"train config: {name}={getattr(self, name)!r} must be {expected}"
                )
        if self.topic_loss_weight == 0 and self.sentiment_loss_weight == 0:
            raise ConfigError(
                "train config: topic_loss_weight and sentiment_loss_weight are both 0"
            )
        if self.max_train_seconds is not None and self.max_train_seconds <= 0:
            raise ConfigError(
                f"train config: max_train_seconds={self.max_train_seconds} must be > 0"
            )
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"train config: torch_threads={self.torch_threads} must be >= 1")

    @property
    def run_seed(self) -> int:
        """The seed of initialisation, dropout and batch order."""
        return self.seed if self.training_seed is None else self.training_seed

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["adapter"] = self.adapter.to_dict()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"train config: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: Path) -> TrainConfig:
        """Read a YAML or JSON mapping of fields (``adapter`` as a nested mapping)."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"train config: cannot read {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"train config: {path} must hold a mapping of fields")
        return cls.from_dict(data)
