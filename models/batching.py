"""Length-sorted, dynamically padded multi-task batches.

Examples are pre-tokenised once (no padding). Each epoch shuffles them with a
seed, cuts the shuffled list into pools of ``pool_batches`` batches, sorts each
pool by length and cuts it into batches, then shuffles the batch order: every
batch holds sequences of similar length (padding only to its own longest), while
the order stays random. Tasks mix freely; the other task's label is IGNORE_INDEX.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from models.labels import IGNORE_INDEX


@dataclass(frozen=True)
class Encoded:
    """Tokenised examples: ``input_ids`` (unpadded lists), per-task head labels and,
    when distilling, the teacher's probabilities on both heads (models/distill.py)."""

    input_ids: list[list[int]]
    topic: list[int]
    sentiment: list[int]
    teacher_topic: np.ndarray | None = None  # (n, 20)
    teacher_sentiment: np.ndarray | None = None  # (n, 3)

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(examples, tokenizer, max_length_tokens: int) -> Encoded:
    """Tokenise ``models.data.Example`` objects, truncating to ``max_length_tokens``."""
    ids = tokenizer([e.text for e in examples], truncation=True, max_length=max_length_tokens)[
        "input_ids"
    ]
    topic = [e.label if e.task == "topic" else IGNORE_INDEX for e in examples]
    sentiment = [e.label if e.task == "sentiment" else IGNORE_INDEX for e in examples]
    return Encoded(list(ids), topic, sentiment)


def epoch_batches(
    n: int, lengths: list[int], batch_size: int, seed: int, epoch: int, pool_batches: int = 50
) -> list[list[int]]:
    """Index batches for one epoch; deterministic in (seed, epoch)."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(n))
    rng.shuffle(order)
    batches = []
    pool = batch_size * pool_batches
    for start in range(0, n, pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Batches in length order, for evaluation."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(data: Encoded, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the chosen examples to their longest; returns tensors for the model and loss."""
    width = max(len(data.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        seq = data.input_ids[i]
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "topic": torch.tensor([data.topic[i] for i in indices], dtype=torch.long),
        "sentiment": torch.tensor([data.sentiment[i] for i in indices], dtype=torch.long),
    }
    if data.teacher_topic is not None and data.teacher_sentiment is not None:
        batch["teacher_topic"] = torch.from_numpy(data.teacher_topic[indices])
        batch["teacher_sentiment"] = torch.from_numpy(data.teacher_sentiment[indices])
    return batch
