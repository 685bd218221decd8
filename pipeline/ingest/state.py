"""Crawler state that survives restarts: emitted ids, feed validators, story signatures.

SQLite by default (``CrawlerSettings.state_url``); any SQLAlchemy URL works
(PostgreSQL for several crawler replicas). An id is recorded only after Kafka
acknowledged the record, so a crash re-emits at most what was in flight
(at-least-once; downstream dedupes by id) and a restart never re-emits what
was delivered.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    Column,
    Float,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    select,
)
from sqlalchemy.engine import make_url

from pipeline.db import create_schema

_metadata = MetaData()

seen_table = Table(
    "crawler_seen",
    _metadata,
    Column("id", String(128), primary_key=True),
    Column("source", String(256), nullable=False),
    Column("url", String(4096), nullable=False, default=""),
    Column("emitted_at", Float, nullable=False, index=True),
    Column("duplicate_of", String(128), nullable=True),
    Column("signature", LargeBinary, nullable=True),
)

feeds_table = Table(
    "crawler_feeds",
    _metadata,
    Column("url", String(4096), primary_key=True),
    Column("etag", String(1024), nullable=True),
    Column("last_modified", String(256), nullable=True),
    Column("updated_at", Float, nullable=False),
)


@dataclass(frozen=True)
class EmittedRecord:
    id: str
    source: str
    url: str
    duplicate_of: str | None
    signature: bytes | None


class CrawlerState:
    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(url, future=True)
        create_schema(_metadata, self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def seen(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        found: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                found.update(
                    conn.execute(
                        select(seen_table.c.id).where(seen_table.c.id.in_(chunk))
                    ).scalars()
                )
        return found

    def mark_emitted(self, records: Iterable[EmittedRecord]) -> None:
        now = time.time()
        rows = [
            {
                "id": r.id,
                "source": r.source,
                "url": r.url,
                "emitted_at": now,
                "duplicate_of": r.duplicate_of,
                "signature": r.signature,
            }
            for r in records
        ]
        if not rows:
            return
        with self.engine.begin() as conn:
            existing = set(
                conn.execute(
                    select(seen_table.c.id).where(seen_table.c.id.in_([r["id"] for r in rows]))
                ).scalars()
            )
            fresh = [r for r in rows if r["id"] not in existing]
            if fresh:
                conn.execute(seen_table.insert(), fresh)

    def signatures_since(self, since_epoch_seconds: float) -> list[tuple[str, bytes, float]]:
        """Signatures of original (not duplicate) stories emitted after ``since``, oldest first."""
        query = (
            select(seen_table.c.id, seen_table.c.signature, seen_table.c.emitted_at)
            .where(seen_table.c.emitted_at >= since_epoch_seconds)
            .where(seen_table.c.signature.is_not(None))
            .where(seen_table.c.duplicate_of.is_(None))
            .order_by(seen_table.c.emitted_at)
        )
        with self.engine.connect() as conn:
            return [(row.id, row.signature, row.emitted_at) for row in conn.execute(query)]

    def validators(self, feed_url: str) -> tuple[str | None, str | None]:
        with self.engine.connect() as conn:
            row = conn.execute(select(feeds_table).where(feeds_table.c.url == feed_url)).first()
        return (row.etag, row.last_modified) if row else (None, None)

    def save_validators(self, feed_url: str, etag: str | None, last_modified: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(feeds_table.delete().where(feeds_table.c.url == feed_url))
            if etag or last_modified:
                conn.execute(
                    feeds_table.insert(),
                    {
                        "url": feed_url,
                        "etag": etag,
                        "last_modified": last_modified,
                        "updated_at": time.time(),
                    },
                )
