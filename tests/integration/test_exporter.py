"""The exporter against the real broker: read_committed, DLQ for bad records, /metrics."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from pipeline.kafka_io import make_consumer, make_producer
from pipeline.messages import SentimentWindow, decode_dead_letter, encode
from pipeline.metrics.exporter import run_exporter
from pipeline.notify.testing import wait_for
from pipeline.settings import ExporterSettings

pytestmark = pytest.mark.integration


def test_windows_become_gauges_and_bad_records_go_to_the_dlq(kafka_settings):
    start = datetime(2026, 1, 1, 12, tzinfo=UTC)
    window = SentimentWindow(
        window_start=start,
        window_end=start + timedelta(minutes=1),
        dimension="topic",
        key="Energy",
        articles=20,
        negative=5,
        neutral=10,
        positive=5,
        negative_ratio=0.25,
        mean_sentiment=0.0,
    )
    producer = make_producer(kafka_settings)
    producer.send(kafka_settings.topic_windows, key=b"bad", value=b'{"schema": 1, "key": "x"}')
    producer.send(kafka_settings.topic_windows, key=b"Energy", value=encode(window))
    producer.flush(30)
    producer.close()

    stop, ready = threading.Event(), threading.Event()
    settings = ExporterSettings(metrics_port=0, register_target=False)
    registry = CollectorRegistry()
    thread = threading.Thread(
        target=run_exporter,
        args=(kafka_settings, settings),
        kwargs={"registry": registry, "stop": stop, "ready": ready},
        daemon=True,
    )
    thread.start()
    try:
        assert ready.wait(60)

        def value(name, **labels):
            return registry.get_sample_value(name, labels)

        labels = {"dimension": "topic", "key": "Energy", "window": "1m"}
        assert wait_for(lambda: value("finsentry_window_negative_ratio", **labels) == 0.25, 30)
        assert value("finsentry_window_articles", **labels) == 20
        assert wait_for(
            lambda: (
                value("finsentry_exporter_windows_dead_lettered_total", reason="missing_field") == 1
            ),
            30,
        )
    finally:
        stop.set()
        thread.join(30)

    consumer = make_consumer(
        kafka_settings, None, kafka_settings.topic_dlq, consumer_timeout_ms=10_000
    )
    letters = [decode_dead_letter(r.value) for r in consumer]
    consumer.close()
    assert len(letters) == 1
    assert letters[0].stage == "export" and letters[0].reason == "missing_field"
    assert letters[0].original_bytes() == b'{"schema": 1, "key": "x"}'
    assert letters[0].source_topic == kafka_settings.topic_windows
