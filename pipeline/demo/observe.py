"""Read what the pipeline did: topic contents, firing alerts, Prometheus series.

Used by the demo's live progress and summary, by the end-to-end test and by
``bench/e2e.py``; everything here reads the real servers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from pipeline.kafka_io import make_consumer
from pipeline.settings import KafkaSettings

log = logging.getLogger(__name__)

T = TypeVar("T")


def topic_offsets(settings: KafkaSettings, topic: str) -> int:
    """Records ever written to ``topic`` (end minus beginning offsets, all partitions).

    Counts transaction markers too, so use :func:`read_topic` for topics written
    transactionally (sentiment.windows).
    """
    from kafka import TopicPartition

    consumer = make_consumer(settings, None)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return 0
        end = consumer.end_offsets(tps)
        begin = consumer.beginning_offsets(tps)
        return sum(end[tp] - begin[tp] for tp in tps)
    finally:
        consumer.close()


@dataclass
class TopicReader:
    """Incrementally reads one topic from the beginning (no consumer group, no commits)."""

    settings: KafkaSettings
    topic: str
    decode: Callable[[bytes], T]
    read_committed: bool = False
    records: list = field(default_factory=list)
    #: Kafka record timestamps (ms), aligned with ``records``.
    timestamps_ms: list[int] = field(default_factory=list)
    errors: int = 0

    def __post_init__(self) -> None:
        from kafka import TopicPartition

        self._consumer = make_consumer(
            self.settings, None,
            isolation_level="read_committed" if self.read_committed else "read_uncommitted",
        )
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        self._consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
        self._consumer.seek_to_beginning()

    def poll(self, timeout_ms: int = 200) -> list:
        """Read what has arrived since the last call; returns the new records."""
        new = []
        for batch in self._consumer.poll(timeout_ms=timeout_ms, max_records=5000).values():
            for record in batch:
                try:
                    new.append(self.decode(record.value))
                except ValueError:
                    self.errors += 1
                    continue
                self.timestamps_ms.append(record.timestamp)
        self.records.extend(new)
        return new

    def drain(self, idle_ms: int = 1000) -> list:
        """Poll until nothing new arrives for ``idle_ms``."""
        while self.poll(timeout_ms=idle_ms):
            pass
        return self.records

    def close(self) -> None:
        self._consumer.close()


def alertmanager_alerts(alertmanager_url: str, **label_filters: str) -> list[dict]:
    """Active alerts in Alertmanager whose labels match all filters."""
    response = httpx.get(f"{alertmanager_url}/api/v2/alerts", timeout=5)
    response.raise_for_status()
    return [
        alert for alert in response.json()
        if all(alert["labels"].get(k) == v for k, v in label_filters.items())
    ]


def prometheus_query(prometheus_url: str, promql: str) -> list[dict]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    body = response.json()
    if body.get("status") != "success":
        raise RuntimeError(f"prometheus query {promql!r} failed: {body}")
    return body["data"]["result"]


def wait_for(predicate: Callable[[], T], timeout_seconds: float, interval_seconds: float = 0.5,
             what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_seconds:.0f} s waiting for {what}")
        time.sleep(interval_seconds)
