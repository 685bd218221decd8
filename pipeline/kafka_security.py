"""Guards around kafka-python for secrets: log redaction and a clear error for refused logins.

- kafka-python logs SASL PLAIN requests byte for byte at DEBUG level, password
  included. :func:`guard_logs` puts a filter on every ``kafka.*`` logger that
  masks the configured secrets before a record reaches any handler.
- A refused login surfaces from kafka-python only as "Unable to bootstrap", and
  the broker often just closes the connection instead of answering. When a
  SASL client cannot bootstrap, :func:`explain_bootstrap_failure` runs one SASL
  exchange itself and raises :class:`KafkaAuthenticationError` naming the
  listener, mechanism and user (never the password) when that is the cause.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.settings import KafkaSettings

_MASK = "**********"


class KafkaAuthenticationError(ConnectionError):
    """The broker refused this client's SASL credentials or mechanism."""


class _SecretRedactor(logging.Filter):
    """Replaces known secret values in a log record's message by a mask."""

    def __init__(self) -> None:
        super().__init__("finsentry.secrets")
        self._forms: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        # The text itself, and how it shows inside a logged bytes repr.
        forms = {secret, repr(secret.encode("utf-8"))[2:-1]}
        with self._lock:
            self._forms |= {form for form in forms if len(form) >= 4}

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._forms:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the handler's problem
            return True
        hits = [form for form in self._forms if form in message]
        if hits:
            for form in sorted(hits, key=len, reverse=True):
                message = message.replace(form, _MASK)
            record.msg, record.args = message, None
        return True


_REDACTOR = _SecretRedactor()
_LEAKY_LOGGERS = ("kafka.protocol.parser", "kafka.net.connection", "kafka.conn")


def guard_logs(settings: KafkaSettings) -> None:
    """Register this client's secrets and filter every kafka-python logger that exists."""
    for secret in (settings.sasl_password, settings.ssl_password):
        if secret is not None:
            _REDACTOR.add(secret.get_secret_value())
    names = [name for name in logging.Logger.manager.loggerDict
             if name == "kafka" or name.startswith("kafka.")]
    # Loggers known to print request bytes, created now if kafka is not imported yet.
    for name in ["kafka", *_LEAKY_LOGGERS, *names]:
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


class _Closed(Exception):
    pass


def probe_sasl(settings: KafkaSettings, timeout_seconds: float = 5.0) -> str | None:
    """One SASL handshake and authentication against the first bootstrap server.

    Returns None when the broker accepts the credentials (or cannot be reached
    at all: that is not an authentication problem), else why it refused them.
    """
    from kafka.net.sasl import get_sasl_mechanism
    from kafka.protocol.parser import KafkaProtocol
    from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

    if settings.security_protocol != "SASL_PLAINTEXT":
        return None  # SASL_SSL would need the TLS handshake first; not probed
    host, _, port = settings.bootstrap_servers.split(",")[0].strip().rpartition(":")
    guard_logs(settings)
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout_seconds)
    except (OSError, ValueError):
        return None
    protocol = KafkaProtocol(client_id=settings.client_id)

    def call(request):
        protocol.send_request(request)
        sock.sendall(protocol.send_bytes())
        while True:
            data = sock.recv(65536)
            if not data:
                raise _Closed
            responses = protocol.receive_bytes(data)
            if responses:
                return responses[0][1]

    try:
        with sock:
            handshake = call(SaslHandshakeRequest(version=1, mechanism=settings.sasl_mechanism))
            if handshake.error_code:
                return (f"mechanism {settings.sasl_mechanism} is not enabled on this listener "
                        f"(it offers {', '.join(handshake.mechanisms) or 'none'})")
            config = settings.client_config()
            mechanism = get_sasl_mechanism(settings.sasl_mechanism)(host=host, **config)
            while not mechanism.is_done():
                token = mechanism.auth_bytes()
                response = call(SaslAuthenticateRequest(version=2, auth_bytes=token))
                if response.error_code:
                    return response.error_message or f"error code {response.error_code}"
                mechanism.receive(response.auth_bytes)
            return None if mechanism.is_authenticated() else "the broker's proof did not verify"
    except _Closed:
        return "the broker closed the connection during authentication (credentials refused)"
    except (OSError, TimeoutError):
        return None


@contextmanager
def explain_bootstrap_failure(settings: KafkaSettings) -> Iterator[None]:
    """Turn a SASL client's bootstrap timeout into KafkaAuthenticationError when that is why."""
    from kafka.errors import KafkaTimeoutError

    try:
        yield
    except KafkaTimeoutError as exc:
        if not settings.security_protocol.startswith("SASL"):
            raise
        refused = probe_sasl(settings)
        if refused is None:
            raise
        raise KafkaAuthenticationError(
            f"kafka: SASL authentication failed at {settings.bootstrap_servers} "
            f"({settings.security_protocol}, {settings.sasl_mechanism}) for user "
            f"{settings.sasl_username!r}: {refused}; check FINSENTRY_KAFKA_SASL_USERNAME, "
            "FINSENTRY_KAFKA_SASL_MECHANISM and FINSENTRY_KAFKA_SASL_PASSWORD "
            "(or the secrets directory)"
        ) from exc
