"""Multi-task LoRA training: both data sets in one run, masked loss, best-on-val.

``train(config, settings)`` runs the whole recipe and returns the new registry
entry: dedupe and split the data, tokenise once, train with AdamW (warmup then
linear decay, gradient clipping and accumulation, bf16 autocast on CUDA) on
length-sorted dynamically padded batches (with ``cache_frozen_prefix``, starting
from the stored states of the frozen bottom layers: models/prefix_cache.py), evaluate on the validation split
``evals_per_epoch`` times per epoch, keep the best validation macro-F1 (mean of
the two tasks) and stop early, fit one temperature per head on validation,
score the held-out split, and write everything into the registry.

A checkpoint after every evaluation (``checkpoint_dir``) lets an interrupted
run resume where it stopped with the same config; it is removed on success.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from models.base import resolve_base_model_dir
from models.batching import collate, encode, epoch_batches
from models.config import TrainConfig
from models.data import DATA_DIR, make_splits, write_heldout
from models.distill import distillation_loss, read_soft_labels
from models.evaluate import classification_metrics
from models.labels import TASKS, num_classes
from models.loading import compute_logits, resolve_device
from models.model import MultiTaskClassifier, multitask_loss
from models.optim import adamw, warmup_linear_decay
from models.prefix_cache import FrozenPrefix, PrefixCacheError, forward_batch
from models.publish import publish
from models.registry import Registry, RegistryEntry

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot start or continue; names the stage and the value."""


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _class_weights(labels: list[int], n: int, mode: str) -> torch.Tensor | None:
    """Per-class loss weights normalised to mean 1 over the examples (None for ``none``)."""
    if mode == "none":
        return None
    counts = np.bincount([x for x in labels if x >= 0], minlength=n).astype(np.float64)
    power = 0.5 if mode == "inverse_sqrt" else 1.0
    weights = np.where(counts > 0, np.clip(counts, 1, None) ** -power, 0.0)
    weights *= counts.sum() / max((weights * counts).sum(), 1e-12)
    return torch.tensor(weights, dtype=torch.float32)


def _trainable_state(model: MultiTaskClassifier) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.named_parameters() if v.requires_grad}


def _autocast(config: TrainConfig, device: str):
    """bf16 autocast on CUDA; on CPU only when configured and native (see TrainConfig)."""
    from models.inference import cpu_has_native_bf16

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if config.cpu_bf16_autocast:
        if cpu_has_native_bf16():
            return torch.autocast("cpu", dtype=torch.bfloat16)
        log.warning("train: cpu_bf16_autocast ignored, this CPU has no native bf16: fp32")
    return nullcontext()


