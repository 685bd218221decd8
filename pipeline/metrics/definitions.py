"""Every finsentry metric, defined in one place.

One small class per stage; each takes the ``CollectorRegistry`` it registers
into (tests pass a fresh one and compare exact exposition). Conventions
(Prometheus naming guide): prefix ``finsentry_``, base units (seconds, bytes,
ratios 0..1), ``_total`` on counters only, label values from small fixed sets
(topic, sentiment, stage, reason; tickers only for a bounded top-N).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info  # noqa: F401

__all__ = ["CollectorRegistry"]


class LabelMetrics:
    """The label store, as of the last ``update`` (``finsentry retrain --watch`` refreshes
    it from the database every poll, so every labelling tool is counted, whichever
    process stored the label). ``source``: csv, jsonl, label-studio, review;
    ``task``: topic, sentiment."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._labels: dict[tuple[str, str], int] = {}
        self._pending = 0
        registry.register(self)

    def update(self, labels_by_source_task: dict[tuple[str, str], int], pending: int) -> None:
        self._labels = dict(labels_by_source_task)
        self._pending = int(pending)

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = CounterMetricFamily(
            "finsentry_labels", "Labels stored, by intake source and task.", labels=["source", "task"]
        )
        for (source, task), count in sorted(self._labels.items()):
            labels.add_metric([source, task], count)
        yield labels
        yield GaugeMetricFamily(
            "finsentry_labels_pending",
            "Labels stored since the last finished retrain.",
            value=self._pending,
        )


class RetrainMetrics:
    """Retraining outcomes and the current model's evaluation, as of the last ``update``.

    ``outcome``: promoted, rejected (gate said no), failed (error). Scores are
    ratios in 0..1; ``split`` is ``original_heldout`` (the fixed held-out split of
    the original data) or ``new_labels`` (the held-out part of analysts' labels);
    ``metric`` is ``accuracy`` or ``macro_f1``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._outcomes: dict[str, int] = {}
        self._scores: dict[tuple[str, str, str], float] = {}
        self._last_finished: float | None = None
        self._last_duration: float | None = None
        registry.register(self)

    def update(
        self,
        outcomes: dict[str, int],
        scores: dict[tuple[str, str, str], float],
        last_finished_unix_seconds: float | None,
        last_duration_seconds: float | None,
    ) -> None:
        self._outcomes = dict(outcomes)
        self._scores = dict(scores)
        self._last_finished = last_finished_unix_seconds
        self._last_duration = last_duration_seconds

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        retrains = CounterMetricFamily(
            "finsentry_retrains", "Finished retrains by outcome.", labels=["outcome"]
        )
        for outcome in ("promoted", "rejected", "failed"):
            retrains.add_metric([outcome], self._outcomes.get(outcome, 0))
        yield retrains
        scores = GaugeMetricFamily(
            "finsentry_model_eval_score",
            "The current model's evaluation score (0..1) by split, task and metric.",
            labels=["split", "task", "metric"],
        )
        for key, value in sorted(self._scores.items()):
            scores.add_metric(list(key), value)
        yield scores
        if self._last_finished is not None:
            yield GaugeMetricFamily(
                "finsentry_retrain_last_finished_timestamp_seconds",
                "Unix time the last retrain finished (any outcome).",
                value=self._last_finished,
            )
        if self._last_duration is not None:
            yield GaugeMetricFamily(
                "finsentry_retrain_last_duration_seconds",
                "Wall-clock duration of the last retrain, training and evaluation.",
                value=self._last_duration,
            )


WINDOW_LABELS = ("dimension", "key", "window")


class ExporterMetrics:
    """``finsentry export``: the latest closed window per dimension, key and window length.

    ``window`` is the window length as a Prometheus duration (``1m``, ``15m``).
    Tickers only appear for the top N by volume (``ExporterSettings.top_n_tickers``).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.window_articles = Gauge(
            "finsentry_window_articles",
            "Articles in the latest closed window of this key.",
            WINDOW_LABELS, registry=registry,
        )
        self.window_negative_articles = Gauge(
            "finsentry_window_negative_articles",
            "Negative articles in the latest closed window of this key.",
            WINDOW_LABELS, registry=registry,
        )
        self.window_negative_ratio = Gauge(
            "finsentry_window_negative_ratio",
            "Share of negative articles (0..1) in the latest closed window of this key.",
            WINDOW_LABELS, registry=registry,
        )
        self.window_mean_sentiment = Gauge(
            "finsentry_window_mean_sentiment",
            "Mean sentiment score (-1..1, p(positive) - p(negative)) in the latest closed window.",
            WINDOW_LABELS, registry=registry,
        )
        self.window_end_timestamp_seconds = Gauge(
            "finsentry_window_end_timestamp_seconds",
            "Event-time end of the latest closed window of this key (Unix seconds).",
            WINDOW_LABELS, registry=registry,
        )
        self.windows_consumed = Counter(
            "finsentry_exporter_windows_consumed",
            "Window records read from sentiment.windows.",
            ["dimension"], registry=registry,
        )
        self.windows_ignored = Counter(
            "finsentry_exporter_windows_ignored",
            "Valid window records not shown: older than the key's latest window (out_of_order), "
            "or begun before the data (partial).",
            ["dimension", "reason"], registry=registry,
        )
        self.windows_dead_lettered = Counter(
            "finsentry_exporter_windows_dead_lettered",
            "Window records that could not be decoded, sent to the dead-letter topic.",
            ["reason"], registry=registry,
        )
        self.keys = Gauge(
            "finsentry_exporter_keys",
            "Keys currently exposed, per dimension.",
            ["dimension"], registry=registry,
        )
        self.tickers_hidden = Gauge(
            "finsentry_exporter_tickers_hidden",
            "Tickers with recent windows that are outside the top N and have no series.",
            registry=registry,
        )
        self.last_window_received_timestamp_seconds = Gauge(
            "finsentry_exporter_last_window_received_timestamp_seconds",
            "Wall-clock time the last window record was read (Unix seconds).",
            registry=registry,
        )
        self.last_window_end_timestamp_seconds = Gauge(
            "finsentry_exporter_last_window_end_timestamp_seconds",
            "Newest event-time window end seen (Unix seconds).",
            registry=registry,
        )

    def window_gauges(self) -> tuple[Gauge, ...]:
        return (
            self.window_articles,
            self.window_negative_articles,
            self.window_negative_ratio,
            self.window_mean_sentiment,
            self.window_end_timestamp_seconds,
        )


