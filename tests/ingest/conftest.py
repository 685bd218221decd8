"""Helpers for ingest tests: read what landed on a real topic."""

from __future__ import annotations

import time

import pytest

from pipeline.kafka_io import make_consumer
from pipeline.messages import RawArticle, decode_raw
from pipeline.settings import KafkaSettings


def read_raw(
    settings: KafkaSettings,
    expected: int | None = None,
    idle_seconds: float = 2.0,
    timeout_seconds: float = 30.0,
) -> list[tuple[str, RawArticle, int]]:
    """(key, article, broker timestamp ms) of every record on ``topic_raw``.

    Records come in offset order per partition.

    Stops when ``expected`` records were read (and nothing more arrives within a
    short grace period), or when the topic has been idle for ``idle_seconds``.
    """
    from kafka import TopicPartition

    consumer = make_consumer(settings, None, consumer_timeout_ms=200)
    try:
        partitions = consumer.partitions_for_topic(settings.topic_raw)
        deadline = time.monotonic() + 10
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.1)
            partitions = consumer.partitions_for_topic(settings.topic_raw)
        tps = [TopicPartition(settings.topic_raw, p) for p in sorted(partitions or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records, last_new = [], time.monotonic()
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200)
            for tp_records in batch.values():
                for record in tp_records:
                    records.append(
                        (
                            record.key.decode(),
                            decode_raw(record.value, stage="test"),
                            record.timestamp,
                        )
                    )
                    last_new = time.monotonic()
            quiet = time.monotonic() - last_new
            if expected is not None and len(records) >= expected and quiet > 0.5:
                break
            if expected is None and quiet > idle_seconds:
                break
        return records
    finally:
        consumer.close()


@pytest.fixture
def raw_reader():
    return read_raw
