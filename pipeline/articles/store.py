"""The article store: every scored article, queryable by time, topic, ticker, sentiment.

SQLAlchemy 2: SQLite by default (``~/.finsentry/articles.db``), any database URL
(PostgreSQL) when configured. Tables are created on first use.

``articles`` holds one row per article id (``news.scored`` without the body);
``article_tickers`` one row per (article, ticker), so a ticker query is an
indexed join. Writes are upserts keyed by id: the classifier delivers at least
once, and a re-delivered or re-scored article replaces its row (newest
``scored_at`` wins) instead of adding one. An explanation computed later is
kept with the row, tagged with the model version it explains.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    create_engine,
    delete,
    func,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pipeline.db import UtcDateTime, create_schema
from pipeline.messages import ScoredArticle

log = logging.getLogger(__name__)

SENTIMENTS = ("negative", "neutral", "positive")


class ArticleStoreError(RuntimeError):
    """The article store cannot do what was asked; the message names the value."""


class Base(DeclarativeBase):
    pass


class ArticleRow(Base):
    __tablename__ = "articles"
    __table_args__ = (
        Index("ix_articles_topic_published", "topic", "published_at"),
        Index("ix_articles_sentiment_published", "sentiment", "published_at"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    url: Mapped[str] = mapped_column(String(4096), default="")
    source: Mapped[str] = mapped_column(String(256))
    title: Mapped[str] = mapped_column(Text, default="")
    published_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    fetched_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lang: Mapped[str] = mapped_column(String(16), default="und")
    duplicate_of: Mapped[str | None] = mapped_column(String(128), nullable=True)
    topic: Mapped[str] = mapped_column(String(64))
    topic_score: Mapped[float] = mapped_column(Float)
    sentiment: Mapped[str] = mapped_column(String(16))
    sentiment_score: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(128))
    scored_at: Mapped[datetime] = mapped_column(UtcDateTime)
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: JSON of :class:`models.explain.Explanation` (with its model version), or None.
    explanation_json: Mapped[str | None] = mapped_column(Text, nullable=True)


class ArticleTickerRow(Base):
    __tablename__ = "article_tickers"

    article_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
    )
    ticker: Mapped[str] = mapped_column(String(16), primary_key=True, index=True)


@dataclass(frozen=True)
class StoredArticle:
    """One article as read back from the store."""

    id: str
    url: str
    source: str
    title: str
    published_at: datetime
    topic: str
    topic_score: float
    sentiment: str
    sentiment_score: float
    confidence: float
    model_version: str
    scored_at: datetime
    tickers: tuple[str, ...]
    duplicate_of: str | None = None
    explanation: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "source": self.source,
            "title": self.title,
            "published_at": self.published_at.isoformat().replace("+00:00", "Z"),
            "topic": self.topic,
            "topic_score": round(self.topic_score, 4),
            "sentiment": self.sentiment,
            "sentiment_score": round(self.sentiment_score, 4),
            "confidence": round(self.confidence, 4),
            "model_version": self.model_version,
            "tickers": list(self.tickers),
            "duplicate_of": self.duplicate_of,
            "explanation": self.explanation,
        }


def _ticker(value: str) -> str:
    return value.strip().upper().lstrip("$")


def default_database_url() -> str:
    return f"sqlite:///{Path.home() / '.finsentry' / 'articles.db'}"


def _row_values(article: ScoredArticle, now: datetime) -> dict[str, Any]:
    return {
        "id": article.id,
        "url": article.url,
        "source": article.source,
        "title": article.title,
        "published_at": article.published_at,
        "fetched_at": article.fetched_at,
        "lang": article.lang,
        "duplicate_of": article.duplicate_of,
        "topic": article.topic,
        "topic_score": article.topic_score,
        "sentiment": article.sentiment,
        "sentiment_score": article.sentiment_score,
        "confidence": article.confidence,
        "model_version": article.model_version,
        "scored_at": article.scored_at,
        "stored_at": now,
    }


class ArticleStore:
    """Read and write scored articles. Thread-safe (one SQLAlchemy engine, short sessions)."""

    def __init__(self, url: str | None = None) -> None:
        url = url or default_database_url()
        try:
            parsed = make_url(url)
        except Exception as exc:  # noqa: BLE001 - sqlalchemy raises several types
            raise ArticleStoreError(f"article store: invalid database URL: {exc}") from None
        self.backend = parsed.get_backend_name()
        if self.backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True)
        if self.backend == "sqlite":
            from sqlalchemy import event

            @event.listens_for(self.engine, "connect")
            def _sqlite_pragmas(dbapi_connection, _record):
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA foreign_keys=ON")
                # A reader (the notifier, the CLI) must not block the sink, nor fail on it.
                cursor.execute("PRAGMA busy_timeout=10000")
                cursor.close()

        create_schema(Base.metadata, self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- writing -----------------------------------------------------------------

    def upsert(self, articles: Iterable[ScoredArticle]) -> int:
        """Insert or replace articles by id (newest ``scored_at`` wins); returns rows written.

        Idempotent: writing the same records again changes nothing. An explanation
        stored for an article survives a re-delivery of the same model version's
        score and is dropped when a newer model re-scores it.
        """
        latest: dict[str, ScoredArticle] = {}
        for article in articles:
            seen = latest.get(article.id)
            if seen is None or article.scored_at >= seen.scored_at:
                latest[article.id] = article
        if not latest:
            return 0
        now = datetime.now(UTC)
        with Session(self.engine) as session, session.begin():
            existing = {
                row.id: row
                for row in session.scalars(
                    select(ArticleRow).where(ArticleRow.id.in_(list(latest)))
                )
            }
            written: list[str] = []
            for article_id, article in latest.items():
                row = existing.get(article_id)
                values = _row_values(article, now)
                if row is None:
                    session.add(ArticleRow(**values))
                elif article.scored_at >= row.scored_at:
                    if row.model_version != article.model_version:
                        values["explanation_json"] = None
                    for key, value in values.items():
                        setattr(row, key, value)
                else:
                    continue  # an older score arriving late never replaces a newer one
                written.append(article_id)
            session.flush()
            if written:
                session.execute(
                    delete(ArticleTickerRow).where(ArticleTickerRow.article_id.in_(written))
                )
                session.add_all(
                    ArticleTickerRow(article_id=a, ticker=t)
                    for a in written
                    for t in sorted({_ticker(t) for t in latest[a].tickers})
                )
        return len(written)

    def set_explanation(self, article_id: str, explanation: dict[str, Any]) -> bool:
        """Keep an explanation with its article; False when the article is not stored."""
        with Session(self.engine) as session, session.begin():
            row = session.get(ArticleRow, article_id)
            if row is None:
                return False
            row.explanation_json = json.dumps(explanation, sort_keys=True)
            return True

    def prune(self, older_than: datetime) -> int:
        """Delete articles published before ``older_than``; returns how many."""
        with Session(self.engine) as session, session.begin():
            ids = list(
                session.scalars(select(ArticleRow.id).where(ArticleRow.published_at < older_than))
            )
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                session.execute(
                    delete(ArticleTickerRow).where(ArticleTickerRow.article_id.in_(chunk))
                )
                session.execute(delete(ArticleRow).where(ArticleRow.id.in_(chunk)))
        return len(ids)

    # -- reading -----------------------------------------------------------------

    def get(self, article_id: str) -> StoredArticle | None:
        with Session(self.engine) as session:
            row = session.get(ArticleRow, article_id)
            return None if row is None else self._load(session, [row])[0]

    def query(
        self,
        *,
        topic: str | None = None,
        ticker: str | None = None,
        sentiment: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
        order: str = "newest",
    ) -> list[StoredArticle]:
        """Articles matching every given filter on ``published_at`` in [since, until).

        ``order``: ``newest`` (published time, descending) or ``most_negative``
        (sentiment score ascending, then newest).
        """
        if sentiment is not None and sentiment not in SENTIMENTS:
            raise ArticleStoreError(
                f"article store: unknown sentiment {sentiment!r} (one of {', '.join(SENTIMENTS)})"
            )
        stmt = select(ArticleRow)
        if topic is not None:
            stmt = stmt.where(ArticleRow.topic == topic)
        if ticker is not None:
            stmt = stmt.join(ArticleTickerRow, ArticleTickerRow.article_id == ArticleRow.id).where(
                ArticleTickerRow.ticker == _ticker(ticker)
            )
        if sentiment is not None:
            stmt = stmt.where(ArticleRow.sentiment == sentiment)
        if since is not None:
            stmt = stmt.where(ArticleRow.published_at >= since)
        if until is not None:
            stmt = stmt.where(ArticleRow.published_at < until)
        if order == "newest":
            stmt = stmt.order_by(ArticleRow.published_at.desc(), ArticleRow.id)
        elif order == "most_negative":
            stmt = stmt.order_by(
                ArticleRow.sentiment_score.asc(), ArticleRow.published_at.desc(), ArticleRow.id
            )
        else:
            raise ArticleStoreError(f"article store: unknown order {order!r}")
        if limit is not None:
            stmt = stmt.limit(limit)
        with Session(self.engine) as session:
            return self._load(session, list(session.scalars(stmt)))

    def count(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(ArticleRow)) or 0

    @staticmethod
    def _load(session: Session, rows: Sequence[ArticleRow]) -> list[StoredArticle]:
        tickers: dict[str, list[str]] = {row.id: [] for row in rows}
        if rows:
            for article_id, ticker in session.execute(
                select(ArticleTickerRow.article_id, ArticleTickerRow.ticker)
                .where(ArticleTickerRow.article_id.in_(list(tickers)))
                .order_by(ArticleTickerRow.ticker)
            ):
                tickers[article_id].append(ticker)
        return [
            StoredArticle(
                id=row.id,
                url=row.url,
                source=row.source,
                title=row.title,
                published_at=row.published_at,
                topic=row.topic,
                topic_score=row.topic_score,
                sentiment=row.sentiment,
                sentiment_score=row.sentiment_score,
                confidence=row.confidence,
                model_version=row.model_version,
                scored_at=row.scored_at,
                tickers=tuple(tickers[row.id]),
                duplicate_of=row.duplicate_of,
                explanation=json.loads(row.explanation_json) if row.explanation_json else None,
            )
            for row in rows
        ]
