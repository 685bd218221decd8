"""The foundation: real Kafka, Prometheus and Alertmanager answer as finsentry expects."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from pipeline.kafka_io import make_consumer, make_producer
from pipeline.metrics.server import serve_metrics

pytestmark = pytest.mark.integration


def test_ten_thousand_records_round_trip_through_a_consumer_group(kafka_settings, group_id):
    n = 10_000
    producer = make_producer(kafka_settings, linger_ms=20)
    for i in range(n):
        producer.send(kafka_settings.topic_raw, key=str(i).encode(), value=json.dumps({"i": i}).encode())
    producer.flush(timeout=60)
    producer.close()

    consumer = make_consumer(kafka_settings, group_id, kafka_settings.topic_raw, consumer_timeout_ms=15_000)
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while len(seen) < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000, max_records=2000).values():
            seen.update(json.loads(r.value)["i"] for r in records)
        consumer.commit()
    consumer.close()
    assert seen == set(range(n))


def _query(prometheus_url: str, promql: str) -> list[dict]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    return response.json()["data"]["result"]


def test_prometheus_scrapes_a_finsentry_metrics_endpoint(stack, unique):
    registry = CollectorRegistry()
    counter = Counter("finsentry_test_probe", "Probe counter for the foundation test.",
                      ["run"], registry=registry)
    counter.labels(run=unique).inc(7)
    endpoint = serve_metrics(registry, f"test-{unique}", targets_dir=stack.settings.prometheus_targets_dir)
    try:
        promql = f'finsentry_test_probe_total{{run="{unique}"}}'
        deadline = time.monotonic() + 60
        result: list[dict] = []
        while not result and time.monotonic() < deadline:
            result = _query(stack.settings.prometheus_url, promql)
            time.sleep(0.5)
        assert result, f"Prometheus never returned {promql}"
        assert float(result[0]["value"][1]) == 7.0
        assert result[0]["metric"]["service"] == f"test-{unique}"
        assert result[0]["metric"]["job"] == "finsentry"
    finally:
        endpoint.close()


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):  # keep test output clean
        pass


def test_alertmanager_delivers_an_alert_to_a_webhook(stack, unique):
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    previous = stack.alertmanager.notifier_url()
    stack.alertmanager.reload(f"http://127.0.0.1:{server.server_address[1]}/alertmanager")
    try:
        alert = [{
            "labels": {"alertname": "FoundationProbe", "run": unique, "severity": "warning"},
            "annotations": {"summary": "foundation test"},
        }]
        response = httpx.post(f"{stack.settings.alertmanager_url}/api/v2/alerts", json=alert, timeout=5)
        assert response.status_code == 200
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ours = [m for m in _Receiver.received
                    if any(a["labels"].get("run") == unique for a in m["alerts"])]
            if ours:
                break
            time.sleep(0.2)
        assert ours, "Alertmanager did not deliver the alert to the webhook"
        assert ours[0]["status"] == "firing"
        assert ours[0]["alerts"][0]["labels"]["alertname"] == "FoundationProbe"
    finally:
        stack.alertmanager.reload(previous)
        server.shutdown()


def _rule_groups(prometheus_url: str) -> set[str]:
    response = httpx.get(f"{prometheus_url}/api/v1/rules", timeout=5)
    response.raise_for_status()
    return {group["name"] for group in response.json()["data"]["groups"]}


def test_up_on_a_running_stack_loads_this_checkouts_rules(stack, tmp_path):
    """A Prometheus started earlier (another checkout, rules since edited) is pointed at
    this checkout's config and rules by `stack up`, not left evaluating the old ones."""
    prometheus, url = stack.prometheus, stack.settings.prometheus_url
    config = prometheus.config_file.read_text()
    stale = config.replace(
        config.split("rule_files:\n", 1)[1].split("\n", 1)[0],
        f"  - {tmp_path / 'elsewhere' / '*.yml'}",
    )
    assert stale != config
    prometheus.config_file.write_text(stale)
    httpx.post(f"{url}/-/reload", timeout=10).raise_for_status()
    try:
        assert "finsentry-sentiment-alerts" not in _rule_groups(url)
    finally:
        stack.up()
    assert {"finsentry-sentiment-alerts", "finsentry-drift-alerts"} <= _rule_groups(url)