class NotifierMetrics:
    """``finsentry notify``: webhooks received and deliveries per channel."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.webhooks_received = Counter(
            "finsentry_notifier_webhooks_received",
            "Alertmanager webhook requests, by outcome (accepted, unauthorized, invalid).",
            ["outcome"], registry=registry,
        )
        self.deliveries = Counter(
            "finsentry_notifier_deliveries",
            "Notifications per channel and outcome (delivered, failed, duplicate).",
            ["channel", "outcome"], registry=registry,
        )
        self.delivery_attempts = Counter(
            "finsentry_notifier_delivery_attempts",
            "Delivery attempts per channel, retries included.",
            ["channel"], registry=registry,
        )
        self.delivery_duration_seconds = Histogram(
            "finsentry_notifier_delivery_duration_seconds",
            "Time to deliver one notification to one channel, retries included.",
            ["channel"], registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )


class ClassifierMetrics:
    """``finsentry classify``: records in, verdicts out, dead letters, model in service.

    ``reason`` on dead letters is a slug from ``pipeline.messages.InvalidMessage``
    (invalid_json, missing_field, invalid_field, invalid_utf8, empty_text, ...)
    or ``text_too_long`` / ``inference_failed``; ``outcome`` on reloads is
    ``success`` or ``failure``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records_consumed = Counter(
            "finsentry_classifier_records_consumed",
            "Records read from news.raw.",
            registry=registry,
        )
        self.records_scored = Counter(
            "finsentry_classifier_records_scored",
            "Articles scored and acknowledged on news.scored, by predicted sentiment.",
            ["sentiment"],
            registry=registry,
        )
        self.records_dead_lettered = Counter(
            "finsentry_classifier_records_dead_lettered",
            "Records sent to news.dlq, by reason.",
            ["reason"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "finsentry_classifier_batch_size",
            "Records per micro-batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=registry,
        )
        self.inference_seconds = Histogram(
            "finsentry_classifier_inference_seconds",
            "Model time per micro-batch (tokenise + forward).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.end_to_end_latency_seconds = Histogram(
            "finsentry_classifier_end_to_end_latency_seconds",
            "From an article's fetched_at to its scored_at.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=registry,
        )
        self.consumer_lag_records = Gauge(
            "finsentry_classifier_consumer_lag_records",
            "Records on news.raw not yet consumed by this replica, per assigned partition.",
            ["partition"],
            registry=registry,
        )
        self.model_info = Info(
            "finsentry_model",
            "The model version this classifier replica is serving.",
            registry=registry,
        )
        self.model_reloads = Counter(
            "finsentry_classifier_model_reloads",
            "Attempts to switch to a newly promoted model, by outcome (success, failure).",
            ["outcome"],
            registry=registry,
        )


class IngestMetrics:
    """What the crawler or the replayer put on ``news.raw`` (one role per process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.articles_emitted = Counter(
            "finsentry_ingest_articles_emitted",
            "Articles acknowledged by Kafka on news.raw, by source.",
            ["source"],
            registry=registry,
        )
        self.emit_failures = Counter(
            "finsentry_ingest_emit_failures",
            "Articles Kafka did not acknowledge (retried on the next poll or run).",
            ["source"],
            registry=registry,
        )


class CrawlerMetrics(IngestMetrics):
    """``finsentry crawl``. ``status`` is one of ok, not_modified, client_error,
    server_error, failed; ``reason`` comes from a fixed set of slugs (docs/ingest.md)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.fetches = Counter(
            "finsentry_crawler_fetches",
            "HTTP fetches of feeds and article pages by source and outcome.",
            ["source", "status"],
            registry=registry,
        )
        self.fetch_duration = Histogram(
            "finsentry_crawler_fetch_duration_seconds",
            "Duration of one fetch including redirects and retries.",
            ["kind"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.duplicates = Counter(
            "finsentry_crawler_duplicates",
            "Items already emitted (kind=seen, skipped) or near-duplicate stories (kind=near, "
            "emitted with duplicate_of).",
            ["kind"],
            registry=registry,
        )
        self.errors = Counter(
            "finsentry_crawler_errors",
            "Fetch or parse failures by reason; the crawler carries on.",
            ["reason"],
            registry=registry,
        )
        self.refused = Counter(
            "finsentry_crawler_refused",
            "URLs not fetched by policy: robots, private_address, bad_scheme.",
            ["reason"],
            registry=registry,
        )
        self.items_skipped = Counter(
            "finsentry_crawler_items_skipped",
            "Feed items not emitted: stale, no_date, empty_text, no_link.",
            ["reason"],
            registry=registry,
        )
        self.dates_replaced = Counter(
            "finsentry_crawler_dates_replaced",
            "Published times replaced by the fetch time (reason=missing or future).",
            ["reason"],
            registry=registry,
        )
        self.last_success = Gauge(
            "finsentry_crawler_last_success_timestamp_seconds",
            "Unix time of the last feed poll that succeeded (200 or 304), per source.",
            ["source"],
            registry=registry,
        )


class ReplayMetrics(IngestMetrics):
    """``finsentry replay``: rows read and skipped, and how far the replay is."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.rows_skipped = Counter(
            "finsentry_replay_rows_skipped",
            "Input rows not replayed, by reason (empty_text, bad_timestamp, invalid_row).",
            ["reason"],
            registry=registry,
        )
        self.progress = Gauge(
            "finsentry_replay_progress_ratio",
            "Share of the input rows handled so far (0..1).",
            registry=registry,
        )


class ArticleSinkMetrics:
    """``finsentry articles sink``: ``news.scored`` -> the article store."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records_consumed = Counter(
            "finsentry_articles_records_consumed",
            "Records read from news.scored by the article sink.",
            registry=registry,
        )
        self.articles_written = Counter(
            "finsentry_articles_written",
            "Article rows inserted or replaced in the article store (re-deliveries included).",
            registry=registry,
        )
        self.records_dead_lettered = Counter(
            "finsentry_articles_records_dead_lettered",
            "Records the sink could not decode, sent to news.dlq, by reason.",
            ["reason"],
            registry=registry,
        )
        self.write_seconds = Histogram(
            "finsentry_articles_write_seconds",
            "Time of one batch's database transaction.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.articles_pruned = Counter(
            "finsentry_articles_pruned",
            "Articles deleted from the store past their retention.",
            registry=registry,
        )


class DriftMetrics:
    """Model drift over the article sink's sliding window (``pipeline.articles.drift``).

    ``head``: topic or sentiment; ``class``: one of that head's fixed classes
    (20 topics, 3 sentiments). Shares and confidences are ratios in 0..1.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.psi = Gauge(
            "finsentry_drift_psi",
            "Population stability index of predicted classes in the window vs the training data.",
            ["head"],
            registry=registry,
        )
        self.predicted_share = Gauge(
            "finsentry_drift_predicted_share_ratio",
            "Share of articles in the window predicted as each class.",
            ["head", "class"],
            registry=registry,
        )
        self.training_share = Gauge(
            "finsentry_drift_training_share_ratio",
            "Share of each class in the serving model's training labels.",
            ["head", "class"],
            registry=registry,
        )
        self.mean_confidence = Gauge(
            "finsentry_drift_mean_confidence_ratio",
            "Mean sentiment confidence of the articles in the window.",
            registry=registry,
        )
        self.low_confidence_ratio = Gauge(
            "finsentry_drift_low_confidence_ratio",
            "Share of articles in the window whose confidence is below the threshold.",
            registry=registry,
        )
        self.window_articles = Gauge(
            "finsentry_drift_window_articles",
            "Articles in the drift window.",
            registry=registry,
        )
