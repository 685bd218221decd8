"""The notifier's HTTP server and its dispatcher (routing, de-duplication, retries).

``POST <path>``  an Alertmanager webhook; 200 when every channel has the new
                 alert states, 500 when a channel failed after its retries, so
                 Alertmanager sends the group again; channels that succeeded
                 are not repeated (de-duplication per channel and alert state).
``GET /metrics`` the notifier's Prometheus metrics.
``GET /healthz`` 200 ``ok``.

Binds 127.0.0.1 by default. With ``bearer_token`` set, a webhook without
``Authorization: Bearer <token>`` gets 401 (compared in constant time).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.metrics.definitions import CollectorRegistry, NotifierMetrics
from pipeline.notify.channels import Channel, DeliveryError, build_channels
from pipeline.notify.context import AlertContext
from pipeline.notify.message import (
    MAX_PAYLOAD_BYTES,
    AlertmanagerAlert,
    AlertmanagerPayload,
    InvalidPayload,
    parse_payload,
    render,
)
from pipeline.settings import NotifierSettings

log = logging.getLogger(__name__)

StateKey = tuple[str, str, str, str]  # channel, fingerprint, status, startsAt


class DeliveryLedger:
    """Which alert states each channel already has; bounded, thread-safe.

    A state is *claimed* before sending so that two concurrent webhooks with the
    same alert (Alertmanager retrying while the first request still runs) cannot
    both deliver it; a failed send releases the claim.

    With ``path`` set, delivered states are appended to that JSON-lines file and
    read back on start, so a restarted notifier does not repeat them either; the
    file is rewritten with the newest ``capacity`` states when it grows past twice that.
    """

    def __init__(self, capacity: int, path: Path | None = None) -> None:
        self._capacity = capacity
        self._delivered: OrderedDict[StateKey, None] = OrderedDict()
        self._in_flight: set[StateKey] = set()
        self._lock = threading.Lock()
        self._path = path
        self._lines = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                text = path.read_text(encoding="utf-8")
                if text and not text.endswith("\n"):
                    with path.open("a", encoding="utf-8") as ledger:
                        ledger.write("\n")  # end a line torn by a crash before appending
                for line in text.splitlines():
                    try:
                        key = tuple(json.loads(line))
                    except ValueError:
                        continue  # a torn last line after a crash
                    if len(key) == 4:
                        self._remember(key)
                    self._lines += 1

    def _remember(self, key: StateKey) -> None:
        self._delivered[key] = None
        self._delivered.move_to_end(key)
        while len(self._delivered) > self._capacity:
            self._delivered.popitem(last=False)

    def claim(self, keys: list[StateKey]) -> list[StateKey]:
        with self._lock:
            free = [k for k in keys if k not in self._delivered and k not in self._in_flight]
            self._in_flight.update(free)
            return free

    def finish(self, keys: list[StateKey], delivered: bool) -> None:
        with self._lock:
            self._in_flight.difference_update(keys)
            if not delivered:
                return
            for key in keys:
                self._remember(key)
            if self._path is not None:
                self._persist(keys)

    def _persist(self, keys: list[StateKey]) -> None:
        if self._lines + len(keys) > 2 * self._capacity:
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(list(k)) + "\n" for k in self._delivered))
            tmp.replace(self._path)
            self._lines = len(self._delivered)
            return
        with self._path.open("a", encoding="utf-8") as ledger:
            ledger.write("".join(json.dumps(list(k)) + "\n" for k in keys))
        self._lines += len(keys)


@dataclass
class DispatchResult:
    delivered: list[str]
    duplicate: list[str]
    failed: list[str]


class Dispatcher:
    """Routes a payload to channels, skips states already delivered, retries with backoff."""

    def __init__(
        self,
        settings: NotifierSettings,
        channels: dict[str, Channel],
        metrics: NotifierMetrics,
        *,
        sleep: Callable[[float], None] = time.sleep,
        context: AlertContext | None = None,
    ) -> None:
        self.settings = settings
        self.channels = channels
        self.metrics = metrics
        self.context = context
        self.ledger = DeliveryLedger(settings.dedupe_capacity, settings.ledger_file)
        self._sleep = sleep

    def channels_for(self, receiver: str) -> list[str]:
        wanted = self.settings.routes.get(receiver)
        if wanted is None:
            return list(self.channels)
        return [name for name in wanted if name in self.channels]

    def articles_for(self, payload: AlertmanagerPayload) -> dict[str, list[dict]]:
        """Articles behind each firing alert (empty without an article store)."""
        if self.context is None:
            return {}
        found: dict[str, list[dict]] = {}
        for alert in payload.alerts:
            if alert.status != "firing":
                continue
            try:
                articles = self.context.articles_for(
                    alert.labels, alert.starts_at, alert.ends_at, alert.annotations.get("window_end", "")
                )
            except Exception as exc:  # noqa: BLE001 - context must never block a notification
                log.warning("notify: no articles for alert %s: %s", alert.fingerprint, exc)
                continue
            if articles:
                found[alert.fingerprint] = [a.to_json() for a in articles]
        return found

    def dispatch(self, payload: AlertmanagerPayload) -> DispatchResult:
        result = DispatchResult([], [], [])
        articles: dict[str, list[dict]] | None = None
        for name in self.channels_for(payload.receiver):
            keys_by_alert: dict[StateKey, AlertmanagerAlert] = {
                (name, *alert.state): alert for alert in payload.alerts
            }
            claimed = self.ledger.claim(list(keys_by_alert))
            if not claimed:
                self.metrics.deliveries.labels(name, "duplicate").inc()
                result.duplicate.append(name)
                continue
            if articles is None:  # looked up once per payload, only when something is sent
                articles = self.articles_for(payload)
            notification = render(payload, [keys_by_alert[k] for k in claimed], articles)
            ok = self._send_with_retries(self.channels[name], notification)
            self.ledger.finish(claimed, delivered=ok)
            (result.delivered if ok else result.failed).append(name)
        return result

    def _send_with_retries(self, channel: Channel, notification) -> bool:
        s = self.settings
        started = time.monotonic()
        delay = s.backoff_initial_seconds
        try:
            for attempt in range(1, s.max_attempts + 1):
                self.metrics.delivery_attempts.labels(channel.name).inc()
                try:
                    channel.send(notification)
                except DeliveryError as exc:
                    last = attempt == s.max_attempts or not exc.retryable
                    log.warning(
                        "%s (attempt %d/%d)%s",
                        exc,
                        attempt,
                        s.max_attempts,
                        "" if last else f", retrying in {delay:.1f}s",
                    )
                    if last:
                        self.metrics.deliveries.labels(channel.name, "failed").inc()
                        return False
                    self._sleep(delay)
                    delay = min(delay * 2, s.backoff_max_seconds)
                    continue
                self.metrics.deliveries.labels(channel.name, "delivered").inc()
                log.info("notify.%s: delivered %r", channel.name, notification.title)
                return True
            return False  # pragma: no cover - the loop always returns
        finally:
            self.metrics.delivery_duration_seconds.labels(channel.name).observe(
                time.monotonic() - started
            )


class NotifierServer:
    """Runs the HTTP server in a daemon thread; ``url`` is the webhook address."""

    def __init__(
        self,
        settings: NotifierSettings,
        *,
        registry: CollectorRegistry | None = None,
        channels: dict[str, Channel] | None = None,
        console_write: Callable[[str], object] | None = None,
        context: AlertContext | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = NotifierMetrics(self.registry)
        if channels is None:
            channels = build_channels(settings, console_write=console_write)
        if context is None:
            context = AlertContext.from_settings(settings)
        self.context = context
        self.dispatcher = Dispatcher(settings, channels, self.metrics, context=context)
        self._httpd = ThreadingHTTPServer((settings.host, settings.port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}{self.settings.path}"

    def start(self) -> NotifierServer:
        if self.context is not None:
            self.context.warm_up()
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="notifier", daemon=True)
        self._thread.start()
        log.info(
            "notifier listening on %s, channels: %s",
            self.url,
            ", ".join(self.dispatcher.channels) or "none",
        )
        return self

    def serve_forever(self) -> None:
        if self.context is not None:
            self.context.warm_up()
        log.info(
            "notifier listening on %s, channels: %s",
            self.url,
            ", ".join(self.dispatcher.channels) or "none",
        )
        self._httpd.serve_forever()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self.context is not None:
            self.context.close()

    def _authorized(self, header: str | None) -> bool:
        token = self.settings.bearer_token
        if token is None:
            return True
        expected = f"Bearer {token.get_secret_value()}".encode()
        return hmac.compare_digest((header or "").encode(), expected)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "finsentry-notifier"

            def _reply(self, code: int, body: bytes = b"", content_type: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802 - http.server API
                if self.path == "/metrics":
                    self._reply(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    self._reply(200, b"ok\n")
                else:
                    self._reply(404, b"not found\n")

            def do_POST(self):  # noqa: N802 - http.server API
                metrics = server.metrics
                if self.path.split("?", 1)[0] != server.settings.path:
                    self._reply(404, b"not found\n")
                    return
                if not server._authorized(self.headers.get("Authorization")):
                    metrics.webhooks_received.labels("unauthorized").inc()
                    self._reply(401, b"unauthorized\n")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_PAYLOAD_BYTES:
                    metrics.webhooks_received.labels("invalid").inc()
                    self._reply(413, b"payload too large\n")
                    return
                try:
                    payload = parse_payload(self.rfile.read(length))
                except InvalidPayload as exc:
                    metrics.webhooks_received.labels("invalid").inc()
                    log.warning("%s", exc)
                    self._reply(400, f"{exc}\n".encode())
                    return
                metrics.webhooks_received.labels("accepted").inc()
                result = server.dispatcher.dispatch(payload)
                if result.failed:
                    self._reply(500, f"failed: {', '.join(result.failed)}\n".encode())
                else:
                    self._reply(200, b"ok\n")

            def log_message(self, format, *args):  # noqa: A002 - http.server API
                log.debug("notifier http: " + format, *args)

        return Handler
