"""Local receivers for the notifier's channels, for tests and for trying it out.

:class:`WebhookReceiver` is an HTTP server on 127.0.0.1 that records every POST
and checks the finsentry HMAC signature; it can fail the first N requests to
exercise retries. :class:`SmtpSink` is an aiosmtpd server (a dev dependency)
that records every message, optionally with STARTTLS.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pipeline.notify.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_valid: bool | None  # None: the receiver has no secret

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    secret: str | None = None
    fail_first: int = 0
    fail_status: int = 503
    requests: list[ReceivedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self
        self._lock = threading.Lock()
        self._failures_left = self.fail_first

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                valid = None
                if receiver.secret is not None:
                    valid = verify(
                        receiver.secret,
                        body,
                        self.headers.get(TIMESTAMP_HEADER),
                        self.headers.get(SIGNATURE_HEADER),
                    )
                with receiver._lock:
                    fail = receiver._failures_left > 0
                    if fail:
                        receiver._failures_left -= 1
                    else:
                        receiver.requests.append(
                            ReceivedRequest(self.path, dict(self.headers), body, valid)
                        )
                self.send_response(receiver.fail_status if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._failures_left = count
            self.fail_status = status

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class SmtpSink:
    """aiosmtpd on 127.0.0.1; ``messages`` holds every message received."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None) -> None:
        from aiosmtpd.controller import Controller

        sink = self
        self.messages: list[Message] = []

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
                sink.messages.append(
                    message_from_bytes(
                        envelope.original_content or envelope.content, policy=policy.default
                    )
                )
                return "250 OK"

        kwargs = {}
        if tls_context is not None:
            kwargs = {"tls_context": tls_context, "require_starttls": True}
        # aiosmtpd probes its own port after starting, so it needs a real one, not 0.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()

    def close(self) -> None:
        self._controller.stop()


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
