"""Fixtures for the aggregation job: fresh topics and a run directory per test module,
because each module runs one Flink job (starting one costs tens of seconds here)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.kafka_io import ensure_topics
from pipeline.settings import AggregateSettings, KafkaSettings


@dataclass(frozen=True)
class AggregateEnv:
    kafka: KafkaSettings
    settings: AggregateSettings
    run_dir: Path


def make_env(stack, run_dir: Path, **overrides) -> AggregateEnv:
    unique = uuid.uuid4().hex[:10]
    kafka = KafkaSettings(
        bootstrap_servers=stack.settings.kafka_bootstrap,
        topic_raw=f"test.{unique}.news.raw",
        topic_scored=f"test.{unique}.news.scored",
        topic_dlq=f"test.{unique}.news.dlq",
        topic_windows=f"test.{unique}.sentiment.windows",
        partitions=3,
    )
    defaults = dict(
        job_name=f"test-aggregate-{unique}",
        tumbling_window_ms=60_000,
        hopping_window_ms=120_000,
        hopping_slide_ms=60_000,
        out_of_orderness_ms=5_000,
        # The tests move every partition's watermark themselves (watermark_movers);
        # idleness would let the other partitions' watermark overtake a slow one.
        source_idle_timeout_ms=0,
        checkpoint_interval_ms=1_000,
        checkpoint_dir=str(run_dir / "checkpoints"),
        savepoint_dir=str(run_dir / "savepoints"),
        group_id=f"test-aggregate-{unique}",
        startup_mode="earliest-offset",
        transactional_id_prefix=f"test-aggregate-{unique}",
        topic_late=f"test.{unique}.sentiment.late",
    )
    settings = AggregateSettings(**{**defaults, **overrides})
    ensure_topics(kafka, [*kafka.all_topics(), settings.topic_late])
    return AggregateEnv(kafka, settings, run_dir)


@pytest.fixture(scope="module")
def aggregate_env(stack, tmp_path_factory) -> AggregateEnv:
    return make_env(stack, tmp_path_factory.mktemp("aggregate"))
