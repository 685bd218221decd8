"""`finsentry articles sink` as a process: stores, exports drift, and Prometheus scrapes it."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from pipeline.articles.store import ArticleStore
from pipeline.demo.services import FINSENTRY
from pipeline.kafka_io import make_producer
from pipeline.messages import encode
from pipeline.stack.process import ManagedProcess
from tests.articles.helpers import scored

pytestmark = pytest.mark.integration


def _prometheus_value(url: str, promql: str) -> float | None:
    data = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()
    result = data["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_a_one_topic_stream_shows_as_drift_in_prometheus(stack, kafka_settings, unique, tmp_path):
    url = f"sqlite:///{tmp_path / 'articles.db'}"
    pipeline = f"test-{unique}"
    env = {
        **os.environ,
        "FINSENTRY_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "FINSENTRY_KAFKA_TOPIC_SCORED": kafka_settings.topic_scored,
        "FINSENTRY_KAFKA_TOPIC_DLQ": kafka_settings.topic_dlq,
        "FINSENTRY_ARTICLES_DATABASE_URL": url,
        "FINSENTRY_ARTICLES_GROUP_ID": f"articles-{unique}",
        "FINSENTRY_ARTICLES_PIPELINE": pipeline,
        "FINSENTRY_STACK_RUN_DIR": str(stack.settings.run_dir),
        "HF_HUB_OFFLINE": "1",
    }
    producer = make_producer(kafka_settings)
    for i in range(120):  # every article on one topic: far from the training mix
        article = scored(f"fed-{i}", topic="Fed | Central Banks", sentiment="neutral")
        producer.send(kafka_settings.topic_scored, key=article.id.encode(), value=encode(article))
    producer.flush()
    producer.close()

    process = ManagedProcess("articles-sink", tmp_path)
    process.start([*FINSENTRY, "articles", "sink"], env=env)
    try:
        store = ArticleStore(url)
        deadline = time.monotonic() + 120
        while store.count() < 120 and time.monotonic() < deadline:
            assert process.is_running(), process.log_tail()
            time.sleep(0.5)
        assert store.count() == 120
        store.close()
        prometheus = stack.settings.prometheus_url
        query = f'finsentry_drift_psi{{pipeline="{pipeline}",head="topic"}}'
        value = None
        deadline = time.monotonic() + 60
        while value is None and time.monotonic() < deadline:
            value = _prometheus_value(prometheus, query)
            time.sleep(1)
        assert value is not None and value > 0.25, (value, process.log_tail())
        articles = _prometheus_value(prometheus, f'finsentry_drift_window_articles{{pipeline="{pipeline}"}}')
        assert articles == 120
    finally:
        assert process.stop(timeout_seconds=60)
