"""The notifier over real loopback servers: signed webhook, Slack-style webhook, SMTP (aiosmtpd)."""

from __future__ import annotations

import json
import logging
import ssl
import subprocess

import httpx
import pytest

from pipeline.notify.server import NotifierServer
from pipeline.notify.signing import sign, verify
from pipeline.notify.testing import SmtpSink, WebhookReceiver, wait_for
from pipeline.settings import NotifierSettings

SECRET = "s3cr3t-hmac-key"


def alert(
    status="firing",
    key="Energy",
    starts="2026-11-28T12:00:00Z",
    fingerprint="fp1",
    severity="critical",
):
    return {
        "status": status,
        "labels": {
            "alertname": "NegativeSentimentSpike",
            "severity": severity,
            "dimension": "topic",
            "key": key,
            "topic": key,
            "window": "1m",
            "job": "finsentry",
        },
        "annotations": {
            "summary": f"Negative sentiment spike on topic {key} (1m windows)",
            "description": "80% of 30 articles were negative in the latest 1m window, against a "
            "baseline of 10% ± 4.0% (14.0 standard deviations above).",
            "dashboard": f"http://localhost:3000/d/finsentry-overview/finsentry-overview?var-topic={key}",
        },
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-28T12:05:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
        "fingerprint": fingerprint,
    }


def payload(*alerts, receiver="finsentry-critical"):
    return {
        "version": "4",
        "receiver": receiver,
        "status": alerts[0]["status"],
        "alerts": list(alerts),
        "groupLabels": {"alertname": "NegativeSentimentSpike"},
        "commonLabels": {},
        "externalURL": "http://127.0.0.1:9093",
        "groupKey": "{}:{}",
    }


@pytest.fixture
def webhook():
    receiver = WebhookReceiver(secret=SECRET)
    yield receiver
    receiver.close()


@pytest.fixture
def smtp():
    sink = SmtpSink()
    yield sink
    sink.close()


def start(**settings) -> NotifierServer:
    defaults = dict(
        port=0,
        console=False,
        register_target=False,
        backoff_initial_seconds=0.01,
        backoff_max_seconds=0.05,
        timeout_seconds=3,
    )
    return NotifierServer(NotifierSettings(**{**defaults, **settings})).start()


def post(server: NotifierServer, body: dict, **headers) -> httpx.Response:
    return httpx.post(server.url, content=json.dumps(body), headers=headers, timeout=30)


def test_signature_round_trip_and_tampering():
    body = b'{"a": 1}'
    signature = sign(SECRET, 1_800_000_000, body)
    assert verify(SECRET, body, "1800000000", signature, now=1_800_000_010)
    assert not verify(SECRET, body + b" ", "1800000000", signature, now=1_800_000_010)
    assert not verify("other", body, "1800000000", signature, now=1_800_000_010)
    assert not verify(SECRET, body, "1800000000", signature, now=1_800_001_000)  # replayed later


def test_each_alert_state_is_delivered_once_per_channel(webhook, smtp):
    server = start(
        webhook_url=webhook.url,
        webhook_secret=SECRET,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_starttls=False,
        email_to=["desk@example.org"],
    )
    try:
        firing = payload(alert())
        assert post(server, firing).status_code == 200
        assert post(server, firing).status_code == 200  # Alertmanager's repeat: no new delivery
        assert len(webhook.requests) == 1 and len(smtp.messages) == 1
        request = webhook.requests[0]
        assert request.signature_valid is True
        sent = request.json()
        assert sent["alerts"][0]["labels"]["key"] == "Energy"
        assert "silenceURL" in sent["alerts"][0]
        assert "Energy" in smtp.messages[0]["Subject"]
        text = smtp.messages[0].get_content()
        for expected in (
            "80% of 30 articles",
            "baseline of 10%",
            "topic=Energy",
            "dashboard: http://localhost:3000/d/finsentry-overview",
            "prometheus: http://prometheus:9090/graph",
            "silence: http://127.0.0.1:9093/#/silences/new",
        ):
            assert expected in text, expected

        # The group grows: only the new alert goes out; then the first resolves: a new state.
        assert (
            post(server, payload(alert(), alert(key="Metals", fingerprint="fp2"))).status_code
            == 200
        )
        assert [len(r.json()["alerts"]) for r in webhook.requests] == [1, 1]
        assert webhook.requests[1].json()["alerts"][0]["labels"]["key"] == "Metals"
        assert post(server, payload(alert(status="resolved"))).status_code == 200
        assert len(webhook.requests) == 3 and len(smtp.messages) == 3
        assert smtp.messages[2]["Subject"].startswith("[RESOLVED]")
        # A re-fire after resolution has a new startsAt: a new state again.
        assert post(server, payload(alert(starts="2026-11-28T13:00:00Z"))).status_code == 200
        assert len(webhook.requests) == 4
    finally:
        server.close()


def test_routes_pick_channels_by_receiver(webhook, smtp):
    server = start(
        webhook_url=webhook.url,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_starttls=False,
        email_to=["desk@example.org"],
    )
    try:
        assert (
            post(
                server, payload(alert(severity="warning"), receiver="finsentry-warning")
            ).status_code
            == 200
        )
        assert len(webhook.requests) == 1 and smtp.messages == []  # warnings do not email
    finally:
        server.close()


def test_transient_failures_are_retried_with_backoff(webhook):
    webhook.fail_next(2)
    server = start(webhook_url=webhook.url, webhook_secret=SECRET)
    try:
        assert post(server, payload(alert())).status_code == 200
        assert len(webhook.requests) == 1
        metrics = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
        assert 'finsentry_notifier_delivery_attempts_total{channel="webhook"} 3.0' in metrics
        assert (
            'finsentry_notifier_deliveries_total{channel="webhook",outcome="delivered"} 1.0'
            in metrics
        )
    finally:
        server.close()


