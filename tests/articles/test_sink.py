"""The article sink against the real Kafka: store, re-delivery, DLQ, then the query CLI."""

from __future__ import annotations

import json
import threading
import time

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from pipeline.articles.sink import ArticleSink
from pipeline.articles.store import ArticleStore
from pipeline.cli import app
from pipeline.kafka_io import make_consumer, make_producer
from pipeline.messages import decode_dead_letter, encode
from pipeline.metrics.definitions import ArticleSinkMetrics
from pipeline.settings import ArticleStoreSettings
from tests.articles.helpers import scored

pytestmark = pytest.mark.integration


def _run_sink(store, kafka_settings, settings):
    registry = CollectorRegistry()
    sink = ArticleSink(store, kafka=kafka_settings, settings=settings, metrics=ArticleSinkMetrics(registry))
    thread = threading.Thread(target=sink.run, daemon=True)
    thread.start()
    return sink, thread, registry


def _dead_lettered(registry) -> float:
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "finsentry_articles_records_dead_lettered"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def _wait_for(predicate, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_sink_stores_scored_records_and_the_cli_queries_them(kafka_settings, group_id, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'articles.db'}"
    settings = ArticleStoreSettings(
        database_url=url, group_id=group_id, register_target=False, poll_timeout_ms=100
    )
    articles = [
        scored(
            "neg-1",
            title="Oil major slashes dividend",
            sentiment="negative",
            sentiment_score=-0.9,
            tickers=["XOM"],
        ),
        scored(
            "neg-2",
            title="Refinery fire halts output",
            sentiment="negative",
            sentiment_score=-0.6,
            minutes_ago=30,
        ),
        scored("pos-1", title="Crude rallies", sentiment="positive", sentiment_score=0.8, minutes_ago=3),
        scored("old-1", sentiment="negative", sentiment_score=-0.7, minutes_ago=180),
    ]
    producer = make_producer(kafka_settings)
    for article in articles + articles[:2]:  # the classifier delivers at least once
        producer.send(kafka_settings.topic_scored, key=article.id.encode(), value=encode(article))
    producer.send(kafka_settings.topic_scored, key=b"bad", value=b"{not json")
    producer.flush()

    store = ArticleStore(url)
    sink, thread, registry = _run_sink(store, kafka_settings, settings)
    try:
        # >= 7: a producer retry across a broker hiccup may deliver a record twice more.
        assert _wait_for(
            lambda: (
                store.count() == 4
                and _dead_lettered(registry) == 1
                and registry.get_sample_value("finsentry_articles_records_consumed_total") >= 7
            )
        ), (
            f"sink stored {store.count()} of 4 articles, dead-lettered {_dead_lettered(registry)} "
            f"of 1 (thread alive: {thread.is_alive()})"
        )
        assert (
            registry.get_sample_value(
                "finsentry_articles_records_dead_lettered_total", {"reason": "invalid_json"}
            )
            == 1
        )
    finally:
        sink.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()

    dlq = make_consumer(kafka_settings, None, kafka_settings.topic_dlq, consumer_timeout_ms=5000)
    letters = [decode_dead_letter(record.value) for record in dlq]
    dlq.close()
    assert [(letter.stage, letter.original) for letter in letters] == [("articles", "{not json")]

    # Offsets were committed: a restarted sink re-reads nothing, and a re-scored
    # article arriving later replaces its row.
    newer = articles[2].model_copy(
        update={
            "sentiment": "negative",
            "sentiment_score": -0.4,
            "scored_at": articles[2].scored_at.replace(year=2030),
        }
    )
    producer.send(kafka_settings.topic_scored, key=b"pos-1", value=encode(newer))
    producer.flush()
    producer.close()
    sink, thread, registry = _run_sink(store, kafka_settings, settings)
    try:
        assert _wait_for(lambda: store.get("pos-1").sentiment == "negative")
        assert registry.get_sample_value("finsentry_articles_records_consumed_total") >= 1
        assert store.get("pos-1").sentiment == "negative"
    finally:
        sink.stop()
        thread.join(timeout=30)
    store.close()

    monkeypatch.setenv("FINSENTRY_ARTICLES_DATABASE_URL", url)
    result = CliRunner().invoke(
        app,
        [
            "articles",
            "--topic",
            "Energy | Oil",
            "--since",
            "1h",
            "--sentiment",
            "negative",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["pos-1", "neg-1", "neg-2"]
    assert rows[1]["tickers"] == ["XOM"] and rows[1]["title"] == "Oil major slashes dividend"
    result = CliRunner().invoke(app, ["articles", "--ticker", "XOM", "--since", "1h"])
    assert result.exit_code == 0 and "Oil major slashes dividend" in result.stdout
    assert "neg-2" not in result.stdout
