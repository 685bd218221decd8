"""Spike notifications list the articles behind the spike, with the words behind each verdict.

A real notifier over loopback, a real article store (SQLite) filled with known
articles, the shipped model explaining them; the webhook receiver and the SMTP
sink see exactly the injected negative stories of the alert's topic or ticker
and window, de-duplicated, most negative first.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from pipeline.articles.store import ArticleStore
from pipeline.notify.context import AlertContext, window_seconds
from pipeline.notify.server import NotifierServer
from pipeline.notify.testing import SmtpSink, WebhookReceiver
from pipeline.settings import NotifierSettings
from tests.articles.helpers import scored

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def explainer():
    from models.explain import Explainer
    from models.inference import EngineOptions, engine_from_registry
    from models.registry import Registry
    from pipeline.settings import ModelSettings

    settings = ModelSettings()
    registry = Registry(settings.registry_dir, settings.resolved_base_model_dir())
    engine = engine_from_registry(registry, options=EngineOptions(device="cpu", precision="fp32"))
    return Explainer(engine, top_k=3)


@pytest.fixture
def store_url(tmp_path, explainer):
    url = f"sqlite:///{tmp_path / 'articles.db'}"
    store = ArticleStore(url)
    version = explainer.engine.version  # explanations are kept for the model that scored
    store.upsert(
        a.model_copy(update={"model_version": version})
        for a in [
            # The spike: three negative stories on Energy within the 15m window ...
            scored(
                "a-1",
                title="Oil giant slashes dividend as profits collapse",
                source="wire",
                sentiment="negative",
                sentiment_score=-0.95,
                minutes_ago=4,
                tickers=["XOM"],
            ),
            scored(
                "a-2",
                title="Refinery explosion kills workers, output halted",
                source="daily",
                sentiment="negative",
                sentiment_score=-0.90,
                minutes_ago=6,
            ),
            scored(
                "a-3",
                title="Energy stocks plunge on fraud probe",
                source="wire",
                sentiment="negative",
                sentiment_score=-0.70,
                minutes_ago=9,
                tickers=["XOM"],
            ),
            # ... a syndicated copy and a same-title copy (one story each, not three) ...
            scored(
                "a-1-copy",
                title="Oil giant slashes dividend as profits collapse (Reuters)",
                source="portal",
                sentiment="negative",
                sentiment_score=-0.96,
                minutes_ago=3,
                duplicate_of="a-1",
            ),
            scored(
                "a-2-again",
                title="Refinery explosion kills workers; output halted",
                source="other",
                sentiment="negative",
                sentiment_score=-0.91,
                minutes_ago=5,
            ),
            # ... and what must not be listed: not negative, other topic, before the window.
            scored(
                "n-1",
                title="Crude steady ahead of OPEC meeting",
                sentiment="neutral",
                sentiment_score=-0.1,
                minutes_ago=2,
            ),
            scored(
                "x-1",
                topic="Macro",
                title="Recession fears deepen",
                sentiment="negative",
                sentiment_score=-0.99,
                minutes_ago=2,
            ),
            scored(
                "old-1",
                title="Pipeline leak forces shutdown",
                sentiment="negative",
                sentiment_score=-0.99,
                minutes_ago=60,
            ),
        ]
    )
    store.close()
    return url


def spike(dimension="topic", key="Energy | Oil", window="15m", fingerprint="fp-spike"):
    return {
        "version": "4",
        "receiver": "finsentry-critical",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "NegativeSentimentSpike",
                    "severity": "critical",
                    "dimension": dimension,
                    "key": key,
                    dimension: key,
                    "window": window,
                },
                "annotations": {"summary": f"Negative sentiment spike on {dimension} {key}"},
                "startsAt": (NOW - timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
                "fingerprint": fingerprint,
            }
        ],
        "groupLabels": {},
        "commonLabels": {},
        "externalURL": "http://127.0.0.1:9093",
        "groupKey": "{}:{}",
    }


def start(store_url, explainer, **settings) -> NotifierServer:
    config = NotifierSettings(
        port=0,
        console=False,
        register_target=False,
        timeout_seconds=5,
        articles_database_url=store_url,
        context_articles=5,
        **settings,
    )
    context = AlertContext(ArticleStore(store_url), limit=5, explainer=explainer)
    return NotifierServer(config, context=context).start()


def post(server, body):
    return httpx.post(server.url, content=json.dumps(body), timeout=60)


def test_spike_notification_lists_the_injected_stories_with_explanations(store_url, explainer):
    webhook, smtp = WebhookReceiver(), SmtpSink()
    server = start(
        store_url,
        explainer,
        webhook_url=webhook.url,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_starttls=False,
        email_to=["desk@example.org"],
    )
    try:
        assert post(server, spike()).status_code == 200
        sent = webhook.requests[0].json()
        articles = sent["alerts"][0]["articles"]
        stories = {a["title"].lower()[:20] for a in articles}
        assert len(articles) == 3 and len(stories) == 3
        assert {a["id"] for a in articles} & {"n-1", "x-1", "old-1"} == set()
        for article in articles:
            assert article["phrases"], f"no explanation for {article['title']!r}"
            assert article["url"].startswith("https://news.example/")
            assert article["sentiment_score"] < -0.5
        # Most negative first, one copy per story: the copies are the more negative ones.
        assert [a["id"] for a in articles] == ["a-1-copy", "a-2-again", "a-3"]
        text = smtp.messages[0].get_content()
        assert "top negative articles (3):" in text
        for article in articles:
            assert article["title"] in text and f"why: {'; '.join(article['phrases'])}" in text
        assert "Recession fears" not in text and "Pipeline leak" not in text
        assert "Crude steady" not in text
        assert "top negative articles (3):" in sent["text"]

        # The explanations were kept in the store for next time.
        store = ArticleStore(store_url)
        assert store.get("a-3").explanation["sentiment"]["label"] == "negative"
        store.close()

        # A ticker spike lists that ticker's stories only.
        assert post(server, spike("ticker", "XOM", fingerprint="fp-ticker")).status_code == 200
        ticker = webhook.requests[1].json()["alerts"][0]["articles"]
        assert [a["id"] for a in ticker] == ["a-1", "a-3"]
    finally:
        server.close()
        webhook.close()
        smtp.close()


def test_without_an_article_store_notifications_stay_as_they_were(store_url):
    webhook = WebhookReceiver()
    server = NotifierServer(
        NotifierSettings(port=0, console=False, register_target=False, webhook_url=webhook.url)
    ).start()
    try:
        assert server.context is None
        assert post(server, spike()).status_code == 200
        sent = webhook.requests[0].json()
        assert "articles" not in sent["alerts"][0]
        assert "top negative articles" not in sent["text"]
    finally:
        server.close()
        webhook.close()


def test_the_window_end_annotation_names_the_window_in_event_time(store_url, explainer):
    """A replay's event time runs ahead of the wall clock: startsAt says nothing about it."""
    context = AlertContext(ArticleStore(store_url), limit=5, explainer=explainer)
    labels = spike()["alerts"][0]["labels"]
    now = datetime.now(UTC)  # the store's articles are dated from the fixture's clock, not NOW
    hours_ago = (now - timedelta(hours=3)).isoformat()
    try:
        found = context.articles_for(labels, hours_ago, window_end=str(now.timestamp()))
        assert [a.id for a in found] == ["a-1-copy", "a-2-again", "a-3"]
        # The 15m window that ended 30 minutes ago holds none of them (old-1 is older still).
        earlier = str((now - timedelta(minutes=30)).timestamp())
        assert context.articles_for(labels, now.isoformat(), window_end=earlier) == []
        # Without the annotation the wall clock decides: three hours ago, nothing.
        assert context.articles_for(labels, hours_ago, ends_at=hours_ago) == []
    finally:
        context.close()


