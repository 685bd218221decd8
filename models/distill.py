"""Distillation from a larger teacher through its soft labels on the training texts.

The recipe (docs/model.md, "Distillation"):

1. train a teacher with ``finsentry train`` into a registry of its own, e.g.
   all-mpnet-base-v2 with ``models/configs/teacher_mpnet.yaml`` (same split,
   seed and data as the student, so it never saw the held-out split either);
2. ``finsentry models teacher-labels`` scores every text of the teacher's
   training split with both of its heads (calibrated probabilities) and writes
   a soft-label file (``.npz``: text keys, topic and sentiment probabilities;
   no pickle);
3. a student config with ``distillation: {labels: FILE, weight, temperature}``
   learns from the gold labels and from the teacher's probabilities, on both
   heads for every text: a topic tweet gets the teacher's sentiment too.

Texts are matched by :func:`text_key` (sha1 of the normalised text), so the
file does not depend on the order of the split; a training text the file does
not cover is an error (the file is stale: another split, data or seed).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.labels import num_classes

#: Soft-label files are read and written with these arrays; ``meta`` is JSON.
_ARRAYS = ("keys", "topic", "sentiment", "meta")


class DistillationError(RuntimeError):
    """A soft-label file is missing, damaged or does not cover the training texts."""


def text_key(text: str) -> str:
    """The key of a (normalised) training text in a soft-label file."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SoftLabels:
    """Teacher probabilities per text key: ``topic`` (n, 20), ``sentiment`` (n, 3)."""

    keys: tuple[str, ...]
    topic: np.ndarray
    sentiment: np.ndarray
    meta: dict[str, Any]
    #: Of the file's bytes as read, so a manifest names exactly what training used.
    sha256: str

    def provenance(self, name: str) -> dict[str, Any]:
        """Where a distilled model's soft labels came from (``data.teacher`` in its manifest)."""
        return {
            "soft_labels": name,
            "soft_labels_sha256": self.sha256,
            "teacher_version": self.meta.get("teacher_version"),
            "teacher_base_model": self.meta.get("teacher_base_model"),
            "teacher_heldout": self.meta.get("teacher_heldout"),
        }

    def aligned(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(topic, sentiment) probabilities in the order of ``texts``; every text must be covered."""
        row = {key: i for i, key in enumerate(self.keys)}
        index = [row.get(text_key(t), -1) for t in texts]
        missing = [t for t, i in zip(texts, index, strict=True) if i < 0]
        if missing:
            raise DistillationError(
                f"soft labels: {len(missing)} of {len(texts)} training texts are not in the file "
                f"(teacher {self.meta.get('teacher_version', '?')}); it was made for another "
                f"split, data or seed: make it again (finsentry models teacher-labels). "
                f"First missing: {missing[0][:80]!r}"
            )
        picked = np.asarray(index, dtype=np.int64)
        return self.topic[picked].astype(np.float32), self.sentiment[picked].astype(np.float32)


def write_soft_labels(
    path: Path,
    texts: Sequence[str],
    topic: np.ndarray,
    sentiment: np.ndarray,
    meta: dict[str, Any],
) -> None:
    """Write probabilities for ``texts`` (fp16, compressed) with ``meta`` (JSON-able)."""
    _check(topic, sentiment, len(texts), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        np.savez_compressed(
            handle,
            keys=np.asarray([text_key(t) for t in texts]),
            topic=topic.astype(np.float16),
            sentiment=sentiment.astype(np.float16),
            meta=np.asarray(json.dumps(meta, sort_keys=True)),
        )
    tmp.replace(path)


def read_soft_labels(path: Path) -> SoftLabels:
    """Load and check a soft-label file; DistillationError naming the file when it is bad."""
    try:
        raw = Path(path).read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            missing = [name for name in _ARRAYS if name not in data.files]
            if missing:
                raise DistillationError(f"soft labels {path}: missing arrays {missing}")
            keys = tuple(str(k) for k in data["keys"])
            topic = data["topic"].astype(np.float32)
            sentiment = data["sentiment"].astype(np.float32)
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError) as exc:
        raise DistillationError(f"soft labels {path}: cannot read: {exc}") from exc
    _check(topic, sentiment, len(keys), str(path))
    return SoftLabels(keys, topic, sentiment, meta, hashlib.sha256(raw).hexdigest())


def _check(topic: np.ndarray, sentiment: np.ndarray, n: int, where: str) -> None:
    for head, probs in (("topic", topic), ("sentiment", sentiment)):
        classes = num_classes(head)
        if probs.shape != (n, classes):
            raise DistillationError(
                f"soft labels {where}: {head} has shape {probs.shape}, expected ({n}, {classes})"
            )
        sums = probs.astype(np.float32).sum(axis=1)
        if not np.isfinite(probs).all() or (probs < 0).any() or not np.allclose(sums, 1, atol=1e-2):
            raise DistillationError(
                f"soft labels {where}: {head} rows are not probability distributions"
            )


def distillation_loss(
    outputs: dict[str, torch.Tensor],
    teacher_topic: torch.Tensor,
    teacher_sentiment: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Sum over both heads of T^2 * KL(teacher_T || student_T), averaged over the batch.

    The teacher's (calibrated) probabilities are softened by the same temperature
    as the student's logits: ``softmax(log p / T)``.
    """
    total = outputs["topic_logits"].new_zeros((), dtype=torch.float32)
    for logits, probs in (
        (outputs["topic_logits"], teacher_topic),
        (outputs["sentiment_logits"], teacher_sentiment),
    ):
        student = F.log_softmax(logits.float() / temperature, dim=-1)
        target = F.log_softmax(torch.log(probs.clamp_min(1e-8)) / temperature, dim=-1)
        kl = F.kl_div(student, target, log_target=True, reduction="batchmean")
        total = total + temperature**2 * kl
    return total


def teacher_soft_labels(
    registry_root: Path, version: str | None = None, *, base_model_dir: Path | None = None
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, Any]]:
    """(texts, topic, sentiment, meta): a teacher entry's calibrated probabilities on its
    own training split (rebuilt from the entry's config: data, seed, fractions).

    ``version`` None: the registry's newest entry. ``base_model_dir`` None: the base
    the teacher was trained on (its config's ``base_model_dir``).
    """
    from models.base import resolve_base_model_dir
    from models.config import TrainConfig
    from models.data import DATA_DIR, make_splits
    from models.inference import engine_from_registry
    from models.registry import Registry, RegistryError

    probe = Registry(registry_root)
    if version is None:
        entries = probe.entries()
        if not entries:
            raise RegistryError(f"teacher registry {registry_root}: no entries")
        version = entries[-1].version
    config = TrainConfig.from_dict(probe.inspect(version).config)
    base = base_model_dir or resolve_base_model_dir(config.base_model_dir, probe.base_model_dir)
    registry = Registry(registry_root, base)
    entry = registry.get(version)
    splits = make_splits(
        Path(config.data_dir) if config.data_dir else DATA_DIR,
        heldout_fraction=config.heldout_fraction,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
    )
    texts = [e.text for e in splits.train]
    engine = engine_from_registry(registry, entry.version)
    topic, sentiment = engine.probabilities(texts)
    meta = {
        "teacher_version": entry.version,
        "teacher_base_model": entry.base_model_name,
        "teacher_heldout": entry.metrics.get("heldout"),
        "data_snapshot_hash": splits.snapshot_hash,
        "engine_mode": engine.mode,
        "texts": len(texts),
    }
    return texts, topic, sentiment, meta
