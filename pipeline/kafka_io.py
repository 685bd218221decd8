"""Kafka clients built from :class:`KafkaSettings`, and topic management.

Every finsentry stage gets its producer, consumer and admin client here, so
security settings (SASL, TLS) and their guards (:mod:`pipeline.kafka_security`:
secrets masked in kafka-python's logs, a refused login raised as
:class:`KafkaAuthenticationError`) apply everywhere at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

from pipeline.kafka_security import (
    KafkaAuthenticationError,
    explain_bootstrap_failure,
    guard_logs,
)
from pipeline.settings import KafkaSettings

__all__ = [
    "KafkaAuthenticationError",
    "delete_topics",
    "ensure_topics",
    "make_admin",
    "make_consumer",
    "make_producer",
    "subscribe_when_known",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: kafka-python backs off reconnects up to 30 s by default, so a client could stay away
#: for half a minute after a restarted broker is back; Java clients cap this at 1 s.
RECONNECT = {"reconnect_backoff_ms": 50, "reconnect_backoff_max_ms": 1000}


def _build(settings: KafkaSettings, factory: Callable[..., T], *args, **config) -> T:
    guard_logs(settings)
    with explain_bootstrap_failure(settings):
        client = factory(*args, **config)
    guard_logs(settings)  # loggers of modules the client imported lazily
    return client


def make_producer(settings: KafkaSettings, **overrides):
    """An idempotent-ish, acks=all producer (at-least-once delivery)."""
    from kafka import KafkaProducer

    config = {
        **settings.client_config(),
        **RECONNECT,
        "acks": "all",
        "linger_ms": 5,
        # Retry until delivery_timeout_ms (120 s) runs out: a count of 10 is spent in about a
        # second of NotLeaderForPartition while a restarted broker re-elects its leaders.
        "retries": 2_147_483_647,
        "max_in_flight_requests_per_connection": 1,
        "compression_type": None,
        "max_request_size": 4 * 1024 * 1024,
        **overrides,
    }
    return _build(settings, KafkaProducer, **config)


def make_consumer(settings: KafkaSettings, group_id: str | None, *topics: str, **overrides):
    """A consumer with manual commits: callers commit after their output is acknowledged."""
    from kafka import KafkaConsumer

    config = {
        **settings.client_config(),
        **RECONNECT,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        **overrides,
    }
    return _build(settings, KafkaConsumer, *topics, **config)


def subscribe_when_known(
    consumer,
    topic: str,
    *,
    timeout_seconds: float = 60.0,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Join ``consumer``'s group on ``topic`` once the topic's partitions are known.

    A member that joins before it has the topic's metadata makes the group leader's
    assignor hand out no partitions ("No partition metadata for topic"), and
    kafka-python may not rejoin until its next metadata refresh (5 minutes): a
    classifier restarted after a crash then sat idle while its input piled up.
    Raises ``TimeoutError`` when the topic has no partitions within the timeout.
    """
    import time

    deadline = time.monotonic() + timeout_seconds
    while not consumer.partitions_for_topic(topic):
        if time.monotonic() > deadline or (stop is not None and stop()):
            raise TimeoutError(f"kafka: topic {topic!r} has no partitions after {timeout_seconds:.0f} s")
        time.sleep(0.5)
    consumer.subscribe([topic])


def make_admin(settings: KafkaSettings):
    from kafka import KafkaAdminClient

    return _build(settings, KafkaAdminClient, **settings.client_config(), **RECONNECT)


def ensure_topics(
    settings: KafkaSettings,
    topics: Iterable[str] | None = None,
    *,
    partitions: int | None = None,
) -> list[str]:
    """Create missing topics with the configured partitions and retention; returns the created."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = list(topics) if topics is not None else settings.all_topics()
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        new = [
            NewTopic(
                name=topic,
                num_partitions=partitions or settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs={"retention.ms": str(settings.retention_ms)},
            )
            for topic in missing
        ]
        try:
            admin.create_topics(new, validate_only=False)
        except TopicAlreadyExistsError:
            pass  # created concurrently by another replica
        log.info("created topics %s", missing)
        return missing
    finally:
        admin.close()


def delete_topics(settings: KafkaSettings, topics: Iterable[str]) -> None:
    admin = make_admin(settings)
    try:
        admin.delete_topics(list(topics))
    finally:
        admin.close()