def test_window_labels():
    assert window_seconds("15m") == 900 and window_seconds("1m") == 60
    assert window_seconds("1h") == 3600
    with pytest.raises(ValueError, match="window label"):
        window_seconds("fifteen")


@pytest.mark.integration
def test_articles_from_kafka_reach_the_notification(kafka_settings, group_id, tmp_path, explainer):
    """news.scored on the real broker -> article sink -> store -> the spike notification."""
    import threading
    import time

    from prometheus_client import CollectorRegistry

    from pipeline.articles.sink import ArticleSink
    from pipeline.kafka_io import make_producer
    from pipeline.messages import encode
    from pipeline.metrics.definitions import ArticleSinkMetrics
    from pipeline.settings import ArticleStoreSettings

    url = f"sqlite:///{tmp_path / 'articles.db'}"
    injected = [
        scored(
            "k-1",
            title="Bank collapses after massive fraud uncovered",
            topic="Macro",
            sentiment="negative",
            sentiment_score=-0.97,
            minutes_ago=3,
        ),
        scored(
            "k-2",
            title="Markets crash as recession fears mount",
            topic="Macro",
            sentiment="negative",
            sentiment_score=-0.8,
            minutes_ago=3.5,
        ),
    ]
    calm = scored(
        "k-3",
        title="Central bank keeps rates unchanged",
        topic="Macro",
        sentiment="neutral",
        sentiment_score=0.0,
        minutes_ago=2,
    )
    producer = make_producer(kafka_settings)
    for article in [*injected, calm]:
        producer.send(kafka_settings.topic_scored, key=article.id.encode(), value=encode(article))
    producer.flush()
    producer.close()

    store = ArticleStore(url)
    sink = ArticleSink(
        store,
        kafka=kafka_settings,
        settings=ArticleStoreSettings(
            database_url=url, group_id=group_id, register_target=False, poll_timeout_ms=100
        ),
        metrics=ArticleSinkMetrics(CollectorRegistry()),
    )
    thread = threading.Thread(target=sink.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 90
    while store.count() < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    sink.stop()
    thread.join(timeout=30)
    assert store.count() == 3
    store.close()

    webhook = WebhookReceiver()
    server = start(url, explainer, webhook_url=webhook.url)
    try:
        assert post(server, spike("topic", "Macro", window="1m")).status_code == 200
        articles = webhook.requests[0].json()["alerts"][0]["articles"]
        assert [a["id"] for a in articles] == ["k-1", "k-2"]
        assert all(a["phrases"] for a in articles)
    finally:
        server.close()
        webhook.close()
