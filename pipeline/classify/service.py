"""The classifier service loop: consume ``news.raw``, score, produce, then commit.

Delivery is at-least-once: a batch's offsets are committed only after every
record produced for it (``news.scored`` and ``news.dlq``) was acknowledged by
Kafka (acks=all). A crash between produce and commit re-scores that batch
after the restart; the aggregation deduplicates by article id. Replicas share
the consumer group and need no coordination of their own.

``stop()`` (SIGTERM, SIGINT) ends the batch being collected early, scores and
produces it, commits, leaves the group and returns.

A broker outage is ridden out for ``broker_outage_tolerance_seconds``: start-up
waits for Kafka, and a batch whose output is not acknowledged is retried (the
records kafka-python gave up on are sent again; duplicates are allowed, loss is
not) with its offsets uncommitted. Past the tolerance, or on ``stop()`` while
Kafka is away, the service raises :class:`KafkaUnavailableError` (``finsentry
classify`` exits 3) and a restart re-reads what was not committed.
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


class KafkaUnavailableError(RuntimeError):
    """Kafka stayed unreachable longer than the service tolerates; nothing was committed."""


class ProduceError(KafkaUnavailableError):
    """Kafka did not acknowledge a batch's output; its offsets stay uncommitted."""


#: Longest pause between two attempts to reach Kafka.
MAX_RETRY_PAUSE_SECONDS = 10.0


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

        connected = self._connect()
        if connected is None:
            log.info("classifier stopped before Kafka could be reached")
            return
        consumer, producer = connected
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

    def _connect(self):
        """(consumer, producer) once Kafka answers, waiting out an outage up to the
        tolerance; None when stopped while waiting."""
        # kafka-python raises KafkaTimeoutError ("Unable to bootstrap") after 30 s without
        # a broker; a refused SASL login is KafkaAuthenticationError and is not retried.
        from kafka.errors import KafkaConnectionError, KafkaTimeoutError

        tolerance = self.settings.broker_outage_tolerance_seconds
        deadline = time.monotonic() + tolerance
        pause = 1.0
        while True:
            consumer = None
            try:
                ensure_topics(
                    self.kafka,
                    [self.kafka.topic_raw, self.kafka.topic_scored, self.kafka.topic_dlq],
                )
                session_ms = self.settings.session_timeout_ms
                consumer = make_consumer(
                    self.kafka,
                    self.settings.group_id,
                    session_timeout_ms=session_ms,
                    heartbeat_interval_ms=max(500, min(3000, session_ms // 3)),
                    max_poll_records=self.settings.batch_size,
                )
                subscribe_when_known(consumer, self.kafka.topic_raw, stop=self._stop.is_set)
                return consumer, make_producer(self.kafka)
            except (KafkaConnectionError, KafkaTimeoutError, TimeoutError) as exc:
                if consumer is not None:
                    consumer.close()
                if self._stop.is_set():
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise KafkaUnavailableError(
                        f"cannot reach Kafka at {self.kafka.bootstrap_servers} within "
                        f"broker_outage_tolerance_seconds={tolerance:g}: {exc}"
                    ) from exc
                log.warning(
                    "Kafka at %s unreachable (%s: %s); retrying, for up to %.0f s more",
                    self.kafka.bootstrap_servers,
                    type(exc).__name__,
                    exc,
                    left,
                )
                if self._stop.wait(min(pause, left)):
                    return None
                pause = min(pause * 2, MAX_RETRY_PAUSE_SECONDS)

    def _deliver(self, producer, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        """Send ``messages`` (topic, key, value) and return once Kafka acknowledged all of
        them; retried through an outage up to the tolerance, then ProduceError."""
        from kafka.errors import KafkaError

        tolerance = self.settings.broker_outage_tolerance_seconds
        started = time.monotonic()
        futures = [_send(producer, message) for message in messages]
        pause = 0.5
        while True:
            problem: Exception | None = None
            try:  # a flush that times out raises KafkaTimeoutError, a KafkaError too
                producer.flush(timeout=self.settings.produce_timeout_seconds)
            except KafkaError as exc:
                problem = exc
            waiting = [i for i, f in enumerate(futures) if f is None or not f.succeeded()]
            if not waiting:
                return
            failed = [i for i in waiting if futures[i] is not None and futures[i].failed()]
            if failed:
                problem = futures[failed[0]].exception
            elapsed = time.monotonic() - started
            if elapsed >= tolerance or self._stop.is_set():
                raise ProduceError(
                    f"Kafka did not acknowledge {len(waiting)} of the {len(messages)} output "
                    f"records of a batch within produce_timeout_seconds="
                    f"{self.settings.produce_timeout_seconds:g} and "
                    f"broker_outage_tolerance_seconds={tolerance:g}"
                    + (" (stop requested)" if self._stop.is_set() else "")
                    + f" (offsets not committed, the batch is re-read after restart): {problem}"
                )
            log.warning(
                "Kafka has not acknowledged %d of %d output records for %.0f s (%s); "
                "retrying, offsets stay uncommitted",
                len(waiting),
                len(messages),
                elapsed,
                problem,
            )
            if self._stop.wait(min(pause, max(0.0, tolerance - elapsed))):
                continue  # raises above with "stop requested" unless everything landed
            pause = min(pause * 2, MAX_RETRY_PAUSE_SECONDS)
            given_up = [i for i in waiting if futures[i] is None or futures[i].failed()]
            if given_up:
                # kafka-python expires a record after its delivery_timeout_ms (120 s) or
                # never queued it (no metadata within max_block_ms): send those again.
                log.warning(
                    "sending %d output records again that the Kafka client gave up on (%s)",
                    len(given_up),
                    problem,
                )
                for i in given_up:
                    futures[i] = _send(producer, messages[i])

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

        messages: list[tuple[str, bytes | None, bytes]] = [
            (self.kafka.topic_scored, article.id.encode(), encode(article))
            for article in result.scored
        ]
        for letter in result.dead:
            key = letter.key.encode() if letter.key is not None else None
            messages.append((self.kafka.topic_dlq, key, encode(letter)))
        self._deliver(producer, messages)

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
        except KafkaError as exc:
            # Output acknowledged, commit not: the next commit (or a restart) covers it.
            log.warning("commit failed, %d records may be re-scored: %s", len(records), exc)
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


def _send(producer, message: tuple[str, bytes | None, bytes]):
    """The send's future; None when kafka-python could not even queue it (buffer full or
    no metadata within max_block_ms: the broker is away), so the caller sends it again."""
    from kafka.errors import KafkaTimeoutError

    topic, key, value = message
    try:
        return producer.send(topic, key=key, value=value)
    except KafkaTimeoutError as exc:
        log.debug("send to %s not queued: %s", topic, exc)
        return None


def _label_values(gauge) -> list[str]:
    return [sample.labels["partition"] for metric in gauge.collect() for sample in metric.samples]
