"""The review queue reads recent articles from the real news.scored topic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from models.feedback.queue import recent_scored
from pipeline.kafka_io import make_producer
from pipeline.messages import ScoredArticle, encode

pytestmark = pytest.mark.integration


def scored(i: int) -> ScoredArticle:
    now = datetime(2026, 11, 28, 12, i, tzinfo=UTC)
    return ScoredArticle(
        id=f"art-{i}",
        source="wire",
        title=f"Headline number {i}",
        published_at=now,
        fetched_at=now,
        topic="Markets",
        topic_score=0.5,
        sentiment="neutral",
        sentiment_score=0.0,
        confidence=0.5,
        model_version="v1",
        scored_at=now,
    )


def test_recent_scored_reads_the_latest_and_skips_bad_records(kafka_settings):
    producer = make_producer(kafka_settings)
    for i in range(12):
        producer.send(kafka_settings.topic_scored, key=f"art-{i}".encode(), value=encode(scored(i)))
    producer.send(kafka_settings.topic_scored, key=b"bad", value=b"{not json")
    producer.flush()
    producer.close()
    articles = recent_scored(kafka_settings, 100, timeout_ms=2000)
    assert sorted(a.article_id for a in articles) == sorted(f"art-{i}" for i in range(12))
    assert {a.text for a in articles} == {f"Headline number {i}" for i in range(12)}
    newest = recent_scored(kafka_settings, 3, timeout_ms=2000)
    assert [a.article_id for a in newest] == ["art-9", "art-10", "art-11"]
