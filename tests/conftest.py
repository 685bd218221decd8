"""Test harness: the real local stack for the session, fresh topics per test.

The stack (Kafka, Prometheus, Alertmanager) is started by the project's own
code, or reused when already running. If it cannot start, every test that
needs it errors loudly: nothing here skips.
"""

from __future__ import annotations

import uuid

import pytest

from pipeline.settings import KafkaSettings, StackSettings


@pytest.fixture(scope="session")
def stack():
    """The running LocalStack, started once per session.

    A stack that was already running (``make up``) is reused and left running;
    one that this session started is stopped at the end, leaving no process behind.
    """
    from pipeline.stack import LocalStack

    local = LocalStack(StackSettings())
    was_running = all(server.process.is_running() for server in local.servers)
    local.up()
    yield local
    if not was_running:
        local.down()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def kafka_settings(stack, unique) -> KafkaSettings:
    """Settings whose four topics are fresh for this test (created, 3 partitions)."""
    from pipeline.kafka_io import ensure_topics

    settings = KafkaSettings(
        bootstrap_servers=stack.settings.kafka_bootstrap,
        topic_raw=f"test.{unique}.news.raw",
        topic_scored=f"test.{unique}.news.scored",
        topic_dlq=f"test.{unique}.news.dlq",
        topic_windows=f"test.{unique}.sentiment.windows",
        partitions=3,
    )
    ensure_topics(settings)
    return settings


@pytest.fixture
def group_id(unique) -> str:
    return f"test-group-{unique}"
