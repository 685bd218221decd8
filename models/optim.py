"""The optimiser and learning-rate schedule shared by training and retraining.

``models.train`` (the original recipe) and ``models.feedback.finetune`` (a
retrain from a registry entry) differ in their data and loss, not in how they
step: AdamW over the adapter and the heads with separate learning rates, linear
warmup, then linear decay to 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from models.model import MultiTaskClassifier


def adamw(
    model: MultiTaskClassifier, learning_rate: float, head_learning_rate: float, weight_decay: float
) -> tuple[torch.optim.AdamW, list[torch.nn.Parameter]]:
    """AdamW with one parameter group for the adapter and one for the heads; also returns
    every trainable parameter (for gradient clipping)."""
    adapter_params, head_params = model.trainable_parameters()
    optimizer = torch.optim.AdamW(
        [
            {"params": adapter_params, "lr": learning_rate},
            {"params": head_params, "lr": head_learning_rate},
        ],
        weight_decay=weight_decay,
    )
    return optimizer, adapter_params + head_params


def warmup_linear_decay(
    total_steps: int, warmup_steps: int, time_fraction: Callable[[], float] = lambda: 0.0
) -> Callable[[int], float]:
    """Learning-rate factor: linear warmup, then linear decay to 0 at the last step, or at
    the end of a time budget when that comes first (``time_fraction()`` in [0, 1]), so a
    run cut short on a slow machine still ends with an annealed learning rate."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        by_steps = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 1.0 - max(by_steps, time_fraction()))

    return factor