def validate(model, tokenizer, val, config: TrainConfig, device: str) -> tuple[float, dict]:
    """(mean macro-F1 over tasks, {task: (labels, logits)}) on the validation split."""
    model.eval()
    logits = compute_logits(
        model,
        tokenizer,
        [e.text for e in val],
        max_length_tokens=config.max_length_tokens,
        device=device,
        batch_size=config.eval_batch_size,
    )
    model.train()
    results, scores = {}, []
    for task in TASKS:
        idx = [i for i, e in enumerate(val) if e.task == task]
        labels = np.array([val[i].label for i in idx])
        results[task] = (labels, logits[task][idx])
        scores.append(classification_metrics(labels, logits[task][idx], task)["macro_f1"])
    return float(np.mean(scores)), results


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[rate]:.1f} ex/s"),
        TextColumn("val F1 {task.fields[val]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def train(
    config: TrainConfig,
    settings=None,
    *,
    registry: Registry | None = None,
    promote: bool = True,
    progress: bool = True,
) -> RegistryEntry:
    """Run ``config`` and add the result to the registry (promoted unless ``promote=False``)."""
    from transformers import AutoTokenizer

    from pipeline.settings import ModelSettings

    settings = settings or ModelSettings()
    base_dir = resolve_base_model_dir(config.base_model_dir, settings.resolved_base_model_dir())
    registry = registry or Registry(settings.registry_dir, base_dir)
    device = resolve_device(settings.device)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    _seed_everything(config.run_seed)
    started = time.monotonic()

    data_dir = Path(config.data_dir) if config.data_dir else DATA_DIR
    splits = make_splits(
        data_dir,
        heldout_fraction=config.heldout_fraction,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
    )
    write_heldout(splits, data_dir)
    log.info("train: data %s", splits.stats)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    data = encode(splits.train, tokenizer, config.max_length_tokens)
    teacher = None
    if config.distillation is not None:
        soft_labels = read_soft_labels(config.distillation.labels_path)
        teacher = soft_labels.provenance(config.distillation.labels)
        teacher_topic, teacher_sentiment = soft_labels.aligned([e.text for e in splits.train])
        data = dataclasses.replace(
            data, teacher_topic=teacher_topic, teacher_sentiment=teacher_sentiment
        )
        log.info(
            "train: distilling from %s (weight %.2f, temperature %.1f)",
            config.distillation.labels_path,
            config.distillation.weight,
            config.distillation.temperature,
        )
    lengths = [len(x) for x in data.input_ids]

    model = MultiTaskClassifier.build(
        base_dir, config.adapter, head_dropout=config.head_dropout
    ).to(device)
    adapter_params, head_params = model.trainable_parameters()
    log.info(
        "train: %d adapter and %d head parameters trainable on %s",
        sum(p.numel() for p in adapter_params),
        sum(p.numel() for p in head_params),
        device,
    )
    prefix = None
    if config.cache_frozen_prefix:
        try:
            prefix = FrozenPrefix.build(model, data, tokenizer.pad_token_id, device)
        except PrefixCacheError as exc:
            raise TrainingError(str(exc)) from exc

    optimizer, trainable = adamw(
        model, config.learning_rate, config.head_learning_rate, config.weight_decay
    )
    batches_per_epoch = len(epoch_batches(len(data), lengths, config.batch_size, config.run_seed, 0))
    steps_per_epoch = max(1, batches_per_epoch // config.grad_accumulation_steps)
    total_steps = steps_per_epoch * config.epochs
    clock = {"prior": 0.0}

    def time_fraction() -> float:
        if not config.max_train_seconds:
            return 0.0
        spent = clock["prior"] + time.monotonic() - started
        return min(1.0, spent / config.max_train_seconds)

    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_linear_decay(total_steps, int(config.warmup_fraction * total_steps), time_fraction),
    )
    weights = {
        task: _class_weights(getattr(data, task), num_classes(task), config.class_weighting)
        for task in TASKS
    }
    weights = {k: (v.to(device) if v is not None else None) for k, v in weights.items()}
    eval_every = max(1, batches_per_epoch // config.evals_per_epoch)

    config_hash = hashlib.sha256(config.to_json().encode()).hexdigest()[:16]
    ckpt_dir = (
        Path(config.checkpoint_dir)
        if config.checkpoint_dir
        else registry.root.parent / "checkpoints"
    )
    ckpt_path = ckpt_dir / f"run-{config_hash}.pt"
    state = {
        "epoch": 0,
        "batch": 0,
        "best": -1.0,
        "best_state": None,
        "bad_evals": 0,
        "history": [],
        "elapsed_seconds": 0.0,
    }
    if ckpt_path.is_file():
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["trainable"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        log.info(
            "train: resumed from %s at epoch %d batch %d", ckpt_path, state["epoch"], state["batch"]
        )
    prior_seconds = state["elapsed_seconds"]  # spent by the runs this one resumes
    clock["prior"] = prior_seconds

    def save_checkpoint() -> None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        state["elapsed_seconds"] = prior_seconds + time.monotonic() - started
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "trainable": _trainable_state(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "state": state,
            },
            tmp,
        )
        tmp.replace(ckpt_path)

    autocast = _autocast(config, device)
    bar = _progress(progress)
    stop = False
    with bar or nullcontext():
        task_id = (
            bar.add_task(
                "train", total=batches_per_epoch * config.epochs, loss=0.0, rate=0.0, val="-"
            )
            if bar
            else None
        )
        if bar:
            bar.update(task_id, completed=state["epoch"] * batches_per_epoch + state["batch"])
        model.train()
        ema, seen, tick = None, 0, time.monotonic()
        for epoch in range(state["epoch"], config.epochs):
            batches = epoch_batches(len(data), lengths, config.batch_size, config.run_seed, epoch)
            for b in range(state["batch"] if epoch == state["epoch"] else 0, len(batches)):
                batch = collate(data, batches[b], tokenizer.pad_token_id)
                with autocast:
                    out = forward_batch(model, prefix, batch, batches[b], device)
                loss, _ = multitask_loss(
                    out,
                    batch["topic"].to(device),
                    batch["sentiment"].to(device),
                    topic_class_weight=weights["topic"],
                    sentiment_class_weight=weights["sentiment"],
                    label_smoothing=config.label_smoothing,
                    topic_weight=config.topic_loss_weight,
                    sentiment_weight=config.sentiment_loss_weight,
                )
                if config.distillation is not None:
                    soft = distillation_loss(
                        out,
                        batch["teacher_topic"].to(device),
                        batch["teacher_sentiment"].to(device),
                        config.distillation.temperature,
                    )
                    weight = config.distillation.weight
                    loss = (1 - weight) * loss + weight * soft
                if not torch.isfinite(loss):
                    raise TrainingError(f"train: loss is {float(loss)} at epoch {epoch} batch {b}")
                (loss / config.grad_accumulation_steps).backward()
                if (b + 1) % config.grad_accumulation_steps == 0 or b + 1 == len(batches):
                    torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                value = loss.item()
                ema = value if ema is None else 0.98 * ema + 0.02 * value
                seen += len(batches[b])
                rate = seen / max(1e-9, time.monotonic() - tick)
                if bar:
                    bar.update(task_id, advance=1, loss=ema, rate=rate)
                if (b + 1) % 50 == 0:  # the bar only renders on a terminal; logs go anywhere
                    log.info(
                        "train: epoch %d batch %d/%d loss %.4f %.1f examples/s",
                        epoch,
                        b + 1,
                        len(batches),
                        ema,
                        rate,
                    )
                state.update(epoch=epoch, batch=b + 1)
                last = b + 1 == len(batches)
                elapsed = prior_seconds + time.monotonic() - started
                over_time = bool(config.max_train_seconds and elapsed > config.max_train_seconds)
                if (b + 1) % eval_every == 0 or last or over_time:
                    score, val_results = validate(
                        model, tokenizer, splits.validation, config, device
                    )
                    state["history"].append(
                        {
                            "epoch": epoch,
                            "batch": b + 1,
                            "val_macro_f1": score,
                            "train_loss_ema": ema,
                        }
                    )
                    log.info(
                        "train: epoch %d batch %d val macro-F1 %.4f (best %.4f)",
                        epoch,
                        b + 1,
                        score,
                        state["best"],
                    )
                    if score > state["best"]:
                        state.update(
                            best=score,
                            best_state=_trainable_state(model),
                            bad_evals=0,
                            best_val=val_results,
                        )
                    else:
                        state["bad_evals"] += 1
                    if bar:
                        bar.update(task_id, val=f"{score:.4f}")
                    if last:
                        state.update(epoch=epoch + 1, batch=0)
                    save_checkpoint()
                    if state["bad_evals"] >= config.early_stopping_patience:
                        log.info(
                            "train: early stop, %d evaluations without gain", state["bad_evals"]
                        )
                        stop = True
                    if over_time:
                        log.info("train: time budget %.0f s reached", config.max_train_seconds)
                        stop = True
                    if stop:
                        break
            if stop:
                break
    model.load_state_dict(state["best_state"], strict=False)
    train_seconds = prior_seconds + time.monotonic() - started
    entry = publish(
        model, tokenizer, splits, config, registry, device, base_dir, state, train_seconds, promote,
        teacher=teacher,
    )
    ckpt_path.unlink(missing_ok=True)
    return entry
