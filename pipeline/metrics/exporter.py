"""The exporter: ``sentiment.windows`` records become Prometheus gauges.

For every (dimension, key, window length) the exporter shows the latest closed
window: articles, negative articles, negative ratio, mean sentiment and the
window's event-time end. Prometheus keeps the history; the baseline and the
spike decision are recording and alerting rules (deploy/prometheus/rules).

Invariants:

- A window older than the one shown for its key is ignored (and counted), so a
  late or replayed record never moves a gauge backwards. A record for the same
  window end replaces the one shown (Flink may emit an updated window).
- A key disappears once the newest window of its length is more than
  ``stale_after_windows`` lengths ahead of the key's own (event time): a topic
  that stopped getting news does not keep its last value for ever.
- Tickers: only the top N by volume (articles in windows of the shortest
  window length that ended within ``ticker_volume_lookback_seconds``) have series.

:class:`WindowBoard` holds this state and is tested in-process;
:func:`run_exporter` wires it to Kafka and the /metrics server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.messages import InvalidMessage, SentimentWindow, dead_letter, decode_window, encode
from pipeline.metrics.definitions import CollectorRegistry, ExporterMetrics
from pipeline.settings import ExporterSettings, KafkaSettings, StackSettings

log = logging.getLogger(__name__)

STAGE = "export"
DIMENSIONS = ("all", "topic", "ticker")


def prometheus_duration(seconds: int) -> str:
    """``60`` -> ``1m``, ``900`` -> ``15m``, ``5400`` -> ``1h30m``, ``45`` -> ``45s``."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


@dataclass(frozen=True)
class SeriesKey:
    dimension: str
    key: str
    window: str  # Prometheus duration of the window length

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.dimension, self.key, self.window)


class WindowBoard:
    """The latest window per series key, ticker ranking and expiry; drives the gauges."""

    def __init__(self, metrics: ExporterMetrics, settings: ExporterSettings) -> None:
        self.metrics = metrics
        self.settings = settings
        self.latest: dict[SeriesKey, SentimentWindow] = {}
        self.exposed: set[SeriesKey] = set()
        #: Newest window end (epoch seconds) per window length.
        self.high_water: dict[int, float] = {}
        #: Ticker -> recent (window_end, articles) of the shortest window length.
        self._ticker_volume: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._volume_window_seconds: int | None = None
        #: Start of the data (see note_data_start) and the window length it came from.
        self._data_start = None
        self._data_start_length: int | None = None

    def note_data_start(self, windows: list[SentimentWindow]) -> None:
        """Remember where the data begins: the earliest start of the shortest ``all`` windows.

        A longer (hopping) window that began before that holds only part of its
        span: on a fresh stream its ratio climbs while it fills, which a baseline
        would read as a spike. Such windows are not shown (counted as ``partial``).
        """
        alls = [w for w in windows if w.dimension == "all"]
        if not alls:
            return
        shortest = min(w.window_seconds for w in alls)
        if self._data_start_length is not None and shortest > self._data_start_length:
            return
        start = min(w.window_start for w in alls if w.window_seconds == shortest)
        if self._data_start_length is None or shortest < self._data_start_length:
            self._data_start, self._data_start_length = start, shortest
        else:
            self._data_start = min(self._data_start, start)

    def apply(self, window: SentimentWindow) -> bool:
        """Take one window record; returns False when it was older than the one shown."""
        if (self._data_start is not None and window.window_seconds > (self._data_start_length or 0)
                and window.window_start < self._data_start):
            self.metrics.windows_ignored.labels(window.dimension, "partial").inc()
            return False
        self.metrics.windows_consumed.labels(window.dimension).inc()
        length = window.window_seconds
        series = SeriesKey(window.dimension, window.key, prometheus_duration(length))
        end = window.window_end.timestamp()
        self.high_water[length] = max(self.high_water.get(length, end), end)
        self.metrics.last_window_end_timestamp_seconds.set(max(self.high_water.values()))
        self.metrics.last_window_received_timestamp_seconds.set(time.time())
        if window.dimension == "ticker":
            self._count_ticker_volume(window, length, end)
        shown = self.latest.get(series)
        if shown is not None and shown.window_end > window.window_end:
            self.metrics.windows_ignored.labels(window.dimension, "out_of_order").inc()
            return False
        self.latest[series] = window
        if series in self.exposed:
            self._set(series, window)
        return True

    def _count_ticker_volume(self, window: SentimentWindow, length: int, end: float) -> None:
        if self._volume_window_seconds is None or length < self._volume_window_seconds:
            self._volume_window_seconds = length
            self._ticker_volume.clear()
        if length == self._volume_window_seconds:
            entries = self._ticker_volume[window.key]
            # Replace an updated record of the same window instead of counting it twice.
            if entries and entries[-1][0] == end:
                entries.pop()
            entries.append((end, window.articles))

    def ticker_volumes(self) -> dict[str, int]:
        """Articles per ticker within the volume look-back (event time)."""
        if self._volume_window_seconds is None:
            return {}
        horizon = (
            self.high_water[self._volume_window_seconds]
            - self.settings.ticker_volume_lookback_seconds
        )
        volumes = {}
        for ticker, entries in list(self._ticker_volume.items()):
            while entries and entries[0][0] <= horizon:
                entries.popleft()
            if entries:
                volumes[ticker] = sum(articles for _, articles in entries)
            else:
                del self._ticker_volume[ticker]
        return volumes

    def refresh(self) -> None:
        """Expire stale keys, re-rank tickers and bring the exposed series in line."""
        for series, window in list(self.latest.items()):
            length = window.window_seconds
            if self.high_water[length] - window.window_end.timestamp() > (
                self.settings.stale_after_windows * length
            ):
                del self.latest[series]

        volumes = self.ticker_volumes()
        ranked = sorted(volumes, key=lambda t: (-volumes[t], t))
        top = set(ranked[: self.settings.top_n_tickers])
        tickers_with_series = {s.key for s in self.latest if s.dimension == "ticker"}
        self.metrics.tickers_hidden.set(len(tickers_with_series - top))

        wanted = {s for s in self.latest if s.dimension != "ticker" or s.key in top}
        for series in self.exposed - wanted:
            for gauge in self.metrics.window_gauges():
                gauge.remove(*series.labels)
        for series in wanted - self.exposed:
            self._set(series, self.latest[series])
        self.exposed = wanted
        for dimension in DIMENSIONS:
            self.metrics.keys.labels(dimension).set(
                len({s.key for s in wanted if s.dimension == dimension})
            )

    def _set(self, series: SeriesKey, window: SentimentWindow) -> None:
        m = self.metrics
        labels = series.labels
        m.window_articles.labels(*labels).set(window.articles)
        m.window_negative_articles.labels(*labels).set(window.negative)
        m.window_negative_ratio.labels(*labels).set(window.negative_ratio)
        m.window_mean_sentiment.labels(*labels).set(window.mean_sentiment)
        m.window_end_timestamp_seconds.labels(*labels).set(window.window_end.timestamp())

    def apply_all(self, windows: Iterable[SentimentWindow]) -> None:
        windows = list(windows)
        self.note_data_start(windows)
        for window in windows:
            self.apply(window)
        self.refresh()


