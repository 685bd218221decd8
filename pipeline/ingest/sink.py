"""Where ingest puts articles: Kafka ``news.raw`` (keyed by article id), or a list in tests.

A sink sends without waiting and reports, after :meth:`flush`, which records
the broker acknowledged, so callers record "emitted" only for those.
"""

from __future__ import annotations

import logging
from typing import Protocol

from pipeline.messages import RawArticle, encode
from pipeline.settings import KafkaSettings

log = logging.getLogger(__name__)


class ArticleSink(Protocol):
    def send(self, article: RawArticle) -> None: ...

    def flush(self) -> list[tuple[RawArticle, Exception | None]]:
        """Wait for everything sent since the last flush; (article, error or None) in send order."""
        ...

    def close(self) -> None: ...


class KafkaSink:
    """Produces to ``settings.topic_raw`` with ``pipeline.kafka_io.make_producer``."""

    #: Longer than the producer's delivery timeout (kafka-python: 120 s), so that a flush
    #: during a broker restart waits for every record to be acknowledged or to expire in
    #: the producer, instead of giving up on records the producer is still retrying.
    FLUSH_TIMEOUT_SECONDS = 150.0

    def __init__(
        self, settings: KafkaSettings, *, flush_timeout_seconds: float = FLUSH_TIMEOUT_SECONDS
    ) -> None:
        from pipeline.kafka_io import make_producer

        self.topic = settings.topic_raw
        self._producer = make_producer(settings)
        self._timeout = flush_timeout_seconds
        self._pending: list[tuple[RawArticle, object]] = []
        # fetch the topic's metadata now, so the first send does not stall a paced replay
        self._producer.partitions_for(self.topic)

    def send(self, article: RawArticle) -> None:
        future = self._producer.send(
            self.topic, key=article.id.encode("utf-8"), value=encode(article)
        )
        self._pending.append((article, future))

    def flush(self) -> list[tuple[RawArticle, Exception | None]]:
        pending, self._pending = self._pending, []
        if not pending:
            return []
        try:
            self._producer.flush(timeout=self._timeout)
        except Exception as exc:  # kafka-python raises KafkaTimeoutError here
            log.warning("flush to %s did not complete: %s", self.topic, exc)
        results = []
        for article, future in pending:
            if future.succeeded():
                results.append((article, None))
            else:
                error = (
                    future.exception if future.is_done else TimeoutError("not acknowledged in time")
                )
                results.append((article, error or RuntimeError("send failed")))
        return results

    def close(self) -> None:
        self._producer.close(timeout=self._timeout)


class ListSink:
    """Keeps articles in memory (unit tests, dry runs)."""

    def __init__(self) -> None:
        self.articles: list[RawArticle] = []
        self._pending: list[RawArticle] = []

    def send(self, article: RawArticle) -> None:
        self._pending.append(article)

    def flush(self) -> list[tuple[RawArticle, Exception | None]]:
        pending, self._pending = self._pending, []
        self.articles.extend(pending)
        return [(article, None) for article in pending]

    def close(self) -> None:
        pass
