"""The classifier service loop: consume ``news.raw``, score, produce, then commit.

Delivery is at-least-once: a batch's offsets are committed only after every
record produced for it (``news.scored`` and ``news.dlq``) was acknowledged by
Kafka (acks=all). A crash between produce and commit re-scores that batch
after the restart; the aggregation deduplicates by article id. Replicas share
the consumer group and need no coordination of their own.

``stop()`` (SIGTERM, SIGINT) ends the batch being collected early, scores and
produces it, commits, leaves the group and returns.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pipeline.classify.batching import next_batch
from pipeline.classify.engine import Classifier
from pipeline.classify.process import score_batch
from pipeline.classify.reload import ModelWatcher
from pipeline.kafka_io import ensure_topics, make_consumer, make_producer, subscribe_when_known
from pipeline.messages import encode
from pipeline.metrics.definitions import ClassifierMetrics
from pipeline.settings import ClassifierSettings, KafkaSettings

log = logging.getLogger(__name__)


class ProduceError(RuntimeError):
    """Kafka did not acknowledge a batch's output; its offsets stay uncommitted."""


class ClassifierService:
    """One replica. ``run()`` blocks until ``stop()``; call from the main thread or a worker."""

    def __init__(
        self,
        classifier: Classifier,
        *,
        kafka: KafkaSettings,
        settings: ClassifierSettings,
        metrics: ClassifierMetrics,
        watcher: ModelWatcher | None = None,
    ) -> None:
        self.classifier = classifier
        self.kafka = kafka
        self.settings = settings
        self.metrics = metrics
        self.watcher = watcher
        self._stop = threading.Event()
        self.batches = 0
        self._lag_checked_at = float("-inf")
        metrics.model_info.info({"version": classifier.version})

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        from kafka.errors import KafkaTimeoutError

        ensure_topics(
            self.kafka, [self.kafka.topic_raw, self.kafka.topic_scored, self.kafka.topic_dlq]
        )
        session_ms = self.settings.session_timeout_ms
        consumer = make_consumer(
            self.kafka,
            self.settings.group_id,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(500, min(3000, session_ms // 3)),
            max_poll_records=self.settings.batch_size,
        )
        try:
            subscribe_when_known(consumer, self.kafka.topic_raw, stop=self._stop.is_set)
        except TimeoutError:
            consumer.close()
            raise
        producer = make_producer(self.kafka)
        log.info(
            "classifier consuming %s as group %s, model %s, batches of <= %d records / %d ms",
            self.kafka.topic_raw,
            self.settings.group_id,
            self.classifier.version,
            self.settings.batch_size,
            self.settings.max_wait_ms,
        )
        try:
            while not self._stop.is_set():
                self._maybe_switch_model()
                records = next_batch(
                    consumer,
                    batch_size=self.settings.batch_size,
                    max_wait_ms=self.settings.max_wait_ms,
                    stop=self._stop.is_set,
                )
                if records:
                    self._handle(records, consumer, producer)
                self._update_lag(consumer)
        finally:
            try:
                producer.close(timeout=self.settings.produce_timeout_seconds)
            except KafkaTimeoutError as exc:
                # kafka-python's close() flushes first and raises when that times out. What
                # it could not deliver was never committed: a restart reads it again.
                log.warning("producer closed with output unacknowledged: %s", exc)
            consumer.close()
            log.info("classifier stopped after %d batches", self.batches)

    def _maybe_switch_model(self) -> None:
        if self.watcher is None:
            return
        new = self.watcher.take()
        if new is None:
            return
        old = self.classifier.version
        self.classifier = new
        self.metrics.model_info.info({"version": new.version})
        log.info(
            "model switched %s -> %s between batches %d and %d",
            old,
            new.version,
            self.batches,
            self.batches + 1,
        )

    def _handle(self, records: list[Any], consumer, producer) -> None:
        from kafka.errors import CommitFailedError, KafkaError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        m = self.metrics
        m.records_consumed.inc(len(records))
        m.batch_size.observe(len(records))
        result = score_batch(records, self.classifier, max_text_chars=self.settings.max_text_chars)
        if result.inference_seconds:
            m.inference_seconds.observe(result.inference_seconds)

        futures = []
        for article in result.scored:
            futures.append(
                producer.send(
                    self.kafka.topic_scored, key=article.id.encode(), value=encode(article)
                )
            )
        for letter in result.dead:
            key = letter.key.encode() if letter.key is not None else None
            futures.append(producer.send(self.kafka.topic_dlq, key=key, value=encode(letter)))
        try:  # a flush that times out raises KafkaTimeoutError, a KafkaError too
            producer.flush(timeout=self.settings.produce_timeout_seconds)
            for future in futures:
                future.get(timeout=0)
        except KafkaError as exc:
            raise ProduceError(
                f"Kafka did not acknowledge the output of a batch of {len(records)} within "
                f"produce_timeout_seconds={self.settings.produce_timeout_seconds:g} "
                f"(offsets not committed, the batch is re-read after restart): {exc}"
            ) from exc

        for article in result.scored:
            m.records_scored.labels(sentiment=article.sentiment).inc()
            m.end_to_end_latency_seconds.observe(
                max(0.0, article.scored_at.timestamp() - article.fetched_at.timestamp())
            )
        for letter in result.dead:
            m.records_dead_lettered.labels(reason=letter.reason).inc()
            log.warning(
                "dead-lettered %s[%s]@%s: %s: %s",
                letter.source_topic,
                letter.partition,
                letter.offset,
                letter.reason,
                letter.error,
            )

        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        try:
            consumer.commit(
                {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}
            )
        except CommitFailedError as exc:
            # The group rebalanced while this batch was in flight: its new owner
            # re-reads these records (duplicates downstream, never a loss).
            log.warning(
                "commit after rebalance failed, %d records will be re-scored: %s", len(records), exc
            )
        self.batches += 1
        log.debug(
            "batch %d: %d scored, %d dead-lettered (model %.3fs)",
            self.batches,
            len(result.scored),
            len(result.dead),
            result.inference_seconds,
        )

    #: How often the lag gauge asks the broker for end offsets (one ListOffsets request).
    LAG_INTERVAL_SECONDS = 2.0

    def _update_lag(self, consumer) -> None:
        """Lag per assigned partition: the broker's log end offset minus our position.

        The end offsets come from the broker, not from ``consumer.highwater()``: that is
        only as fresh as the last fetch of a partition, and a consumer that is behind has
        fetched far ahead of its position into a buffer, so it reported 0 for partitions
        thousands of records behind (tests/chaos/test_slow_consumer.py).
        """
        now = time.monotonic()
        if now - self._lag_checked_at < self.LAG_INTERVAL_SECONDS:
            return
        self._lag_checked_at = now
        gauge = self.metrics.consumer_lag_records
        assigned = consumer.assignment()
        try:
            ends = consumer.end_offsets(list(assigned), timeout_ms=1000) if assigned else {}
        except Exception as exc:  # noqa: BLE001 - a lag gauge is not worth failing a batch for
            log.debug("lag: end offsets unavailable: %s", exc)
            return
        for tp, end in ends.items():
            try:
                position = consumer.position(tp, timeout_ms=100)
            except Exception:  # noqa: BLE001
                continue
            if end is not None and position is not None:
                gauge.labels(partition=str(tp.partition)).set(max(0, end - position))
        for labels in list(_label_values(gauge)):
            if labels not in {str(tp.partition) for tp in assigned}:
                gauge.remove(labels)


def _label_values(gauge) -> list[str]:
    return [sample.labels["partition"] for metric in gauge.collect() for sample in metric.samples]
