"""Micro-batches from a Kafka consumer, bounded by size and by a maximum wait.

A batch closes when it holds ``batch_size`` records, or ``max_wait_ms`` after
its first record arrived, or when the caller asks to stop. An idle consumer
blocks for at most ``idle_poll_ms`` per call, so a stop request is noticed
quickly even when no records come.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol


class PollingConsumer(Protocol):
    """The part of ``kafka.KafkaConsumer`` the batcher uses."""

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]: ...


def next_batch(
    consumer: PollingConsumer,
    *,
    batch_size: int,
    max_wait_ms: int,
    stop: Callable[[], bool] = lambda: False,
    idle_poll_ms: int = 200,
    clock: Callable[[], float] = time.monotonic,
) -> list[Any]:
    """Records for one micro-batch, in the order the consumer returned them (may be empty)."""
    batch: list[Any] = []
    deadline: float | None = None
    while len(batch) < batch_size and not stop():
        if deadline is None:
            timeout_ms = idle_poll_ms
        else:
            timeout_ms = int((deadline - clock()) * 1000)
            if timeout_ms <= 0:
                break
        polled = consumer.poll(timeout_ms=timeout_ms, max_records=batch_size - len(batch))
        for records in polled.values():
            batch.extend(records)
        if batch and deadline is None:
            deadline = clock() + max_wait_ms / 1000
        elif not batch:
            return batch  # idle: give the caller a chance to reload, refresh metrics, stop
    return batch
