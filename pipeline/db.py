"""SQL helpers shared by finsentry's stores (labels, articles, crawler state)."""

from __future__ import annotations

import time
from datetime import UTC

from sqlalchemy import DateTime, MetaData
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone).

    Naive datetimes are refused: every time in finsentry is UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; finsentry stores UTC only")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def create_schema(metadata: MetaData, engine: Engine, attempts: int = 5) -> None:
    """``metadata.create_all`` that tolerates another process creating the same tables.

    ``create_all`` checks for each table, then creates it. Two processes that open one
    database at the same moment (the demo starts the article sink and the notifier on
    one SQLite file) can both find a table missing, and the slower one then fails with
    "table ... already exists". A retry finds the other's tables and creates the rest.
    """
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError) as exc:
            # PostgreSQL reports the same race as a duplicate key in pg_type.
            racing = "already exists" in str(exc) or "duplicate key" in str(exc)
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
