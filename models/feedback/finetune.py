"""Fine-tuning a registry entry on weighted examples: the training half of a retrain.

``models.train.train`` runs the whole original recipe from the base encoder on
the two datasets. A retrain needs three things it does not offer: starting from
an existing entry's adapter and heads, extra examples that are not in the data
directory, and a loss weight per example (so that a few hundred analyst labels
count against thousands of replayed originals). This module reuses the model
engineer's pieces (model, batching, optimiser and schedule, logits, calibration)
and adds only those.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from models.batching import collate, encode, epoch_batches
from models.calibration import fit_temperature, softmax
from models.config import AdapterConfig
from models.data import normalise_text
from models.evaluate import probability_metrics
from models.labels import IGNORE_INDEX, TASKS
from models.loading import compute_logits
from models.model import MultiTaskClassifier, load_encoder
from models.optim import adamw, warmup_linear_decay
from models.prefix_cache import FrozenPrefix, PrefixCacheError, forward_batch
from models.registry import RegistryEntry, RegistryError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightedExample:
    """A training example (normalised text, task, head index) with its loss weight."""

    text: str
    task: str
    label: int
    weight: float = 1.0


@dataclass(frozen=True)
class FinetuneOptions:
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 3e-4
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    max_grad_norm: float = 1.0
    seed: int = 13
    max_length_tokens: int = 64
    max_train_seconds: float | None = None
    #: Compute the embeddings and the encoder layers without trainable weights once,
    #: not in every step (models/prefix_cache.py); encoders it cannot split train without.
    cache_frozen_prefix: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"finetune: epochs and batch_size must be >= 1, got {self}")
        if self.learning_rate <= 0 or self.head_learning_rate <= 0:
            raise ValueError(f"finetune: learning rates must be > 0, got {self}")


def model_from_entry(entry: RegistryEntry, base_model_dir: Path) -> MultiTaskClassifier:
    """``entry``'s model with its adapter and heads loaded *trainable* (train mode)."""
    import peft
    from safetensors.torch import load_file

    encoder = load_encoder(base_model_dir)
    hidden = encoder.config.hidden_size
    try:
        if entry.adapter_dir.is_dir():
            encoder = peft.PeftModel.from_pretrained(
                encoder, str(entry.adapter_dir), is_trainable=True
            )
        else:  # heads-only entry (adapter method "none")
            for param in encoder.parameters():
                param.requires_grad_(False)
        model = MultiTaskClassifier(
            encoder, hidden, head_dropout=float(entry.config.get("head_dropout", 0.1))
        )
        model.load_head_state_dict(load_file(str(entry.heads_path)))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise RegistryError(
            f"registry entry {entry.version!r}: cannot load weights: {exc}"
        ) from exc
    return model


def model_from_base(entry: RegistryEntry, base_model_dir: Path) -> MultiTaskClassifier:
    """A fresh adapter and heads on the base, shaped like ``entry``'s (same PEFT config)."""
    adapter = AdapterConfig(**entry.config.get("adapter", {}))
    return MultiTaskClassifier.build(
        base_model_dir, adapter, head_dropout=float(entry.config.get("head_dropout", 0.1))
    )


