"""Windows with a spike -> exporter -> real Prometheus rules -> real Alertmanager -> notifier.

One scenario for the module (about two minutes of wall-clock time, because the
baseline needs history at the 5 s scrape interval): a feeder writes one closed
1-minute window every 5 s for four keys unique to this run:

- ``spike-<run>`` (topic): calm, then 80% negative with 30 articles until the
  alert is delivered, then calm again;
- ``calm-<run>`` (topic): noisy but unremarkable the whole time;
- ``LOW<RUN>`` (ticker): calm, then 100% negative but only 4 articles (below the minimum);
- ``all``: the overall series, so every dashboard panel has data.

An aborted transaction carries a fake spike for ``aborted-<run>``; a read_committed
exporter never shows it. The regular windows are written without a transaction
(kafka-python's commit can block for ever on a loaded broker, and plain records
are what read_committed readers see anyway). Every assertion is scoped to this
run's keys and pipeline label: the shared Prometheus also evaluates other tests' series.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from pipeline.kafka_io import ensure_topics, make_producer
from pipeline.messages import SentimentWindow, encode
from pipeline.metrics.exporter import run_exporter
from pipeline.notify.server import NotifierServer
from pipeline.notify.testing import SmtpSink, WebhookReceiver, wait_for
from pipeline.settings import ExporterSettings, KafkaSettings, NotifierSettings

pytestmark = pytest.mark.integration

SECRET = "integration-hmac-secret"
TICK_SECONDS = 5.0
CALM = (0.1, 0.15, 0.05)
NOISE = (0.2, 0.3, 0.1, 0.25, 0.15, 0.35, 0.2, 0.1, 0.3, 0.15)


def prom_query(url: str, promql: str) -> list[dict]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def prom_range(url: str, promql: str, start: float, end: float, step: str = "5s") -> list[dict]:
    response = httpx.get(
        f"{url}/api/v1/query_range",
        params={"query": promql, "start": start, "end": end, "step": step},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["data"]["result"]


def make_window(
    key: str, dimension: str, minute: int, articles: int, ratio: float
) -> SentimentWindow:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    negative = round(articles * ratio)
    positive = (articles - negative) // 2
    return SentimentWindow(
        window_start=start,
        window_end=start + timedelta(minutes=1),
        dimension=dimension,
        key=key,
        articles=articles,
        negative=negative,
        neutral=articles - negative - positive,
        positive=positive,
        negative_ratio=negative / articles,
        mean_sentiment=(positive - negative) / articles,
    )


class Feeder(threading.Thread):
    """Writes one window per key every TICK_SECONDS in a Kafka transaction."""

    def __init__(self, kafka: KafkaSettings, run: str) -> None:
        super().__init__(name="window-feeder", daemon=True)
        self.kafka = kafka
        self.run_id = run
        self.spike_key = f"spike-{run}"
        self.calm_key = f"calm-{run}"
        self.low_ticker = f"LOW{run.upper()}"
        self.aborted_key = f"aborted-{run}"
        self.phase = "calm"  # calm -> spike -> after
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.ticks = 0

    def windows(self, minute: int) -> list[SentimentWindow]:
        spiking = self.phase == "spike"
        calm = CALM[minute % len(CALM)]
        return [
            make_window(self.spike_key, "topic", minute, 30, 0.8 if spiking else calm),
            make_window(self.calm_key, "topic", minute, 40, NOISE[minute % len(NOISE)]),
            make_window(
                self.low_ticker, "ticker", minute, 4 if spiking else 30, 1.0 if spiking else calm
            ),
            make_window("all", "all", minute, 120, 0.2),
        ]

    def run(self) -> None:
        producer = make_producer(self.kafka, max_block_ms=20_000)
        try:
            for minute in itertools.count():
                if self.stop.is_set():
                    break
                started = time.monotonic()
                for window in self.windows(minute):
                    producer.send(
                        self.kafka.topic_windows, key=window.key.encode(), value=encode(window)
                    )
                producer.flush(timeout=20)
                self.ticks += 1
                self.stop.wait(max(0.0, TICK_SECONDS - (time.monotonic() - started)))
        except BaseException as exc:  # surfaced by the tests
            self.error = exc
        finally:
            producer.close(timeout=10)


def write_aborted_spike(kafka: KafkaSettings, key: str, done: threading.Event) -> None:
    """A spike in a transaction that is aborted, as a failed Flink checkpoint leaves it.

    A read_committed exporter must never show it. (Runs in its own thread with a
    deadline: kafka-python's commit/abort wait without a timeout.)
    """
    producer = make_producer(
        kafka,
        transactional_id=f"test-alerting-{uuid.uuid4().hex}",
        transaction_timeout_ms=10_000,
        max_block_ms=20_000,
        max_in_flight_requests_per_connection=1,
        retries=5,
    )
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for minute in range(3):
            bogus = make_window(key, "topic", minute, 50, 1.0)
            producer.send(kafka.topic_windows, key=bogus.key.encode(), value=encode(bogus))
        producer.flush(timeout=20)
        producer.abort_transaction()
        done.set()
    finally:
        producer.close(timeout=5)


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def scenario(stack, run_id):
    """Notifier (webhook + SMTP), Alertmanager pointed at it, exporter, feeder; restored after."""
    kafka = KafkaSettings(
        bootstrap_servers=stack.settings.kafka_bootstrap,
        topic_raw=f"test.{run_id}.news.raw",
        topic_scored=f"test.{run_id}.news.scored",
        topic_dlq=f"test.{run_id}.news.dlq",
        topic_windows=f"test.{run_id}.sentiment.windows",
        partitions=3,
    )
    ensure_topics(kafka)
    # The session's `stack up` pointed Prometheus at this checkout's rules.
    groups = httpx.get(f"{stack.settings.prometheus_url}/api/v1/rules", timeout=10).json()
    assert "finsentry-sentiment-alerts" in {g["name"] for g in groups["data"]["groups"]}

    webhook = WebhookReceiver(secret=SECRET)
    smtp = SmtpSink()
    notifier = NotifierServer(
        NotifierSettings(
            port=0,
            console=False,
            register_target=False,
            webhook_url=webhook.url,
            webhook_secret=SECRET,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_starttls=False,
            email_to=["analysts@example.org"],
        )
    ).start()
    previous_url = stack.alertmanager.notifier_url()
    stack.alertmanager.reload(notifier.url)

    stop_exporter, exporter_ready = threading.Event(), threading.Event()
    exporter = threading.Thread(
        target=run_exporter,
        name="exporter",
        daemon=True,
        args=(
            kafka,
            ExporterSettings(
                metrics_port=0, startup_lookback_seconds=3600, pipeline=f"test-{run_id}"
            ),
        ),
        kwargs={"stack": stack.settings, "stop": stop_exporter, "ready": exporter_ready},
    )
    exporter.start()
    assert exporter_ready.wait(60), "exporter did not start"
    feeder = Feeder(kafka, run_id)
    aborted = threading.Event()
    threading.Thread(
        target=write_aborted_spike, args=(kafka, feeder.aborted_key, aborted), daemon=True
    ).start()
    feeder.start()
    started = time.time()
    try:
        yield {
            "kafka": kafka,
            "webhook": webhook,
            "smtp": smtp,
            "notifier": notifier,
            "feeder": feeder,
            "aborted": aborted,
            "started": started,
            "prometheus": stack.settings.prometheus_url,
        }
    finally:
        feeder.stop.set()
        feeder.join(30)
        stop_exporter.set()
        exporter.join(30)
        stack.alertmanager.reload(previous_url)
        notifier.close()
        webhook.close()
        smtp.close()


def firing_deliveries(webhook: WebhookReceiver, key: str) -> list[dict]:
    found = []
    for request in webhook.requests:
        for alert in request.json()["alerts"]:
            if alert["labels"].get("key") == key and alert["status"] == "firing":
                found.append({"alert": alert, "signature_valid": request.signature_valid})
    return found


def firing_emails(smtp: SmtpSink, key: str) -> list:
    return [
        m
        for m in smtp.messages
        if m["Subject"].startswith("[FIRING") and f"key={key}" in m.get_content()
    ]


def test_a_spike_fires_once_and_is_delivered_once_per_channel(scenario):
    prometheus, feeder = scenario["prometheus"], scenario["feeder"]
    webhook, smtp = scenario["webhook"], scenario["smtp"]
    key = feeder.spike_key

    # Calm until Prometheus has a baseline for the key (scrape discovery + offset + the
    # rules' minimum of 6 samples: about 100 s).
    ready = f'finsentry:window_negative_ratio:baseline_samples{{key="{key}"}} >= 8'
    assert wait_for(lambda: bool(prom_query(prometheus, ready)), 300, 2), (
        f"no baseline for {key} (feeder ticks {feeder.ticks}, error {feeder.error!r})"
    )
    feeder.phase = "spike"
    spike_started = time.monotonic()

    firing = f'ALERTS{{alertname="NegativeSentimentSpike",key="{key}",alertstate="firing"}}'
    assert wait_for(lambda: bool(prom_query(prometheus, firing)), 90, 2), "the spike never fired"
    alerts = prom_query(prometheus, firing)
    assert {a["metric"]["severity"] for a in alerts} == {"warning", "critical"}
    assert all(a["metric"]["topic"] == key and a["metric"]["window"] == "1m" for a in alerts)
    assert {a["metric"]["pipeline"] for a in alerts} == {f"test-{feeder.run_id}"}

    assert wait_for(lambda: firing_deliveries(webhook, key) and firing_emails(smtp, key), 60), (
        "the notifier did not deliver the alert to both the webhook and SMTP"
    )
    detected_after = time.monotonic() - spike_started
    feeder.phase = "after"

    # Alertmanager re-sends groups every group_interval (30 s): wait past it, then count.
    time.sleep(35)
    deliveries = firing_deliveries(webhook, key)
    assert len(deliveries) == 1, deliveries  # critical only: the warning is inhibited
    delivered = deliveries[0]
    assert delivered["signature_valid"] is True
    assert delivered["alert"]["labels"]["severity"] == "critical"
    annotations = delivered["alert"]["annotations"]
    assert "80% of 30" in annotations["description"]
    assert "var-topic=" + key in annotations["dashboard"]
    emails = firing_emails(smtp, key)
    assert len(emails) == 1
    body = emails[0].get_content()
    assert "80% of 30 articles were negative" in body and "baseline of" in body
    assert "dashboard: http://localhost:3000/d/finsentry-overview" in body
    assert detected_after < 90


def test_calm_low_volume_and_aborted_streams_fire_nothing(scenario):
    prometheus, feeder = scenario["prometheus"], scenario["feeder"]
    assert feeder.error is None, feeder.error
    assert scenario["aborted"].is_set(), "the aborted transaction was never written"
    start, end = scenario["started"], time.time()
    quiet = f'"{feeder.calm_key}|{feeder.low_ticker}|{feeder.aborted_key}"'
    assert prom_range(prometheus, f"ALERTS{{key=~{quiet}}}", start, end) == []
    for key in (feeder.calm_key, feeder.low_ticker):
        assert firing_deliveries(scenario["webhook"], key) == []
        assert firing_emails(scenario["smtp"], key) == []
        # They were exported and evaluated all along.
        assert prom_range(
            prometheus, f'finsentry:window_negative_ratio:zscore{{key="{key}"}}', start, end
        )
    assert (
        prom_range(
            prometheus, f'finsentry_window_articles{{key="{feeder.aborted_key}"}}', start, end
        )
        == []
    )


def test_every_dashboard_query_is_accepted_and_returns_data(scenario, stack, run_id):
    """Grafana JSON valid, datasource provisioned, every query run on the real Prometheus."""
    from prometheus_client import CollectorRegistry

    from pipeline.dashboards.grafana import concrete_promql, load_dashboards, problems, queries
    from pipeline.metrics.definitions import ClassifierMetrics, IngestMetrics
    from pipeline.metrics.server import serve_metrics

    # The other stages' metrics, from their own definitions, so the health panels have data.
    registry = CollectorRegistry()
    classifier, ingest = ClassifierMetrics(registry), IngestMetrics(registry)
    classifier.model_info.info({"version": f"probe-{run_id}"})
    endpoint = serve_metrics(
        registry, f"dashboard-probe-{run_id}", targets_dir=stack.settings.prometheus_targets_dir
    )

    def traffic():
        ingest.articles_emitted.labels("probe").inc(20)
        classifier.records_consumed.inc(20)
        classifier.records_scored.labels("negative").inc(19)
        classifier.records_dead_lettered.labels("invalid_json").inc(1)
        classifier.consumer_lag_records.labels("0").set(3)
        classifier.inference_seconds.observe(0.02)
        classifier.end_to_end_latency_seconds.observe(0.4)

    try:
        feeder = scenario["feeder"]
        variables = {
            "window": "1m",
            "topic": feeder.spike_key,
            "ticker": feeder.low_ticker,
            "pipeline": f"test-{run_id}",
        }
        checks = []
        for path, dashboard in load_dashboards().items():
            assert problems(dashboard) == [], path.name
            checks += [(q, concrete_promql(q.expr, variables)) for q in queries(dashboard)]
        assert len(checks) >= 20
        prometheus = stack.settings.prometheus_url
        probe = f'finsentry_model_info{{service="dashboard-probe-{run_id}"}}'
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # at least three scrapes with traffic in between
            traffic()
            time.sleep(5)
            samples = prom_range(
                prometheus, f"count_over_time({probe}[1m])", time.time() - 1, time.time(), "1s"
            )
            if samples and float(samples[0]["values"][-1][1]) >= 3:
                break
        start, end = scenario["started"], time.time()
        empty = []
        for query, promql in checks:
            response = httpx.get(
                f"{prometheus}/api/v1/query_range",
                timeout=10,
                params={"query": promql, "start": start, "end": end, "step": "5s"},
            )
            assert response.status_code == 200, f"{query.dashboard} {query.where}: {response.text}"
            if not response.json()["data"]["result"]:
                empty.append(f"{query.dashboard} {query.where}: {promql}")
        assert empty == []
    finally:
        endpoint.close()
