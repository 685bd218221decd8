"""The article sink: ``news.scored`` -> the article store, one consumer group.

Delivery is at-least-once end to end and exactly-once in effect: a batch's
offsets are committed only after its rows are committed in the database, and
rows are upserted by article id, so a batch re-read after a crash or a
rebalance rewrites the same rows. Records that cannot be decoded go to
``news.dlq`` (stage ``articles``) before the commit; nothing is dropped
silently. Articles past retention are deleted every ``prune_interval_seconds``.

``stop()`` (SIGTERM, SIGINT) finishes the batch in hand, commits and returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.articles.store import ArticleStore
from pipeline.kafka_io import ensure_topics, make_consumer, make_producer, subscribe_when_known
from pipeline.messages import InvalidMessage, ScoredArticle, dead_letter, decode_scored, encode
from pipeline.metrics.definitions import ArticleSinkMetrics
from pipeline.settings import ArticleStoreSettings, KafkaSettings

log = logging.getLogger(__name__)

STAGE = "articles"


class SinkError(RuntimeError):
    """A batch could not be stored or dead-lettered; its offsets stay uncommitted."""


class ArticleSink:
    """One replica. ``run()`` blocks until ``stop()``."""

    def __init__(
        self,
        store: ArticleStore,
        *,
        kafka: KafkaSettings,
        settings: ArticleStoreSettings,
        metrics: ArticleSinkMetrics,
        on_batch: Callable[[list[ScoredArticle]], None] | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.kafka = kafka
        self.settings = settings
        self.metrics = metrics
        #: Called with every stored batch (drift statistics), and after every poll.
        self.on_batch = on_batch
        self.on_idle = on_idle
        self._stop = threading.Event()
        self._last_prune = 0.0
        self.batches = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        ensure_topics(self.kafka, [self.kafka.topic_scored, self.kafka.topic_dlq])
        consumer = make_consumer(
            self.kafka, self.settings.group_id, max_poll_records=self.settings.batch_size
        )
        try:
            subscribe_when_known(consumer, self.kafka.topic_scored, stop=self._stop.is_set)
        except TimeoutError as exc:
            consumer.close()
            raise SinkError(f"articles: {exc}") from exc
        producer = make_producer(self.kafka)
        log.info(
            "article sink consuming %s as group %s into %s",
            self.kafka.topic_scored,
            self.settings.group_id,
            self.store.engine.url.render_as_string(hide_password=True),
        )
        try:
            while not self._stop.is_set():
                polled = consumer.poll(
                    timeout_ms=self.settings.poll_timeout_ms,
                    max_records=self.settings.batch_size,
                )
                records = [record for batch in polled.values() for record in batch]
                if records:
                    self._handle(records, consumer, producer)
                elif self.on_idle is not None:
                    self.on_idle()
                self._maybe_prune()
        finally:
            producer.close(timeout=30)
            consumer.close()
            log.info("article sink stopped after %d batches", self.batches)

    def _handle(self, records: list[Any], consumer, producer) -> None:
        from kafka.errors import CommitFailedError, KafkaError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        m = self.metrics
        m.records_consumed.inc(len(records))
        articles: list[ScoredArticle] = []
        letters = []
        for record in records:
            try:
                articles.append(decode_scored(record.value, stage=STAGE))
            except InvalidMessage as exc:
                letters.append(
                    dead_letter(
                        record.value,
                        exc,
                        stage=STAGE,
                        source_topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        key=record.key,
                    )
                )
        started = time.perf_counter()
        try:
            written = self.store.upsert(articles)
        except Exception as exc:
            raise SinkError(
                f"articles: writing a batch of {len(articles)} to the store failed "
                f"(offsets not committed, the batch is re-read after restart): {exc}"
            ) from exc
        m.write_seconds.observe(time.perf_counter() - started)
        m.articles_written.inc(written)
        if letters:
            futures = [
                producer.send(
                    self.kafka.topic_dlq,
                    key=letter.key.encode() if letter.key is not None else None,
                    value=encode(letter),
                )
                for letter in letters
            ]
            producer.flush(timeout=30)
            try:
                for future in futures:
                    future.get(timeout=0)
            except KafkaError as exc:
                raise SinkError(
                    f"articles: Kafka did not acknowledge {len(letters)} dead letters "
                    f"(offsets not committed): {exc}"
                ) from exc
            for letter in letters:
                m.records_dead_lettered.labels(reason=letter.reason).inc()
                log.warning(
                    "dead-lettered %s[%s]@%s: %s: %s",
                    letter.source_topic,
                    letter.partition,
                    letter.offset,
                    letter.reason,
                    letter.error,
                )
        if self.on_batch is not None and articles:
            self.on_batch(articles)
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        try:
            consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except CommitFailedError as exc:
            # The new owner of these partitions re-reads them; the upsert makes that harmless.
            log.warning("commit after rebalance failed, %d records re-read: %s", len(records), exc)
        self.batches += 1

    def _maybe_prune(self) -> None:
        if not self.settings.retention_seconds:
            return
        now = time.monotonic()
        if now - self._last_prune < self.settings.prune_interval_seconds:
            return
        self._last_prune = now
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.retention_seconds)
        pruned = self.store.prune(cutoff)
        if pruned:
            self.metrics.articles_pruned.inc(pruned)
            log.info("pruned %d articles published before %s", pruned, cutoff.isoformat())