def weighted_multitask_loss(
    outputs: dict[str, torch.Tensor],
    topic: torch.Tensor,
    sentiment: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Per-task cross-entropy, each example scaled by its weight, normalised by the
    task's weight sum in the batch; a task with no label in the batch adds 0."""
    total = outputs["topic_logits"].new_zeros((), dtype=torch.float32)
    for logits, labels in (
        (outputs["topic_logits"], topic),
        (outputs["sentiment_logits"], sentiment),
    ):
        mask = labels != IGNORE_INDEX
        if not bool(mask.any()):
            continue
        losses = F.cross_entropy(logits.float()[mask], labels[mask], reduction="none")
        w = weights[mask]
        total = total + (losses * w).sum() / w.sum()
    return total


def finetune(
    model: MultiTaskClassifier,
    tokenizer,
    examples: Sequence[WeightedExample],
    options: FinetuneOptions,
    *,
    device: str = "cpu",
    on_step: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place (AdamW, warmup then linear decay, clipping) on length-sorted
    batches; returns ``{"steps", "examples_seen", "train_seconds", "final_loss"}``."""
    if not examples:
        raise ValueError("finetune: no training examples")
    random.seed(options.seed)
    np.random.seed(options.seed)
    torch.manual_seed(options.seed)
    model.to(device).train()
    data = encode(list(examples), tokenizer, options.max_length_tokens)
    weights = torch.tensor([e.weight for e in examples], dtype=torch.float32)
    lengths = [len(x) for x in data.input_ids]
    optimizer, trainable = adamw(
        model, options.learning_rate, options.head_learning_rate, options.weight_decay
    )
    per_epoch = math.ceil(len(data) / options.batch_size)
    total = per_epoch * options.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_linear_decay(total, int(options.warmup_fraction * total))
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    started = time.monotonic()
    prefix = _frozen_prefix(model, data, pad, device) if options.cache_frozen_prefix else None
    step, seen, ema = 0, 0, None
    for epoch in range(options.epochs):
        for indices in epoch_batches(len(data), lengths, options.batch_size, options.seed, epoch):
            batch = collate(data, indices, pad)
            out = forward_batch(model, prefix, batch, indices, device)
            loss = weighted_multitask_loss(
                out,
                batch["topic"].to(device),
                batch["sentiment"].to(device),
                weights[indices].to(device),
            )
            if not torch.isfinite(loss):
                raise FloatingPointError(f"finetune: loss is {float(loss)} at step {step}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, options.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seen += len(indices)
            value = loss.item()
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            if on_step is not None:
                on_step(step, total, ema)
            if options.max_train_seconds and time.monotonic() - started > options.max_train_seconds:
                log.info(
                    "finetune: time budget %.0f s reached at step %d/%d",
                    options.max_train_seconds,
                    step,
                    total,
                )
                break
        else:
            continue
        break
    model.eval()
    return {
        "steps": step,
        "planned_steps": total,
        "examples_seen": seen,
        "train_seconds": round(time.monotonic() - started, 2),
        "final_loss_ema": ema,
        "cached_frozen_layers": prefix.depth if prefix is not None else 0,
    }


def _frozen_prefix(model: MultiTaskClassifier, data, pad_id: int, device: str) -> FrozenPrefix | None:
    """The cached frozen bottom, or None (nothing frozen, or an encoder it cannot split)."""
    try:
        return FrozenPrefix.build(model, data, pad_id, device)
    except PrefixCacheError as exc:
        log.info("finetune: training without the frozen-prefix cache: %s", exc)
        return None


def fit_temperatures(
    model, tokenizer, validation: Sequence, *, max_length_tokens: int, device: str = "cpu"
) -> dict[str, float]:
    """One temperature per head on ``validation`` (objects with text, task, label)."""
    logits = compute_logits(
        model.eval(),
        tokenizer,
        [e.text for e in validation],
        max_length_tokens=max_length_tokens,
        device=device,
    )
    out = {}
    for task in TASKS:
        idx = [i for i, e in enumerate(validation) if e.task == task]
        labels = np.array([validation[i].label for i in idx], dtype=np.int64)
        out[task] = fit_temperature(logits[task][idx], labels) if idx else 1.0
    return out


def evaluate(
    model,
    tokenizer,
    texts: Sequence[str],
    labels: Sequence[int],
    task: str,
    *,
    temperature: float,
    max_length_tokens: int,
    device: str = "cpu",
    lexical=None,
) -> dict[str, Any]:
    """accuracy, macro-F1, ECE and Brier score of ``model`` on one task's labelled texts
    (``n`` = 0: empty), mixed with ``lexical`` (a LexicalModel) where given, as served."""
    if not texts:
        return {"n": 0}
    logits = compute_logits(
        model.eval(), tokenizer, list(texts), max_length_tokens=max_length_tokens, device=device
    )[task]
    probs = softmax(logits / temperature)
    if lexical is not None:
        probs = lexical.mix(task, probs, [normalise_text(t) for t in texts])
    metrics = probability_metrics(np.asarray(labels), probs, task)
    return {k: metrics[k] for k in ("n", "accuracy", "macro_f1", "ece", "brier")}