def _assign_from(consumer, topic: str, since_ms: int) -> None:
    """Assign every partition of ``topic`` and seek to the first record at or after ``since_ms``."""
    from kafka import TopicPartition

    deadline = time.monotonic() + 30
    partitions = consumer.partitions_for_topic(topic)
    while not partitions and time.monotonic() < deadline:
        time.sleep(0.5)
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise RuntimeError(f"{STAGE}: topic {topic!r} does not exist or has no partitions")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    offsets = consumer.offsets_for_times({tp: since_ms for tp in tps})
    for tp in tps:
        found = offsets.get(tp)
        if found is None:
            consumer.seek_to_end(tp)
        else:
            consumer.seek(tp, found.offset)


def _dead_letter(producer, kafka: KafkaSettings, record, exc: InvalidMessage, metrics) -> None:
    """Send an undecodable record to news.dlq; a failing DLQ is logged, never fatal."""
    from kafka.errors import KafkaError

    where = f"{record.topic}[{record.partition}]@{record.offset}"
    log.warning("%s: dead-lettering %s: %s", STAGE, where, exc)
    letter = dead_letter(
        record.value,
        exc,
        stage=STAGE,
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
    )
    try:
        producer.send(kafka.topic_dlq, value=encode(letter), key=record.key).get(timeout=10)
    except KafkaError as error:
        log.error(
            "%s: could not write %s to %s (%s); the record stays in %s",
            STAGE,
            where,
            kafka.topic_dlq,
            type(error).__name__,
            record.topic,
        )
        metrics.windows_dead_lettered.labels("dlq_unavailable").inc()
        return
    metrics.windows_dead_lettered.labels(exc.reason).inc()


def run_exporter(
    kafka: KafkaSettings,
    settings: ExporterSettings,
    *,
    registry: CollectorRegistry | None = None,
    stack: StackSettings | None = None,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
):
    """Consume ``kafka.topic_windows`` until ``stop`` is set, serving /metrics meanwhile.

    Returns the :class:`MetricsEndpoint` (already closed). ``stack`` names the
    local stack whose Prometheus should scrape us (file_sd) when
    ``settings.register_target`` is on.
    """
    from pipeline.kafka_io import ensure_topics, make_consumer, make_producer
    from pipeline.metrics.server import serve_metrics

    registry = registry if registry is not None else CollectorRegistry()
    metrics = ExporterMetrics(registry)
    board = WindowBoard(metrics, settings)
    stop = stop or threading.Event()
    ensure_topics(kafka, [kafka.topic_dlq])
    consumer = make_consumer(kafka, None, isolation_level="read_committed")
    producer = None
    since_ms = int((time.time() - settings.startup_lookback_seconds) * 1000)
    _assign_from(consumer, kafka.topic_windows, since_ms)
    targets_dir = None
    if settings.register_target:
        targets_dir = (stack or StackSettings()).prometheus_targets_dir
    endpoint = serve_metrics(
        registry,
        "exporter",
        host=settings.metrics_host,
        port=settings.metrics_port,
        targets_dir=targets_dir,
        labels={"pipeline": settings.pipeline} if settings.pipeline else None,
    )
    log.info("exporting %s (read_committed) on %s", kafka.topic_windows, endpoint.url)
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            batches = consumer.poll(timeout_ms=settings.poll_timeout_ms, max_records=5000)
            windows = []
            for records in batches.values():
                for record in records:
                    try:
                        windows.append(decode_window(record.value, STAGE))
                    except InvalidMessage as exc:
                        producer = producer or make_producer(kafka)
                        _dead_letter(producer, kafka, record, exc, metrics)
            board.note_data_start(windows)
            for window in windows:
                board.apply(window)
            board.refresh()
    finally:
        endpoint.close()
        consumer.close()
        if producer is not None:
            producer.close()
    return endpoint