def test_a_failed_channel_makes_alertmanager_retry_without_repeating_the_others(webhook, smtp):
    webhook.fail_next(100)
    server = start(
        webhook_url=webhook.url,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_starttls=False,
        email_to=["desk@example.org"],
        max_attempts=2,
    )
    try:
        assert post(server, payload(alert())).status_code == 500
        assert len(smtp.messages) == 1 and webhook.requests == []
        webhook.fail_next(0)
        assert post(server, payload(alert())).status_code == 200
        assert len(webhook.requests) == 1 and len(smtp.messages) == 1
    finally:
        server.close()


def test_a_permanent_error_is_not_retried(webhook):
    webhook.fail_next(100, status=404)
    server = start(webhook_url=webhook.url, max_attempts=5)
    try:
        assert post(server, payload(alert())).status_code == 500
        metrics = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
        assert 'finsentry_notifier_delivery_attempts_total{channel="webhook"} 1.0' in metrics
    finally:
        server.close()


def test_bearer_token_is_required_when_configured(webhook):
    server = start(webhook_url=webhook.url, bearer_token="am-token")
    try:
        assert post(server, payload(alert())).status_code == 401
        assert post(server, payload(alert()), Authorization="Bearer wrong").status_code == 401
        assert post(server, payload(alert()), Authorization="Bearer am-token").status_code == 200
        assert len(webhook.requests) == 1
    finally:
        server.close()


def test_invalid_payloads_are_refused(webhook):
    server = start(webhook_url=webhook.url)
    try:
        assert httpx.post(server.url, content=b"not json").status_code == 400
        assert post(server, {"alerts": "nope"}).status_code == 400
        assert (
            httpx.post(f"http://127.0.0.1:{server.port}/elsewhere", content=b"{}").status_code
            == 404
        )
        assert webhook.requests == []
    finally:
        server.close()


def test_secrets_never_reach_logs_or_responses(caplog, webhook):
    caplog.set_level(logging.DEBUG)
    slack = "http://127.0.0.1:9/services/T000/B000/SLACKSECRETPATH"  # port 9: refused
    server = start(
        slack_webhook_url=slack,
        webhook_url=webhook.url,
        webhook_secret=SECRET,
        smtp_host="127.0.0.1",
        smtp_port=9,
        smtp_username="u",
        smtp_password="SMTPSECRET",
        email_to=["desk@example.org"],
        bearer_token="TOKENSECRET",
        max_attempts=2,
    )
    try:
        response = post(server, payload(alert()), Authorization="Bearer TOKENSECRET")
        assert response.status_code == 500  # slack and email unreachable
        settings_repr = repr(server.settings)
    finally:
        server.close()
    for secret in ("SLACKSECRETPATH", "SMTPSECRET", "TOKENSECRET", SECRET):
        assert secret not in caplog.text
        assert secret not in response.text
        assert secret not in settings_repr
    assert "notify.slack: request failed" in caplog.text


def test_console_prints_a_readable_message():
    lines: list[str] = []
    server = NotifierServer(
        NotifierSettings(port=0, register_target=False), channels=None, console_write=lines.append
    ).start()
    try:
        assert post(server, payload(alert())).status_code == 200
    finally:
        server.close()
    assert len(lines) == 1
    assert "[FIRING:1] NegativeSentimentSpike (critical) - topic Energy" in lines[0]


def test_email_over_starttls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = SmtpSink(tls_context=context)
    server = start(
        smtp_host="127.0.0.1",
        smtp_port=sink.port,
        smtp_starttls=True,
        smtp_cafile=cert,
        email_to=["desk@example.org"],
    )
    try:
        assert post(server, payload(alert())).status_code == 200
        assert wait_for(lambda: len(sink.messages) == 1, 5)
    finally:
        server.close()
        sink.close()


def test_a_restarted_notifier_does_not_repeat_delivered_states(webhook, tmp_path):
    ledger = tmp_path / "delivered.jsonl"
    first = start(webhook_url=webhook.url, ledger_file=ledger)
    try:
        assert post(first, payload(alert())).status_code == 200
    finally:
        first.close()
    with ledger.open("a") as f:
        f.write('["webhook", "torn')  # a crash mid-write must not stop the next start
    second = start(webhook_url=webhook.url, ledger_file=ledger)
    try:
        assert post(second, payload(alert())).status_code == 200
        assert len(webhook.requests) == 1
        assert post(second, payload(alert(status="resolved"))).status_code == 200
        assert len(webhook.requests) == 2
    finally:
        second.close()
    third = start(webhook_url=webhook.url, ledger_file=ledger)  # the resolve was kept too
    try:
        assert post(third, payload(alert(status="resolved"))).status_code == 200
        assert len(webhook.requests) == 2
    finally:
        third.close()


def test_the_ledger_file_stays_bounded(tmp_path):
    from pipeline.notify.server import DeliveryLedger

    path = tmp_path / "delivered.jsonl"
    ledger = DeliveryLedger(100, path)
    for i in range(450):
        key = ("webhook", f"fp{i}", "firing", "2026-11-28T12:00:00Z")
        assert ledger.claim([key]) == [key]
        ledger.finish([key], delivered=True)
    assert len(path.read_text().splitlines()) <= 200
    reloaded = DeliveryLedger(100, path)
    assert reloaded.claim([("webhook", "fp449", "firing", "2026-11-28T12:00:00Z")]) == []
    assert reloaded.claim([("webhook", "fp0", "firing", "2026-11-28T12:00:00Z")]) != []
