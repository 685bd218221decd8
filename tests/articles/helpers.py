"""Scored articles for the article-store tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.messages import ScoredArticle


def scored(
    article_id: str,
    *,
    title: str = "",
    topic: str = "Energy | Oil",
    sentiment: str = "neutral",
    sentiment_score: float = 0.0,
    minutes_ago: float = 5,
    tickers: list[str] | None = None,
    source: str = "wire",
    model_version: str = "v1",
    scored_delay_seconds: float = 1,
    duplicate_of: str | None = None,
    confidence: float = 0.8,
) -> ScoredArticle:
    published = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return ScoredArticle(
        id=article_id,
        url=f"https://news.example/{article_id}",
        source=source,
        title=title or f"Headline {article_id}",
        published_at=published,
        fetched_at=published,
        tickers=tickers or [],
        duplicate_of=duplicate_of,
        topic=topic,
        topic_score=0.7,
        sentiment=sentiment,
        sentiment_score=sentiment_score,
        confidence=confidence,
        model_version=model_version,
        scored_at=published + timedelta(seconds=scored_delay_seconds),
    )
